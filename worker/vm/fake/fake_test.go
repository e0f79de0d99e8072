package fake

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/worker/vm"
)

func spec(t *testing.T, job string) vm.Spec {
	dir := t.TempDir()
	return vm.Spec{
		Name: vm.DomainName("imagevet-test", "w", job), Worker: "w", Job: job,
		Disk: filepath.Join(dir, "disk.qcow2"), ConsoleLog: filepath.Join(dir, "console.log"),
		VCPUs: 1, MemoryMiB: 256,
	}
}

func TestFakeBootConsoleDestroy(t *testing.T) {
	ctx := context.Background()
	h := &Hypervisor{
		SSHAddr: "127.0.0.1:2222",
		Console: []Line{{0, "Booting"}, {30 * time.Millisecond, "login:"}, {time.Hour, "never"}},
	}
	m, err := h.Boot(ctx, spec(t, "j1"))
	if err != nil {
		t.Fatal(err)
	}
	if m.SSHAddr() != "127.0.0.1:2222" {
		t.Errorf("SSHAddr = %q", m.SSHAddr())
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, _ := os.ReadFile(m.ConsoleLog())
		if strings.Contains(string(b), "login:") {
			if !strings.HasPrefix(string(b), "Booting\n") {
				t.Errorf("console = %q", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console never showed login: %q", b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if up, err := m.Running(ctx); err != nil || !up {
		t.Errorf("Running = %v, %v", up, err)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	fm := h.Machine(m.Name())
	if fm.DestroyCalls() != 2 {
		t.Errorf("DestroyCalls = %d", fm.DestroyCalls())
	}
	if up, _ := m.Running(ctx); up {
		t.Error("running after Destroy")
	}
	if h.Running() != 0 {
		t.Errorf("Running() = %d", h.Running())
	}
	b, _ := os.ReadFile(m.ConsoleLog())
	if strings.Contains(string(b), "never") {
		t.Error("console written after Destroy")
	}
}

func TestFakeScriptedErrors(t *testing.T) {
	ctx := context.Background()
	h := &Hypervisor{BootErrs: []error{ErrScripted, nil}}
	if _, err := h.Boot(ctx, spec(t, "a")); !vm.IsRetryable(err) || !errors.Is(err, vm.ErrUnavailable) {
		t.Errorf("first Boot = %v, want scripted retryable", err)
	}
	s := spec(t, "b")
	if _, err := h.Boot(ctx, s); err != nil {
		t.Errorf("second Boot = %v", err)
	}
	if _, err := h.Boot(ctx, s); !errors.Is(err, vm.ErrExists) {
		t.Errorf("duplicate Boot = %v, want ErrExists", err)
	}
	bad := spec(t, "c")
	bad.VCPUs = 0
	if _, err := h.Boot(ctx, bad); !errors.Is(err, vm.ErrInvalidSpec) || vm.IsRetryable(err) {
		t.Errorf("bad spec Boot = %v", err)
	}
	if got := len(h.Boots()); got != 4 {
		t.Errorf("Boots = %d, want 4", got)
	}
	n, err := h.SweepOrphans(ctx, vm.WorkerPrefix("imagevet-test", "w"), func(string) bool { return true })
	if err != nil || n != 1 {
		t.Errorf("SweepOrphans = %d, %v; want 1", n, err)
	}
	if h.Running() != 0 {
		t.Error("machine left after SweepOrphans")
	}
}

func TestFakeCrashAndAccel(t *testing.T) {
	ctx := context.Background()
	h := &Hypervisor{}
	m, err := h.Boot(ctx, spec(t, "x"))
	if err != nil {
		t.Fatal(err)
	}
	h.Machine(m.Name()).Crash()
	if up, _ := m.Running(ctx); up {
		t.Error("running after Crash")
	}
	if a, _ := h.Accel(ctx, "auto"); a != vm.AccelTCG {
		t.Errorf("auto = %q", a)
	}
	if _, err := h.Accel(ctx, "kvm"); !errors.Is(err, vm.ErrUnsupported) {
		t.Errorf("kvm = %v", err)
	}
	h.AccelKVM = true
	if a, _ := h.Accel(ctx, "auto"); a != vm.AccelKVM {
		t.Errorf("auto with kvm = %q", a)
	}
}
