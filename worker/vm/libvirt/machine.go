package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/imagevet/imagevet/retry"
	"github.com/imagevet/imagevet/worker/vm"
)

// Machine is a domain started by Hypervisor.Boot. It is identified by name
// and UUID, so a later domain reusing the name is never mistaken for it.
type Machine struct {
	h       *Hypervisor
	name    string
	uuid    golibvirt.UUID
	sshAddr string
	console string
}

var _ vm.Machine = (*Machine)(nil)

// Name returns the domain name.
func (m *Machine) Name() string { return m.name }

// SSHAddr returns the 127.0.0.1 address forwarded to the guest's port 22.
func (m *Machine) SSHAddr() string { return m.sshAddr }

// ConsoleLog returns the serial console log path.
func (m *Machine) ConsoleLog() string { return m.console }

// UUID returns the domain's UUID.
func (m *Machine) UUID() string { return uuidString(m.uuid) }

// Running reports whether the domain exists and its vCPUs run (running or
// blocked); a paused, shut-off or vanished domain is not running.
func (m *Machine) Running(ctx context.Context) (bool, error) {
	var state int32
	err := m.h.call(ctx, func(l *golibvirt.Libvirt) error {
		d, err := l.DomainLookupByUUID(m.uuid)
		if err != nil {
			return err
		}
		state, _, err = l.DomainGetState(d, 0)
		return err
	})
	if golibvirt.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, classify("running", m.name, err)
	}
	s := golibvirt.DomainState(state)
	return s == golibvirt.DomainRunning || s == golibvirt.DomainBlocked, nil
}

// Destroy stops the domain at once (no guest shutdown) and undefines it if it
// was made persistent; see vm.Machine.
//
// A connection lost under the destroy (libvirtd restarted, the socket closed by
// a hung call) is retried on a new connection a few times before it is
// reported: a machine left running holds a slot and host memory until the next
// sweep.
func (m *Machine) Destroy(ctx context.Context) error {
	err := destroyRetry.Do(ctx, func(int) error { return m.destroyOnce(ctx) }, func(attempt int, err error) bool {
		if !isConnError(err) || errors.Is(err, vm.ErrTimeout) {
			return false
		}
		m.h.log.Warn("destroy lost its connection; retrying", "domain", m.name, "attempt", attempt, "err", err)
		return true
	})
	if err != nil {
		return classify("destroy", m.name, err)
	}
	m.h.log.Info("machine destroyed", "domain", m.name)
	return nil
}

// destroyRetry paces and bounds Destroy's retries after a lost connection.
var destroyRetry = retry.Policy{Initial: 500 * time.Millisecond, Max: 2 * time.Second, Attempts: 4}

func (m *Machine) destroyOnce(ctx context.Context) error {
	var d golibvirt.Domain
	err := m.h.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		d, err = l.DomainLookupByUUID(m.uuid)
		return err
	})
	if golibvirt.IsNotFound(err) {
		return nil
	}
	if err == nil {
		err = m.h.destroyDomain(ctx, d)
	}
	return err
}

// listPrefixed lists the domains whose name starts with prefix (never "").
func (h *Hypervisor) listPrefixed(ctx context.Context, prefix string) ([]golibvirt.Domain, error) {
	if prefix == "" {
		return nil, classify("sweep", "", fmt.Errorf("%w: empty prefix would match every domain", vm.ErrInvalidSpec))
	}
	var doms []golibvirt.Domain
	err := h.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		doms, _, err = l.ConnectListAllDomains(1, 0)
		return err
	})
	if err != nil {
		return nil, classify("sweep", "", err)
	}
	out := doms[:0]
	for _, d := range doms {
		if strings.HasPrefix(d.Name, prefix) {
			out = append(out, d)
		}
	}
	return out, nil
}

// SweepOrphans destroys the domains with prefix whose recorded owner is gone;
// see vm.Hypervisor. It keeps going past failures and reports them joined.
func (h *Hypervisor) SweepOrphans(ctx context.Context, prefix string, orphaned func(owner string) bool) (int, error) {
	doms, err := h.listPrefixed(ctx, prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, d := range doms {
		var raw string
		err := h.call(ctx, func(l *golibvirt.Libvirt) error {
			var err error
			raw, err = l.DomainGetMetadata(d, int32(golibvirt.DomainMetadataElement), golibvirt.OptString{MetadataNamespace}, 0)
			return err
		})
		if golibvirt.IsNotFound(err) {
			continue // gone meanwhile, or not ours: no imagevet metadata
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
			continue
		}
		var meta struct {
			Owner string `xml:"owner"`
		}
		if xml.Unmarshal([]byte(raw), &meta) != nil || !orphaned(meta.Owner) {
			continue
		}
		if err := h.destroyDomain(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
			continue
		}
		h.log.Info("swept orphan machine", "domain", d.Name, "owner", meta.Owner)
		n++
	}
	if len(errs) > 0 {
		return n, classify("sweep", "", errors.Join(errs...))
	}
	return n, nil
}

// destroyDomain kills d and undefines it if persistent. Not-found and
// not-running are success.
func (h *Hypervisor) destroyDomain(ctx context.Context, d golibvirt.Domain) error {
	err := h.call(ctx, func(l *golibvirt.Libvirt) error {
		return l.DomainDestroyFlags(d, golibvirt.DomainDestroyDefault)
	})
	if golibvirt.IsNotFound(err) {
		return nil
	}
	if err != nil && libvirtCode(err) != golibvirt.ErrOperationInvalid { // not running
		return err
	}
	var persistent int32
	err = h.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		persistent, err = l.DomainIsPersistent(d)
		return err
	})
	if golibvirt.IsNotFound(err) || (err == nil && persistent == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	err = h.call(ctx, func(l *golibvirt.Libvirt) error {
		// The NVRAM file is the caller's, like every other machine file.
		return l.DomainUndefineFlags(d, golibvirt.DomainUndefineKeepNvram)
	})
	if golibvirt.IsNotFound(err) {
		return nil
	}
	return err
}
