package libvirt

import (
	"context"
	"fmt"
	"os"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/imagevet/imagevet/worker/vm"
)

// Accel resolves requested to "kvm" or "tcg"; see vm.Hypervisor. "auto" is
// kvm when /dev/kvm can be opened read-write, libvirt's domain capabilities
// offer a kvm domain and a throw-away KVM guest runs (probeGuest), else tcg
// with a warning. The answer is probed once and cached.
func (h *Hypervisor) Accel(ctx context.Context, requested string) (string, error) {
	switch requested {
	case vm.AccelTCG:
		return vm.AccelTCG, nil
	case "", vm.AccelAuto, vm.AccelKVM:
	default:
		return "", classify("accel", "", fmt.Errorf("%w: accel %q", vm.ErrInvalidSpec, requested))
	}
	ok, why, err := h.kvm(ctx)
	if err != nil {
		return "", classify("accel", "", err)
	}
	if ok {
		return vm.AccelKVM, nil
	}
	if requested == vm.AccelKVM {
		return "", classify("accel", "", fmt.Errorf("%w: kvm: %s", vm.ErrUnsupported, why))
	}
	h.warnTCG.Do(func() { h.log.Warn("kvm unusable, emulating with tcg", "reason", why) })
	return vm.AccelTCG, nil
}

// KVM reports whether KVM can run a guest on this host and why, probing once per
// Hypervisor (see Accel); err is an infrastructure error.
func (h *Hypervisor) KVM(ctx context.Context) (usable bool, why string, err error) { return h.kvm(ctx) }

func (h *Hypervisor) kvm(ctx context.Context) (bool, string, error) {
	h.accelMu.Lock()
	defer h.accelMu.Unlock()
	if h.kvmKnown {
		return h.kvmOK, h.kvmWhy, nil
	}
	ok, why, err := h.probeKVM(ctx)
	if err != nil {
		return false, "", err
	}
	h.kvmKnown, h.kvmOK, h.kvmWhy = true, ok, why
	h.log.Info("kvm probed", "usable", ok, "reason", why)
	return ok, why, nil
}

func (h *Hypervisor) probeKVM(ctx context.Context) (bool, string, error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("/dev/kvm unusable: %v", err), nil
	}
	f.Close()
	var doc string
	err = h.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		doc, err = l.ConnectGetDomainCapabilities(nil, golibvirt.OptString{"x86_64"}, nil, golibvirt.OptString{"kvm"}, 0)
		return err
	})
	if libvirtCode(err) >= 0 {
		// libvirtd answered: no kvm domain on this host.
		return false, fmt.Sprintf("libvirt offers no kvm domain: %v", err), nil
	}
	if err != nil {
		return false, "", err
	}
	var caps libvirtxml.DomainCaps
	if err := caps.Unmarshal(doc); err != nil {
		return false, "", fmt.Errorf("parse domain capabilities: %w", err)
	}
	if caps.Domain != "kvm" {
		return false, fmt.Sprintf("libvirt offers domain type %q, not kvm", caps.Domain), nil
	}
	return h.probeGuest(ctx)
}
