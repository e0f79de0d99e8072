package inspect

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxOutput bounds what one guestfish command may print (a package list of a
// large image is a few MiB): beyond it the session ends.
const maxOutput = 64 << 20

// maxRead is the most ReadFile returns at once (guestfish's pread is bounded
// by libguestfs's message size).
const maxRead = 2 << 20

// CommandError is a guestfish command that failed: the command and what
// libguestfs printed about it.
type CommandError struct {
	Command string
	Message string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("guestfish %s: %s", e.Command, e.Message)
}

// SessionError is a guestfish session that could not start or ended before
// its command did (killed, out of time, the appliance died).
type SessionError struct {
	Op  string
	Err error
}

func (e *SessionError) Error() string { return fmt.Sprintf("guestfish %s: %v", e.Op, e.Err) }
func (e *SessionError) Unwrap() error { return e.Err }

// session is one guestfish process, and so one libguestfs appliance, driven
// over its standard input: each command is followed by an `echo` of a marker
// on standard output and by an unknown command whose complaint is a marker on
// standard error, so its output and its errors are read exactly. Every
// command is prefixed with '-' so a failure does not end guestfish.
type session struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	errs  chan string // standard error, line by line; closed at EOF
	nonce string
	n     int
	stop  func() bool // ends the context watch
	kill  sync.Once
}

// startSession starts guestfish on the image file, read-only; ctx bounds the
// whole session: when it ends, the process group (guestfish and its qemu) is
// killed.
func startSession(ctx context.Context, cfg Config, path, format string) (*session, error) {
	args := []string{"--ro", "-a", path}
	if format != "" {
		args = []string{"--ro", "--format=" + format, "-a", path}
	}
	name := cfg.Guestfish
	if name == "" {
		name = "guestfish"
	}
	// Found before nice would run it: a missing guestfish says so, not "EOF".
	if _, err := exec.LookPath(name); err != nil {
		return nil, &SessionError{Op: "start", Err: err}
	}
	if cfg.Nice {
		// The boot beside keeps its CPU and disk: lowest I/O class, lower CPU
		// priority. Not SCHED_IDLE: measured beside a TCG boot it cost the
		// boot as much as nice 10 does (BENCHMARKS.md), and on a host full of
		// guests it would starve the inspection into its timeout.
		args = append([]string{"-n", "10", "ionice", "-c", "3", name}, args...)
		name = "nice"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LIBGUESTFS_BACKEND=direct")
	if cfg.TCG {
		cmd.Env = append(cmd.Env, "LIBGUESTFS_BACKEND_SETTINGS=force_tcg")
	}
	if cfg.MemoryMiB > 0 {
		cmd.Env = append(cmd.Env, "LIBGUESTFS_MEMSIZE="+strconv.Itoa(cfg.MemoryMiB))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, &SessionError{Op: "start", Err: err}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, &SessionError{Op: "start", Err: err}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, &SessionError{Op: "start", Err: err}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	s := &session{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 64<<10), errs: make(chan string, 64), nonce: hex.EncodeToString(b[:])}
	if err := cmd.Start(); err != nil {
		return nil, &SessionError{Op: "start", Err: err}
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.errs <- sc.Text()
		}
		close(s.errs)
	}()
	s.stop = context.AfterFunc(ctx, s.killGroup)
	return s, nil
}

// killGroup kills guestfish and everything it started (qemu, its helpers).
func (s *session) killGroup() {
	s.kill.Do(func() {
		if p := s.cmd.Process; p != nil {
			_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		}
	})
}

// close ends the session: guestfish is asked to exit and given grace to shut
// its appliance down, then its process group is killed.
func (s *session) close(grace time.Duration) {
	s.stop()
	_, _ = io.WriteString(s.in, "exit\n")
	_ = s.in.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, s.out)
		for range s.errs {
		}
		_ = s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
	}
	s.killGroup()
	<-done
}

