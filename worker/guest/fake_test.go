package guest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// step is one scripted answer: the first step whose match occurs in the command
// line answers it (and is consumed when once is set).
type step struct {
	match string
	once  bool
	out   CommandResult
	err   error
	delay time.Duration // honours ctx while waiting
}

// fakeRunner answers commands from a script and records them.
type fakeRunner struct {
	mu    sync.Mutex
	steps []step
	calls []string
}

func (f *fakeRunner) Run(ctx context.Context, cmd string) (CommandResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, cmd)
	var s *step
	for i := range f.steps {
		if strings.Contains(cmd, f.steps[i].match) {
			st := f.steps[i]
			s = &st
			if st.once {
				f.steps = append(f.steps[:i:i], f.steps[i+1:]...)
			}
			break
		}
	}
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return CommandResult{ExitCode: -1}, err
	}
	if s == nil {
		return CommandResult{ExitCode: 127, Stderr: "fake: unscripted command"}, nil
	}
	if s.delay > 0 {
		select {
		case <-ctx.Done():
			return CommandResult{ExitCode: -1, Duration: s.delay}, ctx.Err()
		case <-time.After(s.delay):
		}
	}
	return s.out, s.err
}

func (f *fakeRunner) count(substr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.Contains(c, substr) {
			n++
		}
	}
	return n
}

func ok(stdout string) CommandResult { return CommandResult{Stdout: stdout} }

func testdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var errConnLost = errors.New("ssh: connection lost")
