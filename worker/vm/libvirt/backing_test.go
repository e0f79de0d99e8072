package libvirt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/imagevet/imagevet/worker/vm"
)

func TestBackingChain(t *testing.T) {
	need(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "base.raw")
	mid := filepath.Join(dir, "mid.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "raw", raw, "1M")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", raw, mid)
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "mid.qcow2", top) // relative
	chain, err := backingChain(top)
	if err != nil {
		t.Fatal(err)
	}
	want := []backingFile{{mid, "qcow2"}, {raw, "raw"}}
	if len(chain) != len(want) || chain[0] != want[0] || chain[1] != want[1] {
		t.Errorf("chain = %v, want %v", chain, want)
	}

	plain := filepath.Join(dir, "plain.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", plain, "1M") // v2 header
	if chain, err := backingChain(plain); err != nil || len(chain) != 0 {
		t.Errorf("no-backing chain = %v, %v", chain, err)
	}
	notQcow := filepath.Join(dir, "x.qcow2")
	os.WriteFile(notQcow, make([]byte, 512), 0o644)
	if _, err := backingChain(notQcow); !errors.Is(err, vm.ErrInvalidSpec) {
		t.Errorf("non-qcow2 error = %v", err)
	}
}

func TestQemuReadable(t *testing.T) {
	dir := qemuDir(t)
	f := filepath.Join(dir, "base.qcow2")
	os.WriteFile(f, nil, 0o644)
	if err := qemuReadable(f); err != nil {
		t.Errorf("0644 in 0755: %v", err)
	}
	os.Chmod(f, 0o600)
	if err := qemuReadable(f); err == nil {
		t.Error("0600 file reported readable")
	}
	os.Chmod(f, 0o644)
	os.Chmod(dir, 0o700)
	if err := qemuReadable(f); err == nil {
		t.Error("file in 0700 dir reported readable")
	}
	os.Chmod(dir, 0o711)
	if err := qemuReadable(f); err != nil {
		t.Errorf("0711 dir: %v", err)
	}
}

// TestBootLeavesBaseUntouched: the cached base under an overlay keeps its
// owner while the guest runs and after (libvirt's own chain handling would
// chown it to the qemu user for good), and a base the qemu user cannot read
// is refused before libvirtd sees it.
func TestBootLeavesBaseUntouched(t *testing.T) {
	h := newHypervisor(t, Config{})
	ctx := context.Background()
	cache, job := qemuDir(t), qemuDir(t)
	base := emptyDisk(t, cache)
	spec := testSpec(t, job, "base-owner")
	os.Remove(spec.Disk)
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, spec.Disk)
	destroyOnCleanup(t, h, spec.Name)
	owner := func() uint32 {
		fi, err := os.Stat(base)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Uid
	}
	before := owner()
	m, err := h.Boot(ctx, spec)
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	if got := owner(); got != before {
		t.Errorf("base owner changed to %d while running (was %d)", got, before)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if got := owner(); got != before {
		t.Errorf("base owner %d after Destroy (was %d)", got, before)
	}

	os.Chmod(base, 0o600)
	_, err = h.Boot(ctx, spec)
	if !errors.Is(err, vm.ErrInvalidSpec) || vm.IsRetryable(err) {
		t.Errorf("Boot over unreadable base = %v, want ErrInvalidSpec", err)
	}
	if domainExists(t, h, spec.Name) {
		t.Error("domain left behind")
	}
}
