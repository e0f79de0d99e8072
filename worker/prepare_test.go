package worker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Prepare creates the state directory and refuses one libvirt's qemu user could
// not traverse.
func TestPrepareStateDir(t *testing.T) {
	base, err := os.MkdirTemp("", "prepare-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	cfg := DefaultConfig()
	cfg.WorkerID, cfg.StateDir = "p", filepath.Join(base, "state")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Prepare(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cfg.StateDir); err != nil || !fi.IsDir() {
		t.Fatalf("state dir not created: %v", err)
	}
	private := filepath.Join(base, "private")
	os.Mkdir(private, 0o700)
	cfg.StateDir = filepath.Join(private, "state")
	err = cfg.Prepare()
	if err == nil || !strings.HasPrefix(err.Error(), "state-dir: directory "+private+" is mode -rwx------: the qemu user needs it world-searchable") {
		t.Fatalf("Prepare under a private directory: %v", err)
	}
}
