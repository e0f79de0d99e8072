package libvirt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/imagevet/imagevet/retry"
	"github.com/imagevet/imagevet/worker/vm"
)

const (
	// cleanupTimeout bounds the cleanup after a Boot whose outcome is
	// unknown; it runs on a context detached from the caller's.
	cleanupTimeout = 20 * time.Second
	// settle is how long a name must stay absent before an interrupted
	// create is considered to have left nothing behind.
	settle = time.Second
)

// bootOptions are test hooks beyond vm.Spec.
type bootOptions struct {
	netdevExtra, nicExtra []string
}

// Boot defines and starts a transient domain for spec; see vm.Hypervisor.
// The disk, seed and console log directory must exist; for UEFI the NVRAM file
// is created from the OVMF template unless it exists.
func (h *Hypervisor) Boot(ctx context.Context, spec vm.Spec) (vm.Machine, error) {
	return h.boot(ctx, spec, bootOptions{})
}

func (h *Hypervisor) boot(ctx context.Context, spec vm.Spec, opt bootOptions) (*Machine, error) {
	start := time.Now()
	fail := func(err error) (*Machine, error) { return nil, classify("boot", spec.Name, err) }
	if err := spec.Validate(); err != nil {
		return fail(err)
	}
	if err := checkFiles(spec); err != nil {
		return fail(err)
	}
	chain, err := backingChain(spec.Disk)
	if err != nil {
		return fail(err)
	}
	for _, b := range chain {
		if err := qemuReadable(b.Path); err != nil {
			return fail(fmt.Errorf("%w: backing image: %w", vm.ErrInvalidSpec, err))
		}
	}
	accel, err := h.Accel(ctx, spec.Accel)
	if err != nil {
		return fail(err)
	}
	uuid := newUUID()
	p := domainParams{Spec: spec, Accel: accel, UUID: uuidString(uuid), Backing: chain, NetdevExtra: opt.netdevExtra, NICExtra: opt.nicExtra}
	if spec.Firmware == vm.FirmwareUEFI {
		fw, err := h.firmware()
		if err != nil {
			return fail(err)
		}
		if err := ensureNVRAM(spec.NVRAM, fw.Vars); err != nil {
			return fail(err)
		}
		p.UEFI = &fw
	}

	var m *Machine
	err = portRetry.Do(ctx, func(int) error {
		m, err = h.create(ctx, spec, &p, uuid)
		return err
	}, func(_ int, err error) bool {
		var taken *portTakenError
		if !errors.As(err, &taken) {
			return false
		}
		h.log.Debug("ssh forward port taken, retrying", "domain", spec.Name, "port", taken.port)
		return true
	})
	if err != nil {
		return fail(err)
	}
	h.log.Info("machine booted", "domain", spec.Name, "accel", accel, "firmware", firmwareName(spec), "ssh", m.sshAddr,
		"duration", time.Since(start))
	return m, nil
}

// portRetry bounds Boot's tries when the chosen SSH forward port was taken
// between picking it and qemu binding it; the next try picks another at once.
var portRetry = retry.Policy{Attempts: 3}

// portTakenError is a create that failed because another process took the SSH
// forward port first.
type portTakenError struct {
	port int
	err  error
}

func (e *portTakenError) Error() string { return e.err.Error() }
func (e *portTakenError) Unwrap() error { return e.err }

