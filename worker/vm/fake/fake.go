// Package fake is a scriptable in-memory vm.Hypervisor for unit tests of the
// worker: scripted boot errors, console lines written to the real console log
// file over time, an SSH address supplied by the test, and call counts.
package fake

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/imagevet/imagevet/worker/vm"
)

// Line is one console line the fake guest writes After its boot.
type Line struct {
	After time.Duration
	Text  string // written with a trailing "\n"
}

// Hypervisor is a vm.Hypervisor whose behaviour is set by its exported fields
// before use. The zero value boots every valid spec.
type Hypervisor struct {
	// BootErrs are returned by successive Boot calls; a nil entry boots
	// normally. When they run out, Boot succeeds.
	BootErrs []error
	// Console is written to every booted machine's console log.
	Console []Line
	// SSHAddr is what every machine reports as its SSH forward.
	SSHAddr string
	// AccelKVM makes "auto" resolve to "kvm" (default "tcg").
	AccelKVM bool
	// SweepErr is returned by Sweep (after it destroyed the machines).
	SweepErr error
	// DestroyErr is returned by every Machine.Destroy (the machine still
	// counts the call and stays up).
	DestroyErr error

	mu       sync.Mutex
	boots    []vm.Spec
	machines map[string]*Machine
}

var _ vm.Hypervisor = (*Hypervisor)(nil)

// Boot records spec, returns the next scripted error, or starts a fake machine
// writing the scripted console lines to spec.ConsoleLog.
func (h *Hypervisor) Boot(ctx context.Context, spec vm.Spec) (vm.Machine, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.boots = append(h.boots, spec)
	if err := spec.Validate(); err != nil {
		return nil, &vm.Error{Op: "boot", Machine: spec.Name, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, &vm.Error{Op: "boot", Machine: spec.Name, Retryable: true, Err: err}
	}
	if len(h.BootErrs) > 0 {
		err := h.BootErrs[0]
		h.BootErrs = h.BootErrs[1:]
		if err != nil {
			return nil, err
		}
	}
	if m, ok := h.machines[spec.Name]; ok && m.isRunning() {
		return nil, &vm.Error{Op: "boot", Machine: spec.Name, Retryable: true, Err: vm.ErrExists}
	}
	f, err := os.OpenFile(spec.ConsoleLog, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, &vm.Error{Op: "boot", Machine: spec.Name, Err: fmt.Errorf("%w: console log: %w", vm.ErrInvalidSpec, err)}
	}
	m := &Machine{h: h, spec: spec, sshAddr: h.SSHAddr, running: true, stop: make(chan struct{}), done: make(chan struct{})}
	go m.writeConsole(f, h.Console)
	if h.machines == nil {
		h.machines = map[string]*Machine{}
	}
	h.machines[spec.Name] = m
	return m, nil
}

// SweepOrphans destroys every running fake machine with prefix whose spec's owner
// orphaned reports gone.
func (h *Hypervisor) SweepOrphans(ctx context.Context, prefix string, orphaned func(owner string) bool) (int, error) {
	n := 0
	for _, m := range h.Machines() {
		if strings.HasPrefix(m.spec.Name, prefix) && m.isRunning() && orphaned(m.spec.Owner) {
			if err := m.Destroy(ctx); err == nil {
				n++
			}
		}
	}
	return n, h.SweepErr
}

// Accel resolves "auto" to "tcg", or "kvm" when AccelKVM is set.
func (h *Hypervisor) Accel(ctx context.Context, requested string) (string, error) {
	switch requested {
	case vm.AccelTCG:
		return vm.AccelTCG, nil
	case vm.AccelKVM:
		if !h.AccelKVM {
			return "", &vm.Error{Op: "accel", Retryable: true, Err: vm.ErrUnsupported}
		}
		return vm.AccelKVM, nil
	case "", vm.AccelAuto:
		if h.AccelKVM {
			return vm.AccelKVM, nil
		}
		return vm.AccelTCG, nil
	}
	return "", &vm.Error{Op: "accel", Err: fmt.Errorf("%w: accel %q", vm.ErrInvalidSpec, requested)}
}

// KVM reports AccelKVM, with a reason saying it is the fake's setting.
func (h *Hypervisor) KVM(ctx context.Context) (bool, string, error) {
	if h.AccelKVM {
		return true, "fake hypervisor: AccelKVM set", nil
	}
	return false, "fake hypervisor: AccelKVM not set", nil
}

// Boots returns every spec passed to Boot, in order.
func (h *Hypervisor) Boots() []vm.Spec {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]vm.Spec(nil), h.boots...)
}

