package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Backoff of Dialer between two connection attempts, each wait moved by up to a
// fifth either way.
const (
	DefaultDialMinBackoff = 500 * time.Millisecond
	DefaultDialMaxBackoff = 30 * time.Second

	maxQueueBackoff = 10 * time.Second
)

// ConnectError is a NATS connection failure that waiting cannot mend: a malformed
// server URL, credentials the server refuses, a credentials, nkey or TLS file that
// cannot be read, or a TLS mismatch. Dialer.Dial ends on it; anything else (no
// server listening yet, a timeout, a reset) it tries again.
type ConnectError struct {
	// Reason names what is wrong: "server URL", "credentials", "file" or "TLS".
	Reason string
	Err    error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("nats %s: %v (not retried)", e.Reason, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// checkServerURL refuses a server URL nats.go could not dial whatever the network
// does: one that does not parse, another scheme, no host, a port that is not one.
func checkServerURL(s string) error {
	raw := s
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return &ConnectError{Reason: "server URL", Err: fmt.Errorf("%q: %w", raw, err)}
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return &ConnectError{Reason: "server URL", Err: fmt.Errorf("%q: scheme %q: want nats, tls, ws or wss", raw, u.Scheme)}
	}
	if u.Hostname() == "" {
		return &ConnectError{Reason: "server URL", Err: fmt.Errorf("%q: no host", raw)}
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return &ConnectError{Reason: "server URL", Err: fmt.Errorf("%q: port %q is not 1-65535", raw, p)}
		}
	}
	return nil
}

// classifyConnect returns err as a *ConnectError when no later attempt can succeed,
// nil when one may.
func classifyConnect(err error) *ConnectError {
	var ce *ConnectError
	var pathErr *fs.PathError
	var verifyErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired),
		errors.Is(err, nats.ErrNkeysNotSupported):
		return &ConnectError{Reason: "credentials", Err: err}
	case errors.As(err, &pathErr):
		return &ConnectError{Reason: "file", Err: err}
	case errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted),
		errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return &ConnectError{Reason: "TLS", Err: err}
	}
	return nil
}

// Dialer connects a long-running service (worker, watch, publish, serve) to NATS. A
// server that is not listening yet (a host booting, services started side by side,
// a restart during a deploy) is waited for, with jittered exponential backoff and one
// log line per attempt; only a *ConnectError, or the end of the context, ends the
// wait. Health says where it stands, for /healthz. Safe for concurrent use; Dial is
// called once.
//
// nats.go's RetryOnFailedConnect is not used for this: it returns a connection that
// is not connected yet, so the JetStream set-up that follows would time out instead
// of waiting, nothing could tell refused credentials from a server still starting
// before the first failure came through an asynchronous callback, and its fixed
// reconnect wait has no growth.
type Dialer struct {
	Options ConnectOptions
	// MinBackoff and MaxBackoff bound the wait between attempts (defaults
	// DefaultDialMinBackoff, DefaultDialMaxBackoff).
	MinBackoff, MaxBackoff time.Duration

	mu        sync.Mutex
	nc        *nats.Conn
	started   time.Time
	attempts  int
	lastErr   error
	noQueue   bool      // connected, waiting in OpenQueue for a queue to be set up
	queueWait time.Time // since when
}