// create picks an SSH forward port and creates the domain once.
func (h *Hypervisor) create(ctx context.Context, spec vm.Spec, p *domainParams, uuid golibvirt.UUID) (*Machine, error) {
	var err error
	if p.SSHPort, err = freePort(); err != nil {
		return nil, fmt.Errorf("pick ssh forward port: %w", err)
	}
	dom, err := buildDomain(*p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", vm.ErrInvalidSpec, err)
	}
	doc, err := dom.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: marshal domain: %w", vm.ErrInvalidSpec, err)
	}
	var d golibvirt.Domain
	err = h.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		d, err = l.DomainCreateXML(doc, golibvirt.DomainNone)
		return err
	})
	switch {
	case err == nil:
		return &Machine{h: h, name: spec.Name, uuid: d.UUID, sshAddr: fmt.Sprintf("127.0.0.1:%d", p.SSHPort), console: spec.ConsoleLog}, nil
	case libvirtCode(err) < 0:
		// No answer from libvirtd (timeout, cancel, lost connection): the
		// domain may have been created anyway.
		cleanupErr := h.removeInterrupted(ctx, spec.Name, uuid)
		if cleanupErr != nil {
			h.log.Error("cleanup after interrupted boot failed", "domain", spec.Name, "err", cleanupErr)
		}
		return nil, errors.Join(err, cleanupErr)
	case isPortTaken(err):
		return nil, &portTakenError{port: p.SSHPort, err: err}
	case h.otherExists(ctx, spec.Name, uuid):
		return nil, fmt.Errorf("%w: %w", vm.ErrExists, err)
	}
	return nil, err
}

// checkFiles reports missing inputs before libvirtd sees the definition.
func checkFiles(s vm.Spec) error {
	files := []string{s.Disk}
	if s.Seed != "" {
		files = append(files, s.Seed)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("%w: %w", vm.ErrInvalidSpec, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: %s is not a regular file", vm.ErrInvalidSpec, f)
		}
	}
	// libvirt hands the qemu user the files themselves, not the
	// directories above them.
	for _, f := range append(files, s.NVRAM) {
		if f == "" {
			continue
		}
		if err := qemuSearchable(filepath.Dir(f)); err != nil {
			return fmt.Errorf("%w: %w", vm.ErrInvalidSpec, err)
		}
	}
	if fi, err := os.Stat(filepath.Dir(s.ConsoleLog)); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: console log directory %s does not exist", vm.ErrInvalidSpec, filepath.Dir(s.ConsoleLog))
	}
	return nil
}

// isPortTaken reports whether qemu failed because the host forward port was
// in use. qemu says so only in text; this is the one place that reads it.
func isPortTaken(err error) bool {
	var lerr golibvirt.Error
	return errors.As(err, &lerr) && strings.Contains(lerr.Message, "Could not set up host forwarding rule")
}

// otherExists reports whether a domain named name with another UUID exists
// (a create failed because the name is taken).
func (h *Hypervisor) otherExists(ctx context.Context, name string, uuid golibvirt.UUID) bool {
	d, err := h.lookupName(ctx, name)
	return err == nil && d.UUID != uuid
}

// lookupName finds the domain called name.
func (h *Hypervisor) lookupName(ctx context.Context, name string) (golibvirt.Domain, error) {
	var d golibvirt.Domain
	err := h.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		d, err = l.DomainLookupByName(name)
		return err
	})
	return d, err
}

// removeInterrupted destroys the domain an interrupted create may have left
// (matched by name and our UUID), waiting until the name has stayed absent for
// settle: libvirtd may still be working through the create when we look. It
// runs detached from ctx's cancellation, under its own timeout.
func (h *Hypervisor) removeInterrupted(ctx context.Context, name string, uuid golibvirt.UUID) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var absentSince time.Time
	for {
		d, err := h.lookupName(ctx, name)
		switch {
		case golibvirt.IsNotFound(err) || (err == nil && d.UUID != uuid):
			if absentSince.IsZero() {
				absentSince = time.Now()
			}
			if time.Since(absentSince) >= settle {
				return nil
			}
		case err != nil:
			if ctx.Err() != nil {
				return fmt.Errorf("domain %s may be left running: %w", name, err)
			}
		default:
			absentSince = time.Time{}
			if err := h.destroyDomain(ctx, d); err != nil && ctx.Err() != nil {
				return fmt.Errorf("domain %s may be left running: %w", name, err)
			}
			h.log.Info("removed domain left by interrupted boot", "domain", name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("domain %s may be left running: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func newUUID() golibvirt.UUID {
	var u golibvirt.UUID
	if _, err := io.ReadFull(rand.Reader, u[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

func uuidString(u golibvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func firmwareName(s vm.Spec) string {
	if s.Firmware == "" {
		return vm.FirmwareBIOS
	}
	return s.Firmware
}