// Machines returns the machines booted so far (running or not), by name.
func (h *Hypervisor) Machines() []*Machine {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Machine, 0, len(h.machines))
	for _, m := range h.machines {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].spec.Name < out[j].spec.Name })
	return out
}

// Machine returns the machine booted under name, or nil.
func (h *Hypervisor) Machine(name string) *Machine {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.machines[name]
}

// Running returns how many fake machines are up: what a leak check asserts is 0.
func (h *Hypervisor) Running() int {
	n := 0
	for _, m := range h.Machines() {
		if m.isRunning() {
			n++
		}
	}
	return n
}

// Machine is a fake vm.Machine.
type Machine struct {
	h       *Hypervisor
	spec    vm.Spec
	sshAddr string

	mu       sync.Mutex
	running  bool
	destroys int
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

var _ vm.Machine = (*Machine)(nil)

// Name returns the spec's name.
func (m *Machine) Name() string { return m.spec.Name }

// SSHAddr returns the Hypervisor's SSHAddr at boot time.
func (m *Machine) SSHAddr() string { return m.sshAddr }

// ConsoleLog returns the spec's console log path.
func (m *Machine) ConsoleLog() string { return m.spec.ConsoleLog }

// Spec returns the spec the machine was booted with.
func (m *Machine) Spec() vm.Spec { return m.spec }

// Running reports whether the machine was neither destroyed nor crashed.
func (m *Machine) Running(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, &vm.Error{Op: "running", Machine: m.spec.Name, Retryable: true, Err: err}
	}
	return m.isRunning(), nil
}

// Destroy stops the console writer and marks the machine gone; it counts every
// call. It returns the Hypervisor's DestroyErr if set.
func (m *Machine) Destroy(ctx context.Context) error {
	m.mu.Lock()
	m.destroys++
	m.mu.Unlock()
	if err := m.h.DestroyErr; err != nil {
		return err
	}
	m.halt()
	return nil
}

// Crash simulates the guest powering off or qemu dying: Running turns false
// and the console stops, but the machine still needs Destroy.
func (m *Machine) Crash() { m.halt() }

// DestroyCalls counts Destroy calls.
func (m *Machine) DestroyCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.destroys
}

// ConsoleDone is closed once the console writer has finished or stopped.
func (m *Machine) ConsoleDone() <-chan struct{} { return m.done }

func (m *Machine) isRunning() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

func (m *Machine) halt() {
	m.mu.Lock()
	m.running = false
	m.mu.Unlock()
	m.stopOnce.Do(func() { close(m.stop) })
	<-m.done // no writes to the log after Destroy returns
}

func (m *Machine) writeConsole(f *os.File, lines []Line) {
	defer close(m.done)
	defer f.Close()
	start := time.Now()
	for _, l := range lines {
		wait := time.Until(start.Add(l.After))
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-m.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		select {
		case <-m.stop:
			return
		default:
		}
		if _, err := f.WriteString(l.Text + "\n"); err != nil {
			return
		}
	}
}

// ErrScripted is a convenience boot error for tests: retryable infrastructure
// trouble, as libvirtd being down would give.
var ErrScripted = &vm.Error{Op: "boot", Retryable: true, Err: errors.Join(vm.ErrUnavailable, errors.New("scripted failure"))}
