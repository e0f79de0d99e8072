package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/imagevet/imagevet/jobs"
)

// testQueue starts an in-process JetStream server on a random loopback port and
// opens the queue on it.
func testQueue(t testing.TB) (*Queue, *nats.Conn) {
	t.Helper()
	srv := testServer(t)
	nc, err := Connect(ConnectOptions{URLs: []string{srv.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Open(ctx, nc); !errors.Is(err, ErrNotSetUp) {
		t.Fatalf("open on an empty server: %v, want ErrNotSetUp", err)
	}
	if _, err := Setup(ctx, nc, Config{}, "test"); err != nil {
		t.Fatal(err)
	}
	q, err := Open(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	return q, nc
}

// testServer starts an in-process JetStream server on a random loopback port.
func testServer(t testing.TB) *server.Server {
	t.Helper()
	return startServerOn(t, -1, server.Options{JetStream: true})
}

func sampleResult(id string, v jobs.Verdict, finished time.Time) jobs.Result {
	return jobs.Result{Version: jobs.Version, JobID: id, Verdict: v, Checks: []jobs.CheckResult{}, Stages: []jobs.Stage{},
		Worker: "w", Attempt: 1, StartedAt: finished.Add(-time.Minute), FinishedAt: finished,
		Publish: jobs.Publication{Name: "debian-12"}}
}

func TestSetupIsIdempotentAndOwnsTheSettings(t *testing.T) {
	q, nc := testQueue(t)
	ctx := context.Background()
	for range 2 {
		if _, err := Setup(ctx, nc, Config{AckWait: 30 * time.Second, MaxDeliver: 4}, "operator"); err != nil {
			t.Fatal(err)
		}
	}
	// A worker with other flags adopts the queue's settings and is told the difference.
	w, created, err := Ensure(ctx, nc, Config{AckWait: 45 * time.Second, MaxDeliver: 7}, "w1")
	if err != nil || created {
		t.Fatalf("ensure: created=%v err=%v", created, err)
	}
	st := w.Settings()
	if st.AckWait.D() != 30*time.Second || st.MaxDeliver != 4 || st.SetBy != "operator" {
		t.Errorf("settings %+v", st)
	}
	if diff := st.Differences(Config{AckWait: 45 * time.Second, MaxDeliver: 7}); len(diff) != 2 {
		t.Errorf("differences %q", diff)
	}
	c, err := q.Consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckWait != 30*time.Second || info.Config.MaxDeliver != -1 || info.Config.Durable != ConsumerWorkers {
		t.Errorf("consumer config %+v", info.Config)
	}
	s, err := q.Stream(ctx, StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	si, _ := s.Info(ctx)
	if si.Config.Duplicates < time.Hour || si.Config.Retention.String() != "WorkQueue" {
		t.Errorf("jobs stream config %+v", si.Config)
	}
}

func TestFirstWorkerCreatesTheQueueOnce(t *testing.T) {
	srv := testServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type out struct {
		created bool
		st      Settings
		err     error
	}
	outs := make(chan out, 4)
	for i := range 4 {
		go func() {
			nc, err := Connect(ConnectOptions{URLs: []string{srv.ClientURL()}})
			if err != nil {
				outs <- out{err: err}
				return
			}
			defer nc.Close()
			q, created, err := Ensure(ctx, nc, Config{MaxDeliver: i + 2}, fmt.Sprintf("w%d", i))
			if err != nil {
				outs <- out{err: err}
				return
			}
			outs <- out{created: created, st: q.Settings()}
		}()
	}
	creators := 0
	var seen []int
	for range 4 {
		o := <-outs
		if o.err != nil {
			t.Fatal(o.err)
		}
		if o.created {
			creators++
		}
		seen = append(seen, o.st.MaxDeliver)
	}
	if creators != 1 {
		t.Errorf("%d workers created the queue, want 1", creators)
	}
	for _, m := range seen {
		if m != seen[0] {
			t.Errorf("workers see different settings: %v", seen)
		}
	}
}

func TestWaitReturnsAnExistingResultAtOnce(t *testing.T) {
	q, _ := testQueue(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok, err := q.PublishResult(ctx, sampleResult("done-1", jobs.VerdictPass, time.Now()), nil); err != nil || !ok {
		t.Fatal(ok, err)
	}
	start := time.Now()
	r, err := q.Wait(ctx, "done-1", func(jobs.Progress) {})
	if err != nil || r.Verdict != jobs.VerdictPass {
		t.Fatal(r, err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("wait for an existing result took %s", time.Since(start))
	}
}

func TestWaitFollowsProgressUntilTheResult(t *testing.T) {
	q, _ := testQueue(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan jobs.Progress, 10)
	done := make(chan jobs.Result, 1)
	go func() {
		r, err := q.Wait(ctx, "later", func(p jobs.Progress) { got <- p })
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	// Progress is fire-and-forget: keep sending until the waiter has subscribed.
	for sent := false; !sent; {
		if err := q.PublishProgress(jobs.Progress{JobID: "later", Stage: "boot", Event: "start"}); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p.Stage != "boot" || p.Time.IsZero() {
				t.Errorf("progress %+v", p)
			}
			sent = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := q.PublishResult(ctx, sampleResult("later", jobs.VerdictFail, time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.Verdict != jobs.VerdictFail {
			t.Errorf("%+v", r)
		}
	case <-ctx.Done():
		t.Fatal("no result")
	}
	// A wait that runs out of time says so.
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := q.Wait(short, "never", nil); err != context.DeadlineExceeded {
		t.Errorf("wait without result: %v", err)
	}
}

func TestOnlyTheFirstResultIsKept(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	now := time.Now()
	first := sampleResult("twice", jobs.VerdictPass, now)
	if ok, err := q.PublishResult(ctx, first, nil); err != nil || !ok {
		t.Fatal(ok, err)
	}
	second := sampleResult("twice", jobs.VerdictFail, now.Add(time.Second))
	ok, err := q.PublishResult(ctx, second, nil)
	if err != nil || ok {
		t.Fatalf("second publish: ok=%v err=%v", ok, err)
	}
	r, found, err := q.Result(ctx, "twice")
	if err != nil || !found || r.Verdict != jobs.VerdictPass {
		t.Fatalf("%+v %v %v", r, found, err)
	}
	st, _, _ := q.Status(ctx, "debian-12")
	if st.Verdict != jobs.VerdictPass {
		t.Errorf("status %+v", st)
	}
}

func TestStatusKeepsTheLatestResultPerImage(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	now := time.Now()
	if _, err := q.PublishResult(ctx, sampleResult("new", jobs.VerdictFail, now), nil); err != nil {
		t.Fatal(err)
	}
	// An older result reported late does not hide the newer verdict.
	if _, err := q.PublishResult(ctx, sampleResult("old", jobs.VerdictPass, now.Add(-time.Hour)), nil); err != nil {
		t.Fatal(err)
	}
	other := sampleResult("other", jobs.VerdictPass, now)
	other.Publish.Name = "Ubuntu 24.04 LTS"
	if _, err := q.PublishResult(ctx, other, nil); err != nil {
		t.Fatal(err)
	}
	st, ok, err := q.Status(ctx, "debian-12")
	if err != nil || !ok || st.JobID != "new" {
		t.Fatalf("%+v %v %v", st, ok, err)
	}
	all, err := q.Statuses(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("%d statuses, %v", len(all), err)
	}
	if _, ok, _ := q.Status(ctx, "never-vetted"); ok {
		t.Error("status for an unknown image")
	}
}

func TestSubmitDedupesAndValidates(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	j := jobs.Job{Version: jobs.Version, ID: "j-1", Image: jobs.ImageSpec{Source: "/img/a.qcow2", Format: jobs.FormatQCOW2,
		Checksum: "sha256:" + strings.Repeat("a", 64)}, Guest: jobs.GuestSpec{User: "debian"},
		Timeouts: jobs.Timeouts{Boot: jobs.Duration(2 * time.Minute)}}
	a1, err := q.Submit(ctx, j)
	if err != nil || a1.Duplicate || a1.Sequence == 0 || a1.Stream != StreamJobs {
		t.Fatal(a1, err)
	}
	a2, err := q.Submit(ctx, j)
	if err != nil || !a2.Duplicate || a2.Sequence != a1.Sequence {
		t.Fatal(a2, err)
	}
	// What was queued decodes back into the same job.
	s, _ := q.Stream(ctx, StreamJobs)
	m, err := s.GetMsg(ctx, a1.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	back, err := jobs.DecodeJob(m.Data)
	if err != nil || back.ID != j.ID || back.Timeouts.Boot != j.Timeouts.Boot {
		t.Fatalf("%+v %v", back, err)
	}
	j.ID = "bad id"
	if _, err := q.Submit(ctx, j); err == nil {
		t.Error("invalid job submitted")
	}
}

func TestStatusKey(t *testing.T) {
	valid := regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)
	seen := map[string]string{}
	for _, name := range []string{"debian-12", "Debian 12 (bookworm)", "Debian_12__bookworm_", "a.b", ".hidden", "x..y", "", strings.Repeat("z", 300), "ünïcode"} {
		k := StatusKey(name)
		if !valid.MatchString(k) || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
			t.Errorf("%q -> invalid key %q", name, k)
		}
		if prev, dup := seen[k]; dup {
			t.Errorf("%q and %q share key %q", prev, name, k)
		}
		seen[k] = name
	}
	if StatusKey("debian-12") != "debian-12" || StatusKey("a.b") != "a.b" {
		t.Error("valid names must be kept as they are")
	}
}

func TestTailString(t *testing.T) {
	if got := TailString("short", 10); got != "short" {
		t.Errorf("%q", got)
	}
	got := TailString("line one\nline two\nline three\n", 15)
	if got != "line three\n" {
		t.Errorf("%q", got)
	}
	if got := TailString(strings.Repeat("x", 100), 10); len(got) != 10 {
		t.Errorf("%d bytes", len(got))
	}
	if got := TailString("ééééé", 5); !strings.HasPrefix(got, "é") || len(got) > 5 {
		t.Errorf("cut inside a character: %q", got)
	}
}

func TestConnectOptionsValidate(t *testing.T) {
	if err := (ConnectOptions{}).Validate(); err == nil {
		t.Error("no URL accepted")
	}
	o := ConnectOptions{URLs: SplitURLs("nats://a:4222, nats://b:4222"), CredsFile: "x", NKeySeedFile: "y", TLSKeyFile: "k"}
	if len(o.URLs) != 2 {
		t.Errorf("urls %q", o.URLs)
	}
	err := o.Validate()
	if err == nil || !strings.Contains(err.Error(), "not both") || !strings.Contains(err.Error(), "go together") {
		t.Errorf("%v", err)
	}
}

func TestConnectWithNKeySeed(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(ConnectOptions{URLs: []string{srv.ClientURL()}}); err == nil {
		t.Error("connected without credentials")
	}
	nc, err := Connect(ConnectOptions{URLs: []string{srv.ClientURL()}, NKeySeedFile: seedFile})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

// CompareAndSet wins while the entry is at the revision the caller read, and loses
// without an error once another writer changed it first.
func TestCompareAndSetLosesToAnEarlierWriter(t *testing.T) {
	q, _ := testQueue(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv := q.states
	for _, step := range []struct {
		name string
		rev  uint64
		won  bool
	}{
		{"create", 0, true},
		{"create again", 0, false},
		{"update at the first revision", 1, true},
		{"update at a stale revision", 1, false},
		{"update at the current revision", 2, true},
	} {
		won, err := CompareAndSet(ctx, kv, "cas-key", []byte(step.name), step.rev)
		if err != nil || won != step.won {
			t.Fatalf("%s: won %v, %v; want %v, no error", step.name, won, err, step.won)
		}
	}
	e, err := kv.Get(ctx, "cas-key")
	if err != nil || string(e.Value()) != "update at the current revision" {
		t.Fatalf("entry %v, %v", e, err)
	}
}
