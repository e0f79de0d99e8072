package worker

import (
	"context"

	"github.com/imagevet/imagevet/worker/vm"
)

// kvmProber is a hypervisor that can say whether KVM runs a guest on this host and
// why (worker/vm/libvirt's Hypervisor.KVM, probed once per process).
type kvmProber interface {
	KVM(ctx context.Context) (usable bool, why string, err error)
}

// Accel resolves the acceleration this runner's jobs get, as a worker does once at
// start to announce it: what the configured accel resolves to on this host ("kvm" or
// "tcg") and why (the KVM probe's verdict, or that tcg was asked for). Asking for kvm
// where KVM cannot run a guest is an error naming why.
func (r *Runner) Accel(ctx context.Context) (accel, why string, err error) {
	accel, err = r.hv.Accel(ctx, r.cfg.Accel)
	if err != nil {
		return "", "", err
	}
	if r.cfg.Accel == vm.AccelTCG {
		return accel, "tcg requested", nil
	}
	if p, ok := r.hv.(kvmProber); ok {
		if _, why, err = p.KVM(ctx); err != nil {
			return "", "", err
		}
	}
	return accel, why, nil
}
