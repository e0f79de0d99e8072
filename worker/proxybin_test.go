package worker

import (
	"os"
	"path/filepath"
	"testing"
)

// A proxy binary inside a private directory is installed where qemu's user can run it;
// one already reachable is used as it is.
func TestPrepareInstallsAReachableProxy(t *testing.T) {
	base, err := os.MkdirTemp("", "proxybin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	private := filepath.Join(base, "private")
	os.Mkdir(private, 0o700)
	bin := filepath.Join(private, "imagevet")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)

	cfg := DefaultConfig()
	cfg.WorkerID, cfg.StateDir, cfg.ProxyCommand = "p", filepath.Join(base, "state"), bin
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Prepare(); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(base, "state", "bin", "imagevet")
	if cfg.ProxyCommand != want {
		t.Fatalf("ProxyCommand = %s, want the installed copy %s", cfg.ProxyCommand, want)
	}
	if err := reachableByOthers(cfg.ProxyCommand, true); err != nil {
		t.Fatal(err)
	}

	os.Chmod(private, 0o755)
	cfg.ProxyCommand = bin
	if err := cfg.Prepare(); err != nil || cfg.ProxyCommand != bin {
		t.Fatalf("a reachable binary must be used as it is: %s, %v", cfg.ProxyCommand, err)
	}
}
