package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelayDoublesUpToMax(t *testing.T) {
	p := Policy{Initial: time.Second, Max: 5 * time.Second}
	want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for n, w := range want {
		if got := p.Delay(n); got != w {
			t.Errorf("Delay(%d) = %v, want %v", n, got, w)
		}
	}
	if got := p.Delay(200); got != 5*time.Second {
		t.Errorf("Delay(200) = %v: the shift must not overflow past Max", got)
	}
}

func TestDelayJitterStaysInItsBand(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Second, Jitter: 0.25}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := p.Delay(3)
		if d < 750*time.Millisecond || d > 1250*time.Millisecond {
			t.Fatalf("Delay = %v, outside ±25%% of 1s", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct delays in 200: no jitter", len(seen))
	}
}

func TestDoStopsOnSuccessPermanentErrorAndAttempts(t *testing.T) {
	p := Policy{Initial: time.Millisecond, Attempts: 3}
	calls := 0
	err := p.Do(context.Background(), func(int) error {
		calls++
		if calls < 2 {
			return errors.New("transient")
		}
		return nil
	}, nil)
	if err != nil || calls != 2 {
		t.Fatalf("success on the second try: err %v after %d calls", err, calls)
	}

	calls = 0
	permanent := errors.New("permanent")
	err = p.Do(context.Background(), func(int) error { calls++; return permanent },
		func(_ int, err error) bool { return !errors.Is(err, permanent) })
	if !errors.Is(err, permanent) || calls != 1 {
		t.Fatalf("permanent error: %v after %d calls, want it after 1", err, calls)
	}

	calls = 0
	err = p.Do(context.Background(), func(n int) error { calls++; return errors.New("again") }, nil)
	if err == nil || calls != 3 {
		t.Fatalf("attempts: %v after %d calls, want an error after 3", err, calls)
	}
}

func TestDoWaitEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := Policy{Initial: time.Hour}
	last := errors.New("still down")
	done := make(chan error, 1)
	go func() {
		done <- p.Do(ctx, func(int) error { return last }, nil)
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, last) {
			t.Fatalf("Do = %v, want the operation's last error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Do kept waiting an hour after its context ended")
	}
}
