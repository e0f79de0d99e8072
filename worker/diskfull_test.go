package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm/fake"

	"github.com/imagevet/imagevet/internal/testenv"
)

// A job directory that hits a full disk (a 4 MiB tmpfs this test mounts as the state
// directory, filled up first) ends the job in a retryable error, leaves no
// half-written file, and the same runner serves the next job once there is space.
// The hypervisor is the fake: what is tested is our own handling of ENOSPC.
func TestJobDirectoryOnFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: mounts a tmpfs")
	}
	state := testenv.Tmpfs(t, 4<<20)
	filler := filepath.Join(state, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 64<<10)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()

	hv := &fake.Hypervisor{SSHAddr: closingListener(t)}
	cfg := DefaultConfig()
	cfg.WorkerID = "unit"
	cfg.StateDir = state
	cfg.Accel = "tcg"
	cfg.TCGFactor = 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := NewRunner(cfg, &fakeImages{}, hv, nil)
	t.Cleanup(r.Close)

	res := r.Run(context.Background(), testJob("diskfull"), 1, nil)
	if res.Verdict != jobs.VerdictError || !res.Retryable {
		t.Fatalf("full disk: got %s retryable=%v %q, want a retryable error", res.Verdict, res.Retryable, res.Reason)
	}
	t.Logf("full disk: %s", res.Reason)
	if !strings.Contains(res.Reason, "no space left on device") {
		t.Errorf("reason %q does not say the disk is full", res.Reason)
	}
	if n := len(hv.Machines()); n != 0 {
		t.Errorf("%d machines booted without a seed", n)
	}
	left, _ := filepath.Glob(filepath.Join(state, "jobs", "*", "*"))
	if len(left) != 0 {
		t.Errorf("left behind after a full disk: %v", left)
	}

	// Space again: the same runner takes the next job up to its boot.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	onFirstBoot(hv, func(m *fake.Machine) { m.Crash() })
	res = r.Run(context.Background(), testJob("diskfull-next"), 1, nil)
	if len(hv.Machines()) != 1 {
		t.Fatalf("the next job booted %d machines, want 1 (result %s %q)", len(hv.Machines()), res.Verdict, res.Reason)
	}
	if strings.Contains(res.Reason, "no space") {
		t.Errorf("the next job still failed on disk space: %q", res.Reason)
	}
	assertCleanedUp(t, cfg, hv)
}