// Dial returns a connection once a server accepts one. It returns a *ConnectError
// for a failure no retry can mend, and the context's error when ctx ends first.
func (d *Dialer) Dial(ctx context.Context) (*nats.Conn, error) {
	o := d.Options
	if err := o.Validate(); err != nil {
		return nil, &ConnectError{Reason: "configuration", Err: err}
	}
	if err := o.checkFiles(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	o.Logger = log
	lo, hi := d.backoff()
	d.mu.Lock()
	d.started = time.Now()
	d.mu.Unlock()
	servers := redactURLs(o.URLs)
	wait := lo
	for attempt := 1; ; attempt++ {
		nc, err := Connect(o)
		if err == nil {
			d.mu.Lock()
			d.nc, d.attempts, d.lastErr = nc, attempt, nil
			d.mu.Unlock()
			if attempt > 1 {
				log.Info("nats connected", "url", nc.ConnectedUrlRedacted(), "attempts", attempt,
					"waited", time.Since(d.started).Round(time.Millisecond))
			}
			return nc, nil
		}
		if ce := classifyConnect(err); ce != nil {
			d.mu.Lock()
			d.attempts, d.lastErr = attempt, ce
			d.mu.Unlock()
			return nil, ce
		}
		d.mu.Lock()
		d.attempts, d.lastErr = attempt, err
		d.mu.Unlock()
		pause := jitter(wait)
		log.Warn("nats not reachable; waiting for it", "servers", servers, "attempt", attempt,
			"retry_in", pause.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for nats %s: %w", servers, context.Cause(ctx))
		case <-time.After(pause):
		}
		wait = min(2*wait, hi)
	}
}

func (d *Dialer) backoff() (lo, hi time.Duration) {
	lo, hi = d.MinBackoff, d.MaxBackoff
	if lo <= 0 {
		lo = DefaultDialMinBackoff
	}
	if hi <= 0 {
		hi = DefaultDialMaxBackoff
	}
	return lo, max(hi, lo)
}

// jitter moves d by up to a fifth either way.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// OpenQueue opens the queue on nc (from Dial), waiting with the same backoff while
// the server holds none yet (ErrNotSetUp: the worker or `imagevet queue setup`
// that creates it may start after this service); Health says so meanwhile. Any other
// error, or the end of ctx, ends it.
func (d *Dialer) Open(ctx context.Context, nc *nats.Conn) (*Queue, error) {
	log := d.Options.Logger
	if log == nil {
		log = slog.Default()
	}
	lo, hi := d.backoff()
	hi = max(lo, min(hi, maxQueueBackoff)) // a read of one key: cheap to repeat
	wait := lo
	defer func() {
		d.mu.Lock()
		d.noQueue = false
		d.mu.Unlock()
	}()
	for attempt := 1; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		q, err := Open(octx, nc)
		cancel()
		if !errors.Is(err, ErrNotSetUp) || ctx.Err() != nil {
			if err != nil && ctx.Err() != nil {
				return nil, fmt.Errorf("waiting for the imagevet queue: %w", context.Cause(ctx))
			}
			return q, err
		}
		d.mu.Lock()
		if !d.noQueue {
			d.noQueue, d.queueWait = true, time.Now()
		}
		d.mu.Unlock()
		pause := jitter(wait)
		log.Warn("the imagevet queue is not set up yet; waiting for a worker or imagevet queue setup",
			"attempt", attempt, "retry_in", pause.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the imagevet queue: %w", context.Cause(ctx))
		case <-time.After(pause):
		}
		wait = min(2*wait, hi)
	}
}

// Health is nil while the connection is up; otherwise it says why not: still
// waiting for a first connection (since when, how many attempts, the last error),
// given up, connected but waiting in OpenQueue for the queue to be set up, or the
// connection's state after a disconnect.
func (d *Dialer) Health() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.nc != nil && d.nc.IsConnected() && d.noQueue:
		return fmt.Errorf("nats connected; waiting %s for the imagevet queue to be set up (by a worker or imagevet queue setup)",
			time.Since(d.queueWait).Round(time.Second))
	case d.nc != nil && d.nc.IsConnected():
		return nil
	case d.nc != nil:
		return fmt.Errorf("nats %s", d.nc.Status())
	case d.lastErr != nil && classifyConnect(d.lastErr) != nil:
		return d.lastErr
	case d.attempts > 0:
		return fmt.Errorf("nats: waiting for a first connection for %s (%d attempts): %v",
			time.Since(d.started).Round(time.Second), d.attempts, d.lastErr)
	}
	return errors.New("nats: not connected yet")
}

// checkFiles reads the credentials, nkey and TLS files before any attempt: a missing
// file is a *ConnectError naming it, not something to wait for.
func (o ConnectOptions) checkFiles() error {
	for _, f := range []struct{ what, path string }{
		{"credentials file", o.CredsFile}, {"nkey seed file", o.NKeySeedFile},
		{"TLS CA file", o.TLSCAFile}, {"TLS certificate file", o.TLSCertFile}, {"TLS key file", o.TLSKeyFile},
	} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return &ConnectError{Reason: "file", Err: fmt.Errorf("%s: %w", f.what, err)}
		}
		fh.Close()
	}
	return nil
}

// redactURLs joins server URLs for logs and errors with any password replaced.
func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, s := range urls {
		out[i] = s
		if u, err := url.Parse(s); err == nil && u.User != nil {
			out[i] = u.Redacted()
		}
	}
	return strings.Join(out, ",")
}
