package queue

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// One holder at a time: a second taker waits, is told who holds the lease, and
// gets it the moment the first releases it.
func TestLeaseIsExclusiveAndHandedOver(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	a, err := q.AcquireLease(ctx, "publish debian-12", "a", "job 1", 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	var told LeaseInfo
	_, err = q.AcquireLease(short, "publish debian-12", "b", "job 2", 30*time.Second, func(i LeaseInfo) { told = i })
	var busy *LeaseBusyError
	if !errors.As(err, &busy) || busy.Held.Holder != "a" || told.Holder != "a" || told.Purpose != "job 1" {
		t.Fatalf("second taker while held: %v (told %+v), want busy naming holder a", err, told)
	}
	got := make(chan error, 1)
	go func() {
		b, err := q.AcquireLease(ctx, "publish debian-12", "b", "job 2", 30*time.Second, nil)
		if err == nil {
			err = b.Release(ctx)
		}
		got <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("b took the lease while a held it: %v", err)
	default:
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b never got the released lease")
	}
	// Another name is independent of a held one.
	other, cancelOther := context.WithTimeout(ctx, 2*time.Second)
	defer cancelOther()
	b, err := q.AcquireLease(other, "publish debian-12", "b", "", 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(ctx)
	c, err := q.AcquireLease(other, "publish debian-13", "c", "", 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Release(ctx)
}

// A holder that died (its entry unchanged for its TTL) is taken over, and a stalled
// holder that comes back finds its lease lost instead of working on beside the new
// one.
func TestLeaseExpiredIsTakenOverAndTheOldHolderLearnsIt(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	kv, err := q.leasesBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A dead holder's entry, whose clock said it was good for another hour: it
	// does not change for its TTL, so it is taken over whatever its clock said.
	dead, _ := json.Marshal(LeaseInfo{Holder: "dead", Expires: time.Now().Add(time.Hour), TTL: 700 * time.Millisecond})
	if _, err := kv.Put(ctx, StatusKey("publish cirros"), dead); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	l, err := q.AcquireLease(short, "publish cirros", "alive", "", 600*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("a dead holder's lease was not taken over: %v", err)
	}
	if waited := time.Since(start); waited < 700*time.Millisecond {
		t.Errorf("took a lease after %s, before its TTL of no change", waited)
	}
	// Someone overwrites it (as a taker does after our expiry): the next renewal
	// finds out and Lost closes.
	other, _ := json.Marshal(LeaseInfo{Holder: "other", Expires: time.Now().Add(time.Minute)})
	if _, err := kv.Put(ctx, StatusKey("publish cirros"), other); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(3 * time.Second):
		t.Fatal("a lease taken over was never reported lost")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("release of a lost lease: %v", err)
	}
	e, err := kv.Get(ctx, StatusKey("publish cirros"))
	if err != nil {
		t.Fatal(err)
	}
	var now LeaseInfo
	json.Unmarshal(e.Value(), &now)
	if now.Holder != "other" {
		t.Errorf("releasing a lost lease removed the new holder's: %+v", now)
	}
}

// A live holder keeps its lease past the ttl by renewing it.
func TestLeaseRenewedWhileHeld(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	l, err := q.AcquireLease(ctx, "publish fedora", "a", "", 600*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	// b watches for three TTLs: the renewals keep the entry changing.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := q.AcquireLease(short, "publish fedora", "b", "", time.Minute, nil); err == nil {
		t.Fatal("b took a lease its holder keeps renewing")
	}
	select {
	case <-l.Lost():
		t.Fatal("a renewed lease reported lost")
	default:
	}
}
