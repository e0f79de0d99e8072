package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/imagevet/imagevet/worker/vm"
)

// Config configures a Hypervisor. Zero fields take the documented defaults.
type Config struct {
	// URI is the libvirt connection URI opened on the daemon
	// (default "qemu:///system"). The transport is always Socket.
	URI string
	// Socket is libvirtd's unix socket (default /var/run/libvirt/libvirt-sock).
	Socket string
	// CallTimeout bounds every libvirt RPC, including connecting
	// (default 30s). The caller's context may shorten it.
	CallTimeout time.Duration
	// OVMFCode and OVMFVars override the UEFI firmware and NVRAM template
	// (default: the first pair found among the usual distribution paths).
	OVMFCode, OVMFVars string
	// Logger receives boot/destroy/reconnect events (default slog.Default()).
	Logger *slog.Logger
}

const (
	defaultURI         = "qemu:///system"
	defaultSocket      = "/var/run/libvirt/libvirt-sock"
	defaultCallTimeout = 30 * time.Second
)

// Hypervisor is a vm.Hypervisor backed by libvirtd. It holds one RPC
// connection, shared by all callers and re-established when it drops. Safe for
// concurrent use.
type Hypervisor struct {
	cfg Config
	log *slog.Logger

	dialMu sync.Mutex // serializes reconnects
	mu     sync.Mutex
	cur    *conn
	closed bool

	accelMu  sync.Mutex
	kvmKnown bool
	kvmOK    bool
	kvmWhy   string
	warnTCG  sync.Once
}

var _ vm.Hypervisor = (*Hypervisor)(nil)

// conn is one established libvirt connection and the socket under it, which
// the watchdog closes to abort a call that does not return.
type conn struct {
	l    *golibvirt.Libvirt
	dial *dialer
}

// New connects to libvirtd and returns a Hypervisor; ctx bounds the connect.
func New(ctx context.Context, cfg Config) (*Hypervisor, error) {
	if cfg.URI == "" {
		cfg.URI = defaultURI
	}
	if cfg.Socket == "" {
		cfg.Socket = defaultSocket
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = defaultCallTimeout
	}
	if (cfg.OVMFCode == "") != (cfg.OVMFVars == "") {
		return nil, &vm.Error{Op: "connect", Err: fmt.Errorf("%w: set both OVMFCode and OVMFVars, or neither", vm.ErrInvalidSpec)}
	}
	h := &Hypervisor{cfg: cfg, log: cfg.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("component", "libvirt")
	ctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
	defer cancel()
	if _, err := h.connect(ctx); err != nil {
		return nil, classify("connect", "", err)
	}
	h.warnKVMPermissions()
	return h, nil
}

// Close disconnects from libvirtd. Machines keep running; a closed Hypervisor
// fails every call with ErrUnavailable.
func (h *Hypervisor) Close() error {
	h.mu.Lock()
	c := h.cur
	h.cur, h.closed = nil, true
	h.mu.Unlock()
	if c == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- c.l.Disconnect() }()
	select {
	case err := <-done:
		return err
	case <-time.After(min(h.cfg.CallTimeout, 5*time.Second)):
		c.dial.abort()
		return &vm.Error{Op: "close", Retryable: true, Err: vm.ErrTimeout}
	}
}

// connect returns the live connection, dialing a new one if there is none or
// the old one dropped.
func (h *Hypervisor) connect(ctx context.Context) (*conn, error) {
	if c, err := h.current(); c != nil || err != nil {
		return c, err
	}
	h.dialMu.Lock()
	defer h.dialMu.Unlock()
	if c, err := h.current(); c != nil || err != nil {
		return c, err
	}
	d := &dialer{socket: h.cfg.Socket}
	if dl, ok := ctx.Deadline(); ok {
		d.timeout = time.Until(dl)
	}
	l := golibvirt.NewWithDialer(d)
	err := watch(ctx, d, func() error { return l.ConnectToURI(golibvirt.ConnectURI(h.cfg.URI)) })
	if err != nil {
		d.abort()
		return nil, fmt.Errorf("connect %s via %s: %w", h.cfg.URI, h.cfg.Socket, err)
	}
	c := &conn{l: l, dial: d}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		d.abort()
		return nil, errClosed
	}
	h.cur = c
	h.log.Debug("libvirt connected", "uri", h.cfg.URI)
	return c, nil
}

var errClosed = fmt.Errorf("%w: hypervisor closed", vm.ErrUnavailable)

func (h *Hypervisor) current() (*conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errClosed
	}
	if h.cur != nil && h.cur.l.IsConnected() {
		return h.cur, nil
	}
	h.cur = nil
	return nil, nil
}

// drop abandons c: its socket is closed, so calls in flight on it return,
// and the next call reconnects.
func (h *Hypervisor) drop(c *conn) {
	c.dial.abort()
	h.mu.Lock()
	if h.cur == c {
		h.cur = nil
	}
	h.mu.Unlock()
}