// quote makes one guestfish argument: double-quoted, with backslash escapes
// for the quote, the backslash and control characters.
func quote(arg string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(arg); i++ {
		switch c := arg[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// run runs one guestfish command and returns what it printed; a failure is a
// *CommandError, a session that ended a *SessionError.
func (s *session) run(ctx context.Context, command string, args ...string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &SessionError{Op: command, Err: context.Cause(ctx)}
	}
	s.n++
	outMark := fmt.Sprintf("imagevet-out-%s-%d", s.nonce, s.n)
	errMark := fmt.Sprintf("imagevet-err-%s-%d", s.nonce, s.n)
	line := "-" + command
	for _, a := range args {
		line += " " + a
	}
	if _, err := fmt.Fprintf(s.in, "%s\necho %s\n-%s\n", line, outMark, errMark); err != nil {
		return nil, s.ended(ctx, command, err)
	}
	out, err := s.readOut(outMark)
	if err != nil {
		return nil, s.ended(ctx, command, err)
	}
	var msgs []string
	for {
		l, ok := <-s.errs
		if !ok {
			return nil, s.ended(ctx, command, io.ErrUnexpectedEOF)
		}
		msg := errorLine(l)
		if strings.HasPrefix(msg, errMark+":") {
			break
		}
		if msg != "" {
			msgs = append(msgs, msg)
		}
	}
	if len(msgs) > 0 {
		return out, &CommandError{Command: command, Message: strings.Join(msgs, "; ")}
	}
	return out, nil
}

// errorLine returns what a line guestfish printed on standard error says,
// without its "*stdin*:N: " and "libguestfs: error: " prefixes; "" for a
// warning or a blank line.
func errorLine(l string) string {
	if rest, ok := strings.CutPrefix(l, "*stdin*:"); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok {
			l = after
		}
	}
	if strings.HasPrefix(l, "libguestfs: warning:") {
		return ""
	}
	l = strings.TrimPrefix(l, "libguestfs: error: ")
	return strings.TrimSpace(l)
}

// readOut reads standard output up to the marker line and returns what came
// before it (a command's output need not end in a newline: pread's does not).
func (s *session) readOut(mark string) ([]byte, error) {
	suffix := []byte(mark + "\n")
	var buf []byte
	for {
		chunk, err := s.out.ReadSlice('\n')
		buf = append(buf, chunk...)
		if err == nil && bytes.HasSuffix(buf, suffix) {
			return buf[:len(buf)-len(suffix)], nil
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		if len(buf) > maxOutput {
			return nil, fmt.Errorf("more than %d bytes of output", maxOutput)
		}
	}
}

// ended describes a session that ended under a command, with what guestfish
// said last, and kills what is left.
func (s *session) ended(ctx context.Context, command string, err error) error {
	s.killGroup()
	if ctx.Err() != nil {
		return &SessionError{Op: command, Err: context.Cause(ctx)}
	}
	var said []string
	timeout := time.After(2 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-s.errs:
			if !ok {
				done = true
			} else if msg := errorLine(l); msg != "" && !strings.HasPrefix(msg, "imagevet-err-") {
				said = append(said, msg)
			}
		case <-timeout:
			done = true
		}
	}
	if len(said) > 0 {
		err = fmt.Errorf("%w: %s", err, strings.Join(said, "; "))
	}
	return &SessionError{Op: command, Err: err}
}

// guestFS is the FS of a session whose image's file systems are mounted.
type guestFS struct{ s *session }

// ReadFile implements FS.
func (g guestFS) ReadFile(ctx context.Context, path string, max int64) ([]byte, error) {
	max = min(max, maxRead)
	out, err := g.s.run(ctx, "pread", quote(path), strconv.FormatInt(max, 10), "0")
	var ce *CommandError
	if errors.As(err, &ce) {
		// Whether the path is absent is asked, not read from the message.
		if ok, xerr := g.exists(ctx, path); xerr == nil && !ok {
			return nil, &fs.PathError{Op: "read", Path: path, Err: fs.ErrNotExist}
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return out, nil
}

func (g guestFS) exists(ctx context.Context, path string) (bool, error) {
	out, err := g.s.run(ctx, "exists", quote(path))
	if err != nil {
		return false, err
	}
	return parseBool(out)
}

// Glob implements FS.
func (g guestFS) Glob(ctx context.Context, pattern string) ([]string, error) {
	out, err := g.s.run(ctx, "glob-expand-opts", quote(pattern), "directoryslash:false")
	if err != nil {
		return nil, fmt.Errorf("glob %s: %w", pattern, err)
	}
	return lines(out), nil
}

// Find implements FS: find0 lists the paths, lstatnslist the modes and sizes
// of a batch of names in one directory at a time (lstatns alone for a name a
// list cannot carry).
func (g guestFS) Find(ctx context.Context, dir string) ([]File, error) {
	out, err := g.s.run(ctx, "find0", quote(dir), "-")
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", dir, err)
	}
	base := strings.TrimSuffix(dir, "/")
	// Paths grouped by their directory, in find's order.
	var dirs []string
	names := map[string][]string{}
	for p := range bytes.SplitSeq(out, []byte{0}) {
		rel := strings.TrimPrefix(string(p), "/")
		if rel == "" {
			continue
		}
		d, n := path.Split(base + "/" + rel)
		if _, ok := names[d]; !ok {
			dirs = append(dirs, d)
		}
		names[d] = append(names[d], n)
	}
	var files []File
	for _, d := range dirs {
		for batch := range slices.Chunk(names[d], 200) {
			var list []string
			for _, n := range batch {
				if !strings.ContainsAny(n, " \t\n\"'\\") {
					list = append(list, n)
					continue
				}
				st, err := g.lstat(ctx, "lstatns", quote(d+n))
				if err != nil || len(st) != 1 {
					return nil, fmt.Errorf("find %s: lstatns %q: %w", dir, d+n, cmpErr(err, "not one entry"))
				}
				files = append(files, File{Path: d + n, Mode: st[0].mode(), Size: st[0].size})
			}
			if len(list) == 0 {
				continue
			}
			st, err := g.lstat(ctx, "lstatnslist", quote(d), quote(strings.Join(list, " ")))
			if err != nil {
				return nil, fmt.Errorf("find %s: %w", dir, err)
			}
			if len(st) != len(list) {
				return nil, fmt.Errorf("find %s: lstatnslist answered %d entries for %d names", dir, len(st), len(list))
			}
			for i, n := range list {
				files = append(files, File{Path: d + n, Mode: st[i].mode(), Size: st[i].size})
			}
		}
	}
	return files, nil
}

func (g guestFS) lstat(ctx context.Context, cmd string, args ...string) ([]stat, error) {
	out, err := g.s.run(ctx, cmd, args...)
	if err != nil {
		return nil, err
	}
	st, err := parseStats(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return st, nil
}

func cmpErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}
