package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketLeases is the KV bucket of leases: a named piece of work (publishing one
// image family) that only one process at a time may do, across hosts. A lease is an
// entry written with compare-and-set; its holder renews it while it works, and
// another process takes it over only once it has expired (its holder died).
const BucketLeases = "imagevet_leases"

// LeaseInfo is a lease's entry. Expires is the holder's clock, for people to read;
// whether a lease is dead is decided on the taker's own clock (see AcquireLease).
type LeaseInfo struct {
	Holder  string        `json:"holder"`
	Purpose string        `json:"purpose,omitempty"`
	Expires time.Time     `json:"expires"`
	TTL     time.Duration `json:"ttl_ns"`
}

// Lease is a held lease. Lost is closed when a renewal finds it taken over (the
// holder stalled past its expiry): the work it guards must stop.
type Lease struct {
	kv   jetstream.KeyValue
	key  string
	info LeaseInfo
	ttl  time.Duration

	mu       sync.Mutex
	rev      uint64
	lost     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	released bool
}

// LeaseBusyError is what AcquireLease returns when ctx ends while another holder
// keeps the lease.
type LeaseBusyError struct {
	Name string
	Held LeaseInfo
	Err  error
}

func (e *LeaseBusyError) Error() string {
	return fmt.Sprintf("lease %s is held by %s (%s) until %s: %v", e.Name, e.Held.Holder, e.Held.Purpose,
		e.Held.Expires.UTC().Format(time.RFC3339), e.Err)
}

func (e *LeaseBusyError) Unwrap() error { return e.Err }

// leasesBucket binds to BucketLeases, making it when it is missing (only the
// processes that take leases use it).
func (q *Queue) leasesBucket(ctx context.Context) (jetstream.KeyValue, error) {
	return q.ownBucket(ctx, BucketLeases, "imagevet: who does which exclusive work (publishing a family)", 1, true)
}

// leasePoll is how often AcquireLease looks again at a lease someone else holds.
var leasePoll = time.Second

// AcquireLease takes the lease name (any string; it is turned into a key) for
// holder, waiting while a live holder keeps it, until ctx ends. waiting, if not
// nil, is called once with the current holder when AcquireLease has to wait. The
// lease is renewed every ttl/3 until Release.
//
// A holder is live while its entry changes: a lease whose entry has not changed
// for its TTL, as measured by this process's own monotonic clock while it waits, is
// taken over. No two hosts' clocks are compared, so a skewed clock can neither
// steal a live lease nor keep a dead one.
func (q *Queue) AcquireLease(ctx context.Context, name, holder, purpose string, ttl time.Duration, waiting func(LeaseInfo)) (*Lease, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("lease %s: ttl must be positive", name)
	}
	kv, err := q.leasesBucket(ctx)
	if err != nil {
		return nil, err
	}
	key := StatusKey(name)
	told := false
	var (
		seenRev uint64    // the holder's entry revision last seen
		seenAt  time.Time // when it was first seen (monotonic)
	)
	for {
		info := LeaseInfo{Holder: holder, Purpose: purpose, Expires: time.Now().Add(ttl), TTL: ttl}
		data, _ := json.Marshal(info)
		entry, err := kv.Get(ctx, key)
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, err = kv.Create(ctx, key, data)
		case err != nil:
			return nil, fmt.Errorf("read lease %s: %w", name, err)
		default:
			var held LeaseInfo
			if entry.Revision() != seenRev {
				seenRev, seenAt = entry.Revision(), time.Now()
			}
			readable := json.Unmarshal(entry.Value(), &held) == nil
			heldTTL := held.TTL
			if heldTTL <= 0 {
				heldTTL = ttl
			}
			if readable && held.Holder != holder && time.Since(seenAt) < heldTTL {
				if waiting != nil && !told {
					waiting(held)
					told = true
				}
				select {
				case <-ctx.Done():
					return nil, &LeaseBusyError{Name: name, Held: held, Err: context.Cause(ctx)}
				case <-time.After(leasePoll):
				}
				continue
			}
			// Free: unchanged for its TTL (its holder died), unreadable, or ours from
			// a previous life.
			rev, err = kv.Update(ctx, key, data, entry.Revision())
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // somebody else won the compare-and-set: look again
		}
		if err != nil {
			return nil, fmt.Errorf("take lease %s: %w", name, err)
		}
		l := &Lease{kv: kv, key: key, info: info, ttl: ttl, rev: rev,
			lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
		go l.renew()
		return l, nil
	}
}

// Lost is closed when the lease was found taken over by another holder.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

func (l *Lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		info := l.info
		info.Expires = time.Now().Add(l.ttl) // a new revision: what tells takers we live
		data, _ := json.Marshal(info)
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		rev, err := l.kv.Update(ctx, l.key, data, l.rev)
		cancel()
		if err == nil {
			l.rev = rev
			l.mu.Unlock()
			continue
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			close(l.lost) // another holder took it over: we stalled past the expiry
			l.mu.Unlock()
			return
		}
		l.mu.Unlock() // a passing error (leader election, reconnect): the next tick tries again
	}
}

// Release gives the lease up (if it is still ours) and stops renewing it.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	close(l.stop)
	l.mu.Unlock()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.lost:
		return nil // not ours any more
	default:
	}
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev)); err != nil {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}
