package watch_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/internal/testenv"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/keyring"
	"github.com/imagevet/imagevet/watch"
	"github.com/imagevet/imagevet/watch/catalog"
	"github.com/imagevet/imagevet/watch/feed"
	"github.com/imagevet/imagevet/watch/mirror"

	"github.com/imagevet/imagevet/queue"
	"github.com/imagevet/imagevet/queue/queuetest"
)

// env is one test's world: an in-process JetStream server, a loopback vendor mirror
// with a signing key, and a catalog pointing at the mirror.
type env struct {
	q       *queue.Queue
	nc      *nats.Conn
	m       *mirror.Mirror
	signer  *mirror.Signer
	keyring string
	image   string
	dir     string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	q, nc := queuetest.Queue(t)
	m, err := mirror.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	s, err := mirror.NewSigner("Test Vendor")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &env{q: q, nc: nc, m: m, signer: s, keyring: filepath.Join(dir, "vendor.asc"), image: filepath.Join(dir, "disk.img"), dir: dir}
	if err := s.WriteKeyring(e.keyring); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.image, []byte("image bytes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// catalog writes a catalog of the named families, all served by the mirror.
func (e *env) catalog(t testing.TB, families map[string]catalogFamily) []catalog.Family {
	t.Helper()
	type feedDoc struct {
		Kind     string `json:"kind"`
		URL      string `json:"url"`
		Arch     string `json:"arch"`
		Artefact string `json:"artefact"`
		Keyring  string `json:"keyring,omitempty"`
		Product  string `json:"product,omitempty"`
	}
	doc := map[string]any{}
	for key, f := range families {
		product := ""
		if f.kind == feed.KindUbuntu {
			product = "com.ubuntu.cloud:server:24.04:{arch}"
		}
		doc[key] = map[string]any{
			"name": f.name,
			"feed": feedDoc{Kind: f.kind, URL: e.m.URL() + f.path, Arch: "x86_64", Artefact: f.artefact, Keyring: f.keyring, Product: product},
			"job":  map[string]any{"guest": map[string]any{"user": "debian"}, "timeouts": map[string]any{"total": "4m"}},
			"publish": map[string]any{"visibility": "private", "glance": true, "properties": map[string]string{"os_distro": key},
				"rotation": map[string]any{"keep": 2, "older": "community"}},
		}
	}
	// JSON is YAML: the catalog reader takes it as is.
	data, _ := json.Marshal(map[string]any{"families": doc})
	path := filepath.Join(e.dir, "catalog.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fams, err := catalog.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

type catalogFamily struct{ name, kind, path, artefact, keyring string }

func loadKeyring(path string) (feed.Verifier, error) { return keyring.Load(path) }

func (e *env) watcher(t testing.TB, fams []catalog.Family, cfg watch.Config) (*watch.Watcher, *watch.Metrics) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	m := watch.NewMetrics()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := watch.New(ctx, cfg, fams, e.q, loadKeyring, m)
	if err != nil {
		t.Fatal(err)
	}
	return w, m
}

func poll(t *testing.T, w *watch.Watcher) map[string]watch.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]watch.Outcome{}
	for _, o := range w.Poll(ctx) {
		out[o.Family] = o
	}
	return out
}

// queued returns the jobs in the queue by id.
func (e *env) queued(t testing.TB) map[string]jobs.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.q.Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]jobs.Job{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		j, err := jobs.DecodeJob(msg.Data)
		if err != nil {
			t.Fatalf("queued job does not decode: %v", err)
		}
		if _, dup := out[j.ID]; dup {
			t.Errorf("job %s queued twice", j.ID)
		}
		out[j.ID] = j
	}
	if uint64(len(out)) != info.State.Msgs {
		t.Errorf("%d messages in the queue, %d distinct jobs", info.State.Msgs, len(out))
	}
	return out
}

func (e *env) records(t *testing.T) map[string]jobs.ReleaseRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all, err := e.q.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]jobs.ReleaseRecord{}
	for _, r := range all {
		out[r.Family] = r
	}
	return out
}

