package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/imagevet/imagevet/retry"
)

// kvmProbeTimeout bounds how long a throw-away KVM guest's kernel may take to reach
// its end: under working KVM it does in about a second.
const kvmProbeTimeout = 20 * time.Second

// kvmProbeKernelGlob finds the host's own kernels, which the probe boots.
var kvmProbeKernelGlob = "/boot/vmlinuz-*"

// probeGuest boots a throw-away KVM guest the way jobs' guests are booted
// (host-passthrough CPU): the newest host kernel under /boot, directly, without
// a disk, must reach its "cannot mount root" panic within kvmProbeTimeout. A host
// whose KVM is nested and broken fails it: qemu dies at start ("failed to set
// MSR"), or the guest kernel hangs. Without a host kernel only qemu's start is
// probed, and why says so. err is an infrastructure error (libvirtd did not
// answer); ok and why are the verdict.
func (h *Hypervisor) probeGuest(ctx context.Context) (ok bool, why string, err error) {
	dir, err := os.MkdirTemp("", "imagevet-kvmprobe-")
	if err != nil {
		return false, "", fmt.Errorf("kvm probe: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return false, "", fmt.Errorf("kvm probe: %w", err)
	}
	console := filepath.Join(dir, "console.log")
	kernel := hostKernel()
	uuid := newUUID()
	name := "imagevet-kvmprobe-" + uuidString(uuid)[:8]
	doc, err := probeDomain(name, uuidString(uuid), kernel, console).Marshal()
	if err != nil {
		return false, "", fmt.Errorf("kvm probe: marshal domain: %w", err)
	}
	start := time.Now()
	err = h.call(ctx, func(l *golibvirt.Libvirt) error {
		_, err := l.DomainCreateXML(doc, golibvirt.DomainNone)
		return err
	})
	// The guest goes on every path, whatever the caller's context does.
	defer func() {
		if cerr := h.removeInterrupted(ctx, name, uuid); cerr != nil {
			h.log.Error("kvm probe guest not removed", "domain", name, "err", cerr)
		}
	}()
	if err != nil {
		if libvirtCode(err) < 0 {
			return false, "", fmt.Errorf("kvm probe: %w", err)
		}
		return false, "a KVM guest does not start: " + firstErrorLine(err), nil
	}
	if kernel == "" {
		// Nothing to watch: the guest must at least stay up a moment.
		if err := retry.Wait(ctx, 2*time.Second); err != nil {
			return false, "", err
		}
		if !h.domainExists(ctx, name, uuid) {
			return false, "a KVM guest stopped at once (no host kernel under /boot to probe further)", nil
		}
		return true, "a KVM guest starts (no host kernel under /boot: guest kernels not probed)", nil
	}
	deadline := time.Now().Add(kvmProbeTimeout)
	for {
		log, _ := os.ReadFile(console)
		if kernelEnded(log) {
			return true, fmt.Sprintf("a KVM guest ran %s to its end in %s", filepath.Base(kernel), time.Since(start).Round(100*time.Millisecond)), nil
		}
		if time.Now().After(deadline) {
			last := lastLine(log)
			if last == "" {
				return false, fmt.Sprintf("a KVM guest's kernel (%s) printed nothing in %s: guest kernels hang under this host's KVM", filepath.Base(kernel), kvmProbeTimeout), nil
			}
			return false, fmt.Sprintf("a KVM guest's kernel (%s) did not reach its end in %s; it stopped at %q", filepath.Base(kernel), kvmProbeTimeout, last), nil
		}
		if err := retry.Wait(ctx, 200*time.Millisecond); err != nil {
			return false, "", err
		}
	}
}

// probeDomain is the throw-away guest: 128 MiB, one vCPU, the jobs' KVM CPU, the
// kernel booted directly (when there is one) with no root to find, gone at its
// panic's reboot.
func probeDomain(name, uuid, kernel, console string) *libvirtxml.Domain {
	d := &libvirtxml.Domain{
		Type:   "kvm",
		Name:   name,
		UUID:   uuid,
		Memory: &libvirtxml.DomainMemory{Value: 128, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		CPU:    &libvirtxml.DomainCPU{Mode: "host-passthrough", Check: "none"},
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
		},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainSerialTarget{Port: new(uint)},
				Log:    &libvirtxml.DomainChardevLog{File: console, Append: "off"},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if kernel != "" {
		d.OS.Kernel = kernel
		d.OS.Cmdline = "console=ttyS0 panic=-1 root=/dev/imagevet-probe-none rootwait=0 quiet loglevel=4"
	}
	return d
}

// hostKernel is the newest host kernel the qemu user can read, or "".
func hostKernel() string {
	found, _ := filepath.Glob(kvmProbeKernelGlob)
	slices.Sort(found)
	for i := len(found) - 1; i >= 0; i-- {
		if qemuReadable(found[i]) == nil {
			return found[i]
		}
	}
	return ""
}

// kernelEnded reports whether a console shows a kernel that came up and reached
// its end: it found no root file system and panicked.
func kernelEnded(log []byte) bool {
	return bytes.Contains(log, []byte("Kernel panic")) || bytes.Contains(log, []byte("Unable to mount root"))
}

// lastLine is the last non-empty line of a console, bounded.
func lastLine(log []byte) string {
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if len(last) > 160 {
		last = last[:160] + "…"
	}
	return last
}

// firstErrorLine is a libvirt error's message up to its first line break, where
// qemu's own complaint ends.
func firstErrorLine(err error) string {
	msg := err.Error()
	var lerr golibvirt.Error
	if errors.As(err, &lerr) {
		msg = lerr.Message
	}
	msg, _, _ = strings.Cut(msg, "\n")
	return msg
}

// domainExists reports whether the domain name with uuid is still there.
func (h *Hypervisor) domainExists(ctx context.Context, name string, uuid golibvirt.UUID) bool {
	d, err := h.lookupName(ctx, name)
	return err == nil && d.UUID == uuid
}
