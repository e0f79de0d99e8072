package owner

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestALiveOwnerIsNeverOrphaned(t *testing.T) {
	state := t.TempDir()
	a, err := Acquire(state, "host")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(state, "host")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() == b.ID() || !strings.HasPrefix(a.ID(), "host-") {
		t.Fatalf("ids %q %q", a.ID(), b.ID())
	}
	if Orphaned(state, a.Path()) || Orphaned(state, b.Path()) {
		t.Fatal("a live owner judged orphaned")
	}
	if Orphaned(t.TempDir(), a.Path()) {
		t.Error("another state directory judged this one's owner")
	}
	if Orphaned(state, "") {
		t.Error("a machine without owner judged orphaned")
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	if !Orphaned(state, a.Path()) {
		t.Error("a released owner is not orphaned")
	}
	if Orphaned(state, b.Path()) {
		t.Error("releasing one owner orphaned the other")
	}
}

// A process killed with SIGKILL leaves its lock file behind, unlocked by the kernel.
func TestAKilledOwnerIsOrphanedAndPruned(t *testing.T) {
	if os.Getenv("OWNER_HELPER_STATE") != "" {
		l, err := Acquire(os.Getenv("OWNER_HELPER_STATE"), "child")
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString(l.Path() + "\n")
		time.Sleep(time.Hour)
		return
	}
	state := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestAKilledOwnerIsOrphanedAndPruned$")
	cmd.Env = append(os.Environ(), "OWNER_HELPER_STATE="+state)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := out.Read(buf)
	path := strings.TrimSpace(string(buf[:n]))
	if filepath.Dir(path) != Dir(state) || Orphaned(state, path) {
		t.Fatalf("child lock %q judged orphaned while the child lives", path)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !Orphaned(state, path) {
		t.Fatal("the killed child's lock is not orphaned")
	}
	if ids := Prune(state); len(ids) != 1 {
		t.Errorf("pruned %v", ids)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("lock file left: %v", err)
	}
}