// call runs fn on the connection under CallTimeout and ctx. go-libvirt calls
// take no context, and every call shares one socket, so only a call that
// outlives CallTimeout (a hung libvirtd) closes the connection: fn then
// returns, and call reports ErrTimeout. A caller that gives up earlier (its ctx
// ends) gets its context's cause at once while the call finishes on its own
// under the same watchdog: cancelling one job's poll must not interrupt
// another's destroy in flight on the same socket.
func (h *Hypervisor) call(ctx context.Context, fn func(l *golibvirt.Libvirt) error) error {
	cctx, cancel := context.WithTimeout(ctx, h.cfg.CallTimeout)
	c, err := h.connect(cctx)
	cancel()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- fn(c.l) }()
	watchdog := time.NewTimer(h.cfg.CallTimeout)
	expired := func() error {
		h.drop(c)
		return fmt.Errorf("%w: libvirt call took longer than %s", vm.ErrTimeout, h.cfg.CallTimeout)
	}
	select {
	case err := <-done:
		watchdog.Stop()
		if err != nil && isConnError(err) {
			h.drop(c)
		}
		return err
	case <-watchdog.C:
		return expired()
	case <-ctx.Done():
		go func() {
			select {
			case err := <-done:
				watchdog.Stop()
				if err != nil && isConnError(err) {
					h.drop(c)
				}
			case <-watchdog.C:
				_ = expired()
			}
		}()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: %w", vm.ErrTimeout, context.Cause(ctx))
		}
		return context.Cause(ctx)
	}
}

// watch runs fn and waits for it or for ctx. On ctx's end it aborts d (so fn
// returns soon) and returns ErrTimeout or the context's cause.
func watch(ctx context.Context, d *dialer, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		d.abort()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: %w", vm.ErrTimeout, context.Cause(ctx))
		}
		return context.Cause(ctx)
	}
}

// dialer dials libvirtd's unix socket and remembers the connection so a
// watchdog can close it under a blocked call.
type dialer struct {
	socket  string
	timeout time.Duration

	mu      sync.Mutex
	c       net.Conn
	aborted bool
}

// Dial implements go-libvirt's socket.Dialer.
func (d *dialer) Dial() (net.Conn, error) {
	t := d.timeout
	if t <= 0 {
		t = defaultCallTimeout
	}
	c, err := net.DialTimeout("unix", d.socket, t)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", vm.ErrUnavailable, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.aborted {
		c.Close()
		return nil, fmt.Errorf("%w: connection aborted", vm.ErrUnavailable)
	}
	d.c = c
	return c, nil
}

func (d *dialer) abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.aborted = true
	if d.c != nil {
		d.c.Close()
	}
}

// isConnError reports whether err means the connection itself is unusable
// (as opposed to an error answer from libvirtd).
func isConnError(err error) bool {
	var lerr golibvirt.Error
	if errors.As(err, &lerr) {
		return false
	}
	return errors.Is(err, golibvirt.ErrInterrupted) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EINVAL) ||
		errors.Is(err, vm.ErrUnavailable) || errors.Is(err, vm.ErrTimeout)
}

// classify wraps err into a *vm.Error for op on machine, deciding whether it is
// the spec's fault (not retryable) or the infrastructure's (retryable).
func classify(op, machine string, err error) error {
	if err == nil {
		return nil
	}
	var ve *vm.Error
	if errors.As(err, &ve) {
		return err
	}
	e := &vm.Error{Op: op, Machine: machine, Err: err}
	var lerr golibvirt.Error
	switch {
	case errors.Is(err, vm.ErrInvalidSpec):
		e.Retryable = false
	case errors.As(err, &lerr):
		switch golibvirt.ErrorNumber(lerr.Code) {
		case golibvirt.ErrXMLError, golibvirt.ErrXMLDetail, golibvirt.ErrConfigUnsupported,
			golibvirt.ErrInvalidArg, golibvirt.ErrNoSupport, golibvirt.ErrOperationUnsupported:
			e.Err = fmt.Errorf("%w: %w", vm.ErrInvalidSpec, err)
		default:
			// Everything else libvirtd reports (qemu failed to start,
			// host resources, internal errors) is not the spec's fault.
			e.Retryable = true
		}
	case isConnError(err):
		e.Retryable = true
		if !errors.Is(err, vm.ErrUnavailable) && !errors.Is(err, vm.ErrTimeout) {
			e.Err = fmt.Errorf("%w: %w", vm.ErrUnavailable, err)
		}
	default:
		// Cancellation and anything unforeseen: not the spec's fault.
		e.Retryable = true
	}
	return e
}

// libvirtCode returns the libvirt error number carried by err, or -1.
func libvirtCode(err error) golibvirt.ErrorNumber {
	var lerr golibvirt.Error
	if errors.As(err, &lerr) {
		return golibvirt.ErrorNumber(lerr.Code)
	}
	return -1
}

// warnKVMPermissions logs the host misconfiguration that makes libvirt
// re-probe qemu on every call (seconds per RPC): /dev/kvm present but not
// accessible to the kvm group, so libvirt's capability cache, probed with KVM
// working, is judged stale each time it is read.
func (h *Hypervisor) warnKVMPermissions() {
	fi, err := os.Stat("/dev/kvm")
	if err != nil {
		return
	}
	if fi.Mode().Perm()&0o060 != 0o060 {
		h.log.Warn("/dev/kvm is not group read-write: libvirt re-probes qemu on every call, making boots take seconds; set it to root:kvm 0660 as udev does",
			"mode", fi.Mode().String())
	}
}
