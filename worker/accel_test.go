package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/imagevet/imagevet/worker/vm"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// A worker's accel resolves once with its reason: tcg when asked for, auto to what
// the hypervisor's KVM verdict allows, kvm refused where KVM cannot run a guest.
func TestRunnerAccel(t *testing.T) {
	for _, tc := range []struct {
		requested string
		kvm       bool
		want, why string
		err       error
	}{
		{vm.AccelTCG, true, vm.AccelTCG, "tcg requested", nil},
		{vm.AccelAuto, true, vm.AccelKVM, "fake hypervisor: AccelKVM set", nil},
		{vm.AccelAuto, false, vm.AccelTCG, "fake hypervisor: AccelKVM not set", nil},
		{vm.AccelKVM, true, vm.AccelKVM, "fake hypervisor: AccelKVM set", nil},
		{vm.AccelKVM, false, "", "", vm.ErrUnsupported},
	} {
		cfg := DefaultConfig()
		cfg.WorkerID, cfg.StateDir, cfg.Accel = "unit", t.TempDir(), tc.requested
		r := NewRunner(cfg, &fakeImages{}, &fake.Hypervisor{AccelKVM: tc.kvm}, nil)
		accel, why, err := r.Accel(context.Background())
		r.Close()
		if accel != tc.want || why != tc.why || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("accel %s, kvm %v: got %q %q %v, want %q %q %v", tc.requested, tc.kvm, accel, why, err, tc.want, tc.why, tc.err)
		}
	}
}