// TestNewReleasesQueuedOnce: the first poll queues one job per family with the
// family's template, the release's source and digest and a deterministic id; a
// second poll sends one conditional request per family and queues nothing; a release
// that appears between two polls is queued by the next one.
func TestNewReleasesQueuedOnce(t *testing.T) {
	e := newEnv(t)
	if err := e.m.Debian("/debian/bookworm/", mirror.Release{Version: "20261101-0900", Name: "debian-12-genericcloud-x86_64-20261101-0900.qcow2", Image: e.image}, e.signer); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Cirros("/cirros/", mirror.Release{Version: "0.6.3", Name: "cirros-0.6.3-x86_64-disk.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	fams := e.catalog(t, map[string]catalogFamily{
		"debian-12": {"Debian 12 Bookworm", feed.KindDebian, "/debian/bookworm/", "debian-12-genericcloud-{arch}-{version}.qcow2", e.keyring},
		"cirros":    {"CirrOS", feed.KindCirros, "/cirros/", "cirros-{version}-{arch}-disk.img", ""},
	})
	w, metrics := e.watcher(t, fams, watch.Config{CheckArtefact: true})

	first := poll(t, w)
	for key, o := range first {
		if o.State != watch.OutcomeQueued || o.Err != nil {
			t.Errorf("%s: %+v", key, o)
		}
	}
	q := e.queued(t)
	if len(q) != 2 {
		t.Fatalf("%d jobs queued, want 2", len(q))
	}
	deb, ok := q[first["debian-12"].JobID]
	if !ok {
		t.Fatalf("no job %s in %v", first["debian-12"].JobID, q)
	}
	if !strings.HasPrefix(deb.ID, "debian-12-20261101-0900-") || deb.Publish.Family != "debian-12" ||
		deb.Publish.Name != "Debian 12 Bookworm" || deb.Publish.Release != "20261101-0900" || deb.Publish.ReleasedAt == nil ||
		!deb.Publish.Glance || deb.Publish.Rotation == nil || deb.Publish.Rotation.Keep != 2 ||
		deb.Image.Source != e.m.URL()+"/debian/bookworm/20261101-0900/debian-12-genericcloud-x86_64-20261101-0900.qcow2" ||
		!strings.HasPrefix(deb.Image.Checksum, "sha512:") || deb.Guest.User != "debian" {
		t.Errorf("debian job: %+v", deb)
	}
	recs := e.records(t)
	if r := recs["debian-12"]; r.Release != "20261101-0900" || r.JobID != deb.ID || r.State != jobs.ReleaseQueued ||
		r.Digest != deb.Image.Checksum || r.FirstSeen.IsZero() || r.CheckedAt.IsZero() || r.Name != "Debian 12 Bookworm" {
		t.Errorf("debian record: %+v", r)
	}

	// Nothing changed: one 304 per family, nothing queued.
	before, _ := e.m.Requests()
	second := poll(t, w)
	after, notMod := e.m.Requests()
	for key, o := range second {
		if o.State != watch.OutcomeUnchanged || o.Requests != 1 || o.JobID != first[key].JobID {
			t.Errorf("second poll %s: %+v", key, o)
		}
	}
	if after-before != 2 || notMod != 2 {
		t.Errorf("second poll: %d requests (%d not modified), want 2 conditional ones", after-before, notMod)
	}
	if n := len(e.queued(t)); n != 2 {
		t.Errorf("%d jobs queued after the second poll, want still 2", n)
	}

	// A new Debian build appears between polls.
	if err := e.m.Debian("/debian/bookworm/", mirror.Release{Version: "20261120-1234", Name: "debian-12-genericcloud-x86_64-20261120-1234.qcow2", Image: e.image}, e.signer); err != nil {
		t.Fatal(err)
	}
	third := poll(t, w)
	if o := third["debian-12"]; o.State != watch.OutcomeQueued || o.Release != "20261120-1234" {
		t.Errorf("third poll debian: %+v", o)
	}
	if o := third["cirros"]; o.State != watch.OutcomeUnchanged {
		t.Errorf("third poll cirros: %+v", o)
	}
	if n := len(e.queued(t)); n != 3 {
		t.Errorf("%d jobs queued, want 3", n)
	}
	if r := e.records(t)["debian-12"]; r.Release != "20261120-1234" || r.JobID != third["debian-12"].JobID {
		t.Errorf("record after the new build: %+v", r)
	}
	body := scrape(t, metrics)
	for _, want := range []string{
		`imagevet_watch_releases_found_total{family="debian-12"} 2`,
		`imagevet_watch_releases_found_total{family="cirros"} 1`,
		`imagevet_watch_last_success_timestamp_seconds{family="cirros"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func scrape(t *testing.T, m *watch.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(func() error { return nil }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestConcurrentWatchersQueueOnce: several watchers polling the same new releases at
// the same time queue each exactly once, and exactly one of them claims it.
func TestConcurrentWatchersQueueOnce(t *testing.T) {
	e := newEnv(t)
	if err := e.m.Cirros("/cirros/", mirror.Release{Version: "0.6.3", Name: "cirros-0.6.3-x86_64-disk.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Flatcar("/amd64-usr/", mirror.Release{Version: "4459.2.1", Name: "flatcar_production_qemu_image.img", Image: e.image}, e.signer); err != nil {
		t.Fatal(err)
	}
	fams := e.catalog(t, map[string]catalogFamily{
		"cirros":         {"CirrOS", feed.KindCirros, "/cirros/", "cirros-{version}-{arch}-disk.img", ""},
		"flatcar-stable": {"Flatcar Stable", feed.KindFlatcar, "/amd64-usr/", "flatcar_production_qemu_image.img", e.keyring},
	})
	const n = 4
	var wg sync.WaitGroup
	outcomes := make([]map[string]watch.Outcome, n)
	for i := range n {
		w, _ := e.watcher(t, fams, watch.Config{})
		wg.Add(1)
		go func() { defer wg.Done(); outcomes[i] = poll(t, w) }()
	}
	wg.Wait()
	claims := map[string]int{}
	for _, out := range outcomes {
		for key, o := range out {
			if o.Err != nil {
				t.Errorf("%s: %v", key, o.Err)
			}
			if o.State == watch.OutcomeQueued {
				claims[key]++
			}
		}
	}
	if claims["cirros"] != 1 || claims["flatcar-stable"] != 1 {
		t.Errorf("claims %v, want exactly one per family", claims)
	}
	if q := e.queued(t); len(q) != 2 {
		t.Errorf("%d jobs queued, want 2", len(q))
	}
	for key, r := range e.records(t) {
		if r.State != jobs.ReleaseQueued {
			t.Errorf("%s: state %s", key, r.State)
		}
	}
}

// TestFailingFeedsDoNotStopOthers: a feed that 404s, one that hangs, one with
// malformed documents and one with a bad signature are reported for their family
// (outcome, record, metrics); the healthy family is queued; none of the failing ones
// queues anything, and the family with a keyring never queues the unverified release.
func TestFailingFeedsDoNotStopOthers(t *testing.T) {
	e := newEnv(t)
	if err := e.m.Cirros("/good/", mirror.Release{Version: "0.6.3", Name: "c-0.6.3.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	e.m.Hang("/hang/version/released", true)
	e.m.Put("/bad/version/released", []byte("{\"not\": \"a version\"}"))
	other, err := mirror.NewSigner("Mallory")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Debian("/signed/", mirror.Release{Version: "20261120-1234", Name: "d-20261120-1234.qcow2", Image: e.image}, other); err != nil {
		t.Fatal(err)
	}
	fams := e.catalog(t, map[string]catalogFamily{
		"good":   {"Good", feed.KindCirros, "/good/", "c-{version}.img", ""},
		"gone":   {"Gone", feed.KindCirros, "/gone/", "c-{version}.img", ""},
		"hang":   {"Hang", feed.KindCirros, "/hang/", "c-{version}.img", ""},
		"bad":    {"Bad", feed.KindCirros, "/bad/", "c-{version}.img", ""},
		"signed": {"Signed", feed.KindDebian, "/signed/", "d-{version}.qcow2", e.keyring},
	})
	w, metrics := e.watcher(t, fams, watch.Config{RequestTimeout: 300 * time.Millisecond, Attempts: 2})
	start := time.Now()
	out := poll(t, w)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("poll took %s", took)
	}
	if o := out["good"]; o.State != watch.OutcomeQueued {
		t.Errorf("good: %+v", o)
	}
	want := map[string]error{"gone": feed.ErrUnavailable, "hang": feed.ErrUnavailable, "bad": feed.ErrMalformed, "signed": feed.ErrUntrusted}
	recs := e.records(t)
	for key, class := range want {
		o := out[key]
		if o.State != watch.OutcomeFailed || !errors.Is(o.Err, class) {
			t.Errorf("%s: %+v, want failed with %v", key, o, class)
		}
		if r := recs[key]; r.FeedError == "" || r.FeedErrorAt == nil || r.JobID != "" {
			t.Errorf("%s record: %+v", key, r)
		}
	}
	if q := e.queued(t); len(q) != 1 {
		t.Errorf("%d jobs queued, want only the good family's", len(q))
	}
	body := scrape(t, metrics)
	for _, s := range []string{`imagevet_watch_feed_errors_total{family="gone",kind="unavailable"} 1`,
		`imagevet_watch_feed_errors_total{family="signed",kind="untrusted"} 1`,
		`imagevet_watch_feed_errors_total{family="bad",kind="malformed"} 1`} {
		if !strings.Contains(body, s) {
			t.Errorf("metrics lack %s", s)
		}
	}
	// The vendor fixes its signature: the next poll queues it and clears the error.
	if err := e.m.Debian("/signed/", mirror.Release{Version: "20261120-1234", Name: "d-20261120-1234.qcow2", Image: e.image}, e.signer); err != nil {
		t.Fatal(err)
	}
	if o := w.PollFamily(context.Background(), "signed"); o.State != watch.OutcomeQueued {
		t.Errorf("after the fix: %+v", o)
	}
	if r := e.records(t)["signed"]; r.FeedError != "" || r.State != jobs.ReleaseQueued {
		t.Errorf("record after the fix: %+v", r)
	}
}

// TestPendingReleaseIsSubmittedAgain: a watcher that died between recording a
// release and submitting its job leaves it pending; the next poll, though the feed
// is unchanged, submits it.
func TestPendingReleaseIsSubmittedAgain(t *testing.T) {
	e := newEnv(t)
	if err := e.m.Cirros("/c/", mirror.Release{Version: "0.6.3", Name: "c-0.6.3.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	fams := e.catalog(t, map[string]catalogFamily{"c": {"C", feed.KindCirros, "/c/", "c-{version}.img", ""}})
	w, _ := e.watcher(t, fams, watch.Config{})
	o := poll(t, w)["c"]
	// Simulate the crash: drop the queued job and set the record back to pending.
	ctx := context.Background()
	s, _ := e.q.Stream(ctx, queue.StreamJobs)
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	kv, _ := e.q.ReleasesBucket(ctx)
	rec := e.records(t)["c"]
	rec.State = jobs.ReleasePending
	data, _ := json.Marshal(rec)
	if _, err := kv.Put(ctx, "c", data); err != nil {
		t.Fatal(err)
	}
	// Beyond the queue's dedupe window a resubmission would be dropped silently;
	// within it the stream drops it as a duplicate, so use a fresh stream.
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, queue.StreamJobs); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Setup(ctx, e.nc, queue.Config{}, "test"); err != nil {
		t.Fatal(err)
	}
	again := poll(t, w)["c"]
	if again.State != watch.OutcomeUnchanged || again.Err != nil {
		t.Errorf("second poll: %+v", again)
	}
	if q := e.queued(t); len(q) != 1 || q[o.JobID].ID == "" {
		t.Errorf("queue after resubmission: %v", q)
	}
	if r := e.records(t)["c"]; r.State != jobs.ReleaseQueued {
		t.Errorf("state %s", r.State)
	}
}

// TestRunPollsOnScheduleAndRetriesFailures: the service polls every family at start,
// polls a failed family again after Retry (well before Interval), and picks up a
// release that appears later at the next Interval; it stops when its context ends.
func TestRunPollsOnScheduleAndRetriesFailures(t *testing.T) {
	e := newEnv(t)
	if err := e.m.Cirros("/c/", mirror.Release{Version: "0.6.3", Name: "c-0.6.3.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	fams := e.catalog(t, map[string]catalogFamily{
		"c": {"C", feed.KindCirros, "/c/", "c-{version}.img", ""},
		"f": {"F", feed.KindCirros, "/f/", "f-{version}.img", ""},
	})
	w, _ := e.watcher(t, fams, watch.Config{Interval: 2 * time.Second, Jitter: 0, Retry: 200 * time.Millisecond, Attempts: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not stop")
		}
	}()
	waitRecord := func(key, release string, within time.Duration) time.Duration {
		start := time.Now()
		for time.Since(start) < within {
			if r := e.records(t)[key]; r.Release == release && r.State == jobs.ReleaseQueued {
				return time.Since(start)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s %s not queued within %s: %+v", key, release, within, e.records(t)[key])
		return 0
	}
	waitRecord("c", "0.6.3", 5*time.Second)
	if r := e.records(t)["f"]; r.FeedError == "" {
		t.Errorf("f: no feed error recorded: %+v", r)
	}
	// The failing feed comes back: the retry, not the daily poll, finds it.
	if err := e.m.Cirros("/f/", mirror.Release{Version: "1.0", Name: "f-1.0.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	if took := waitRecord("f", "1.0", 5*time.Second); took > 1500*time.Millisecond {
		t.Errorf("failed family polled again after %s, want about the retry delay", took)
	}
	// A later release of the healthy family waits for the interval.
	if err := e.m.Cirros("/c/", mirror.Release{Version: "0.6.4", Name: "c-0.6.4.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	waitRecord("c", "0.6.4", 6*time.Second)
	if n := len(e.queued(t)); n != 3 {
		t.Errorf("%d jobs queued, want 3", n)
	}
}

// TestOlderReleaseIsNeverQueued: a feed that goes back to an older release (a vendor
// mirror lagging behind the one read before) changes nothing.
func TestOlderReleaseIsNeverQueued(t *testing.T) {
	e := newEnv(t)
	if err := e.m.Cirros("/c/", mirror.Release{Version: "0.6.10", Name: "c-0.6.10.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	fams := e.catalog(t, map[string]catalogFamily{"c": {"C", feed.KindCirros, "/c/", "c-{version}.img", ""}})
	w, _ := e.watcher(t, fams, watch.Config{})
	first := poll(t, w)["c"]
	if err := e.m.Cirros("/c/", mirror.Release{Version: "0.6.9", Name: "c-0.6.9.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	o := poll(t, w)["c"]
	if o.State != watch.OutcomeUnchanged || o.Release != "0.6.10" || o.JobID != first.JobID {
		t.Errorf("older release: %+v", o)
	}
	if n := len(e.queued(t)); n != 1 {
		t.Errorf("%d jobs queued, want 1", n)
	}
	if r := e.records(t)["c"]; r.Release != "0.6.10" {
		t.Errorf("record went back to %s", r.Release)
	}
}

// TestRepublishedReleaseWarnsAndDoesNotFlip: a vendor that republishes a version
// with different bytes (a respin, a mirror pool serving two builds, or tampering on a
// feed without signatures) is warned about; the new bytes are vetted once and the
// record lists both digests; when the feed goes back to the first bytes the record
// stays where it is and nothing is queued.
func TestRepublishedReleaseWarnsAndDoesNotFlip(t *testing.T) {
	e := newEnv(t)
	other := filepath.Join(e.dir, "other.img")
	if err := os.WriteFile(other, []byte("other image bytes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An unsigned CHECKSUM list (AlmaLinux's GNU form) naming one build.
	publish := func(img string) {
		t.Helper()
		d, err := e.m.PutFile("/c/C-9.6.x86_64.qcow2", img)
		if err != nil {
			t.Fatal(err)
		}
		e.m.Put("/c/CHECKSUM", []byte(d.SHA256+"  C-9.6.x86_64.qcow2\n"))
	}
	publish(e.image)
	fams := e.catalog(t, map[string]catalogFamily{"c": {"C", feed.KindChecksum, "/c/CHECKSUM", "C-{version}.{arch}.qcow2", ""}})
	var logs testenv.LogBuffer
	w, _ := e.watcher(t, fams, watch.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	first := poll(t, w)["c"]
	if first.State != watch.OutcomeQueued || first.Warning != "" {
		t.Fatalf("first poll: %+v", first)
	}
	a := e.records(t)["c"].Digest

	publish(other)
	respin := poll(t, w)["c"]
	recB := e.records(t)["c"]
	b := recB.Digest
	if respin.State != watch.OutcomeQueued || respin.JobID == first.JobID || !strings.Contains(respin.Warning, a) || !strings.Contains(respin.Warning, b) {
		t.Errorf("respin: %+v", respin)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), b) {
		t.Errorf("no warning logged naming the digests:\n%s", logs.String())
	}
	if a == b || recB.JobID != respin.JobID || len(recB.Digests) != 2 || recB.Digests[0].Digest != a || recB.Digests[0].JobID != first.JobID ||
		recB.Digests[1].Digest != b || recB.Digests[1].JobID != respin.JobID || recB.Digests[1].FirstSeen.IsZero() {
		t.Errorf("record after the respin: %+v", recB)
	}

	// The pool serves the first build again: warned, nothing queued, no flip.
	publish(e.image)
	back := poll(t, w)["c"]
	if back.State != watch.OutcomeUnchanged || back.JobID != respin.JobID || !strings.Contains(back.Warning, a) || back.Err != nil {
		t.Errorf("back to the first bytes: %+v", back)
	}
	if r := e.records(t)["c"]; r.Digest != b || r.JobID != respin.JobID || len(r.Digests) != 2 {
		t.Errorf("record flipped back: %+v", r)
	}
	publish(other)
	if o := poll(t, w)["c"]; o.State != watch.OutcomeUnchanged || o.Warning != "" {
		t.Errorf("the recorded bytes again: %+v", o)
	}
	if n := len(e.queued(t)); n != 2 {
		t.Errorf("%d jobs queued, want 2 (one per build)", n)
	}
}

// TestSilentVendorCostsOnlyItsOwnTime: a vendor that accepts connections and never
// answers costs its family one request timeout (a read that timed out is not tried
// again within the poll), and the other families are read beside it, not after it;
// each outcome says how long its family took.
func TestSilentVendorCostsOnlyItsOwnTime(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // accepted, never read, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	if err := e.m.Cirros("/good/", mirror.Release{Version: "0.6.3", Name: "c-0.6.3.img", Image: e.image}); err != nil {
		t.Fatal(err)
	}
	fams := e.catalog(t, map[string]catalogFamily{
		"good":   {"Good", feed.KindCirros, "/good/", "c-{version}.img", ""},
		"silent": {"Silent", feed.KindCirros, "/silent/", "c-{version}.img", ""},
	})
	for i := range fams {
		if fams[i].Key == "silent" {
			fams[i].Feed.URL = "http://" + ln.Addr().String() + "/silent/"
		}
	}
	const timeout = 3 * time.Second
	w, _ := e.watcher(t, fams, watch.Config{RequestTimeout: timeout, Attempts: 3, Parallelism: 2})
	start := time.Now()
	out := poll(t, w)
	took := time.Since(start)
	good, silent := out["good"], out["silent"]
	if good.State != watch.OutcomeQueued || good.Took <= 0 || good.Took >= timeout {
		t.Errorf("good: %+v", good)
	}
	if silent.State != watch.OutcomeFailed || !errors.Is(silent.Err, feed.ErrUnavailable) || silent.Requests != 1 {
		t.Errorf("silent: %+v", silent)
	}
	if silent.Took < timeout || silent.Took >= 2*timeout {
		t.Errorf("silent took %s, want one request timeout (%s)", silent.Took, timeout)
	}
	if took >= silent.Took+timeout/2 {
		t.Errorf("poll took %s, the silent family %s and the good one %s: not read beside each other", took, silent.Took, good.Took)
	}
}
