package sshprobe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// MaxOutput caps each of a command's stdout and stderr kept in a CommandResult.
const MaxOutput = 1 << 20

// CommandResult is what one command run in the guest produced.
type CommandResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
	// Signal is set (e.g. "KILL") when the command was killed by a signal; ExitCode
	// is then -1.
	Signal   string
	Duration time.Duration
	// Truncated is set when stdout or stderr exceeded MaxOutput.
	Truncated bool
}

// ErrCommand marks a command that could not be run to completion: no session, the
// connection was lost, or the context ended. A command that ran and exited
// non-zero is not an error.
var ErrCommand = errors.New("command did not complete")

// Run runs cmd in a new session on client and waits for it under ctx. When ctx
// ends first the session is closed (the guest's sshd then hangs up on the command)
// and the error wraps ErrCommand and the context's cause. Output beyond
// MaxOutput per stream is dropped and flagged.
func Run(ctx context.Context, client *ssh.Client, cmd string) (CommandResult, error) {
	start := time.Now()
	res := CommandResult{ExitCode: -1}
	fail := func(err error) (CommandResult, error) {
		res.Duration = time.Since(start)
		return res, fmt.Errorf("%w: %q: %w", ErrCommand, cmd, err)
	}
	if err := context.Cause(ctx); err != nil {
		return fail(err)
	}

	// Opening a channel waits for the guest's answer, which a hung guest never
	// sends: open it aside and give up on ctx.
	type opened struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := client.NewSession()
		ch <- opened{s, err}
	}()
	var sess *ssh.Session
	select {
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.s != nil {
				o.s.Close()
			}
		}()
		return fail(context.Cause(ctx))
	case o := <-ch:
		if o.err != nil {
			return fail(fmt.Errorf("open session: %w", o.err))
		}
		sess = o.s
	}
	defer sess.Close()

	var stdout, stderr capWriter
	sess.Stdout = &stdout
	sess.Stderr = &stderr
	collect := func() {
		res.Stdout, res.Stderr = stdout.String(), stderr.String()
		res.Truncated = stdout.truncated() || stderr.truncated()
		res.Duration = time.Since(start)
	}
	if err := sess.Start(cmd); err != nil {
		collect()
		return fail(fmt.Errorf("start: %w", err))
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	var err error
	select {
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL) // most servers ignore it; closing is what counts
		sess.Close()
		collect()
		return fail(context.Cause(ctx))
	case err = <-done:
	}
	collect()
	var exitErr *ssh.ExitError
	switch {
	case err == nil:
		res.ExitCode = 0
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitStatus()
		if exitErr.Signal() != "" {
			res.ExitCode = -1
			res.Signal = exitErr.Signal()
		}
	default: // ExitMissingError, connection lost
		return fail(err)
	}
	return res, nil
}

// capWriter keeps the first MaxOutput bytes written to it.
type capWriter struct {
	mu      sync.Mutex
	buf     []byte
	dropped int64
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	room := MaxOutput - len(w.buf)
	if room > len(p) {
		room = len(p)
	}
	w.buf = append(w.buf, p[:room]...)
	w.dropped += int64(len(p) - room)
	return len(p), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

func (w *capWriter) truncated() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped > 0
}
