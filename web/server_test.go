package web

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
	"github.com/imagevet/imagevet/queue/queuetest"
)

// testQueue starts the project's embedded JetStream server on a random loopback
// port and opens imagevet's queue on it: the same streams and buckets a worker writes.
func testQueue(t testing.TB) *queue.Queue {
	t.Helper()
	q, _ := queuetest.Queue(t)
	return q
}

// recordedPanic is the result and the full console log a real worker reported for
// the tiny-panic fixture (imagevet run under TCG), kept as test data.
func recordedPanic(t testing.TB) (jobs.Result, string) {
	t.Helper()
	data, err := os.ReadFile("testdata/tiny-panic.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := jobs.DecodeResult(data)
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile("testdata/tiny-panic.console.log")
	if err != nil {
		t.Fatal(err)
	}
	return r, string(log)
}

// serveRecordedPanic serves the page over the recorded tiny-panic result and its
// console log, published as recorded and then once for each variant (the recorded
// result as the variant edits it, under a job id of its own), and returns the
// page's URL.
func serveRecordedPanic(t testing.TB, variants ...func(*jobs.Result)) string {
	t.Helper()
	q := testQueue(t)
	r, log := recordedPanic(t)
	for _, edit := range append([]func(*jobs.Result){func(*jobs.Result) {}}, variants...) {
		v := r
		edit(&v)
		if _, err := q.PublishResult(context.Background(), v, strings.NewReader(log)); err != nil {
			t.Fatal(err)
		}
	}
	_, url := startServer(t, q)
	return url
}

// jobPage gets the page of job id, which must answer 200.
func jobPage(t testing.TB, url, id string) string {
	t.Helper()
	code, body := get(t, url+"/jobs/"+id)
	if code != 200 {
		t.Fatalf("job page of %s: %d %s", id, code, body)
	}
	return body
}

// passResult is a made-up passing result (a fake, for our own rendering logic).
func passResult(id, name string, finished time.Time) jobs.Result {
	return jobs.Result{Version: jobs.Version, JobID: id, Verdict: jobs.VerdictPass, Worker: "w1", Attempt: 1, Accel: "tcg",
		Checks:    []jobs.CheckResult{{Name: jobs.CheckBoot, Status: jobs.StatusPass, Required: true}},
		Stages:    []jobs.Stage{{Name: "fetch", Start: finished.Add(-time.Minute), Duration: jobs.Duration(time.Second)}},
		StartedAt: finished.Add(-time.Minute), FinishedAt: finished, Publish: jobs.Publication{Name: name, Family: "tiny"}}
}

// startServer serves the page over q on a loopback test server, following NATS.
func startServer(t testing.TB, q *queue.Queue) (*Server, string) {
	t.Helper()
	s, err := New(q, Options{Logger: slog.New(slog.DiscardHandler), KeepAlive: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := s.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { closeServer(t, hs) })
	return s, hs.URL
}

// serverCloseTimeout bounds closing a test's page server.
const serverCloseTimeout = 10 * time.Second

// closeServer closes hs, failing the test when a request still holds it after
// serverCloseTimeout. A browser's event stream stays open until its page goes
// (webtest leaves the page when a step fails), or the browser with the test,
// after its server.
func closeServer(t testing.TB, hs *httptest.Server) {
	t.Helper()
	hs.CloseClientConnections()
	closed := make(chan struct{})
	go func() {
		hs.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(serverCloseTimeout):
		t.Errorf("the page server still had a request open %s after the test (a browser's event stream?)", serverCloseTimeout)
	}
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOverviewListsLatestVerdictsAndHistory(t *testing.T) {
	q := testQueue(t)
	ctx := context.Background()
	panic, _ := recordedPanic(t)
	base := panic.FinishedAt
	for i, r := range []jobs.Result{passResult("tiny-1", "tiny", base.Add(-2*time.Hour)), passResult("tiny-2", "tiny", base.Add(-time.Hour)), panic} {
		if _, err := q.PublishResult(ctx, r, strings.NewReader(fmt.Sprintf("console of %d\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	s, url := startServer(t, q)
	waitFor(t, "three results in the index", func() bool { return len(s.Index().Images()) == 2 && s.Index().Ready() })
	code, body := get(t, url+"/")
	if code != 200 {
		t.Fatalf("GET /: %d %s", code, body)
	}
	for _, want := range []string{
		`data-image="tiny"`, `data-image="tiny-panic"`,
		`<span class="v fail">fail</span> <b>boot</b> <span class="reason">kernel panic: [    9.454679] Kernel panic`,
		`data-prefix="tiny-" data-jobs="1 2"><i class="pass"></i><i class="pass"></i></span>`,
		`<a class="v pass" href="/?verdict=pass">1 pass</a> <a class="v fail" href="/?verdict=fail">1 fail</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if code, _ := get(t, url+"/healthz"); code != 200 {
		t.Errorf("healthz after catching up: %d", code)
	}
	// Once the publisher records the family's Latest image, the row shows it.
	if err := q.PutPublished(ctx, jobs.Published{Version: jobs.Version, Family: "tiny", Name: "Tiny - Latest", ImageID: "7f1e0c52-img",
		Release: "20261130", JobID: "tiny-2", VerdictAt: base.Add(-time.Hour), PublishedAt: base, OSHashAlgo: "sha512", OSHashValue: strings.Repeat("b", 128)}); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, url+"/")
	if !strings.Contains(body, `title="Glance image 7f1e0c52-img, published `) || !strings.Contains(body, `>Tiny - Latest</a> <span class="reason">20261130</span>`) {
		t.Errorf("overview lacks the published image:\n%s", body)
	}
	// Per cloud: published in one region with both hashes, refused in another.
	if err := q.PutPublished(ctx, jobs.Published{Version: jobs.Version, Family: "tiny", Name: "Tiny - Latest", ImageID: "9a-img",
		Release: "20261130", JobID: "tiny-2", PublishedAt: base, OSHashValue: strings.Repeat("b", 128), SourceHash: strings.Repeat("c", 128),
		Cloud: "east", Region: "RegionOne"}); err != nil {
		t.Fatal(err)
	}
	if err := q.PutPublication(ctx, jobs.PublicationRecord{JobID: "tiny-2", Family: "tiny", Cloud: "west", Region: "RegionTwo",
		State: jobs.PublicationRefused, Reason: "cloud west (region RegionTwo): Glance sha512 os_hash_value of image x is 0", Attempts: 1, UpdatedAt: base}); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, url+"/")
	for _, want := range []string{
		`title="Glance image 9a-img on east (RegionOne), published 2026-`,
		`published 2026-12-01 00:56:38Z">Tiny - Latest</a>`,
		`<a class="err" href="/jobs/tiny-2" title="cloud west (region RegionTwo): Glance sha512 os_hash_value of image x is 0">refused in west</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	_, body = get(t, url+"/jobs/tiny-2")
	for _, want := range []string{
		`<h2>Publication</h2>`, `<td>west (RegionTwo)</td><td><span class="v fail">refused</span>`,
		`<code>imagevet publish --job tiny-2</code>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("job page lacks %q", want)
		}
	}
	// The watch's records: tiny has a newer upstream release than the one vetted, a
	// second family has no verdict yet and its feed is failing.
	kv, err := q.ReleasesBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []jobs.ReleaseRecord{
		{Version: jobs.Version, Family: "tiny", Name: "tiny", Release: "20261201", JobID: "tiny-20261201-abc", State: jobs.ReleaseQueued, FirstSeen: base},
		{Version: jobs.Version, Family: "other-os", Name: "Other OS", Release: "9.1", JobID: "other-os-9-1-def", State: jobs.ReleasePending, FirstSeen: base, FeedError: "HTTP 503"},
	} {
		data, _ := json.Marshal(rec)
		if _, err := kv.Put(ctx, rec.Family, data); err != nil {
			t.Fatal(err)
		}
	}
	_, body = get(t, url+"/")
	for _, want := range []string{
		`>20261201</span> <a class="reason" href="/jobs/tiny-20261201-abc">queued</a> <b class="new">new</b></td>`,
		`<tr data-image="Other OS"><td>Other OS</td><td><a href="/families/other-os">other-os</a></td>`,
		`<span class="err" title="HTTP 503">feed failing</span>`,
		`<span class="reason">no verdict yet</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
}

func TestJobPageShowsTimelineFatalLineAndLinks(t *testing.T) {
	url := serveRecordedPanic(t)
	r, _ := recordedPanic(t)
	body := jobPage(t, url, "tiny-panic")
	// The fatal console line is highlighted and named; the milestones are marked.
	fatal := `class="fatal" data-mark="kernel-panic">[    9.454679] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100</span>`
	if strings.Count(body, fatal) != 1 {
		t.Errorf("console lacks the highlighted fatal line %q", fatal)
	}
	if !strings.Contains(body, `class="milestone" data-mark="kernel">[    0.000000] Linux version 6.1.0`) {
		t.Error("console lacks the kernel milestone")
	}
	// The timeline has a lane per stage, the ssh stage (where the panic struck) failed
	// with boot, and a tick per console mark, the fatal one linking to its line.
	for _, stage := range []string{"fetch", "prepare", "boot", "ssh", "cleanup"} {
		if !strings.Contains(body, `<text x="4"`) || !strings.Contains(body, ">"+stage+"</text>") {
			t.Errorf("timeline lacks the %s lane", stage)
		}
	}
	if n := strings.Count(body, `class="mark milestone"`); n != 5 {
		t.Errorf("timeline has %d milestone marks, want 5", n)
	}
	if !strings.Contains(body, `class="mark fatal"`) || !strings.Contains(body, `<g class="lane fail"><title>boot`) {
		t.Error("timeline lacks the fatal mark or the failed boot lane")
	}
	for _, link := range []string{"/jobs/tiny-panic/result.json", "/jobs/tiny-panic/junit.xml", "/jobs/tiny-panic/console.txt"} {
		if !strings.Contains(body, `href="`+link+`"`) {
			t.Errorf("job page lacks a link to %s", link)
		}
	}
	if !strings.Contains(body, r.ImageFacts.OSHashValue) || !strings.Contains(body, r.ImageFacts.SHA256) ||
		!strings.Contains(body, `<th>source_hash (vendor file sha512)</th><td><code class="hash">`+r.ImageFacts.SourceHash()+`</code>`) {
		t.Error("job page lacks the image hashes (sha256, os_hash_value, source_hash)")
	}

	code, body := get(t, url+"/jobs/tiny-panic/result.json")
	got, err := jobs.DecodeResult([]byte(body))
	if code != 200 || err != nil || got.JobID != r.JobID || got.Verdict != jobs.VerdictFail {
		t.Errorf("result.json: %d %v %+v", code, err, got.JobID)
	}
	code, body = get(t, url+"/jobs/tiny-panic/junit.xml")
	var suites struct {
		Failures int `xml:"failures,attr"`
	}
	if code != 200 || xml.Unmarshal([]byte(body), &suites) != nil || suites.Failures == 0 {
		t.Errorf("junit.xml: %d %s", code, body)
	}
	code, body = get(t, url+"/jobs/tiny-panic/console.txt")
	if code != 200 || !strings.Contains(body, "Kernel panic - not syncing") {
		t.Errorf("console.txt: %d", code)
	}
	for path, want := range map[string]int{"/jobs/nope": 404, "/jobs/nope/result.json": 404, "/jobs/nope/console.txt": 404, "/jobs/a..b": 404} {
		if code, _ := get(t, url+path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

func readEvents(t *testing.T, body io.Reader) <-chan sseEvent {
	out := make(chan sseEvent, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out
}

// testJob is a valid job document for the queue (nothing runs it).
func testJob(id string) jobs.Job {
	return jobs.Job{Version: jobs.Version, ID: id, Image: jobs.ImageSpec{Source: "/img/a.qcow2", Format: jobs.FormatQCOW2,
		Checksum: "sha256:" + strings.Repeat("a", 64)}, Guest: jobs.GuestSpec{User: "debian"}, Publish: jobs.Publication{Name: "img-" + id, Family: "tiny"}}
}

// submit queues testJob(id) and returns its jobs-stream sequence.
func submit(t testing.TB, q *queue.Queue, id string) uint64 {
	t.Helper()
	acc, err := q.Submit(context.Background(), testJob(id))
	if err != nil {
		t.Fatal(err)
	}
	return acc.Sequence
}

func TestEventsFollowProgressThenResult(t *testing.T) {
	q := testQueue(t)
	s, url := startServer(t, q)
	submit(t, q, "live-1")
	resp, err := http.Get(url + "/jobs/live-1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := readEvents(t, resp.Body)
	next := func() sseEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return sseEvent{}
	}
	if ev := next(); ev.name != "hello" {
		t.Fatalf("first event %+v", ev)
	}
	if err := q.PublishProgress(jobs.Progress{JobID: "live-1", Worker: "w1", Attempt: 1, Stage: "boot", Event: "start"}); err != nil {
		t.Fatal(err)
	}
	ev := next()
	var p jobs.Progress
	if ev.name != "progress" || json.Unmarshal([]byte(ev.data), &p) != nil || p.Stage != "boot" || p.Event != "start" {
		t.Fatalf("progress event %+v", ev)
	}
	waitFor(t, "the job among the active ones", func() bool { return len(s.Index().Active(time.Now())) == 1 })
	if _, err := q.PublishResult(context.Background(), passResult("live-1", "tiny", time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	for ev = next(); ev.name == "progress"; ev = next() {
	}
	if ev.name != "result" || !strings.Contains(ev.data, `"verdict":"pass"`) {
		t.Fatalf("result event %+v", ev)
	}
	if a := s.Index().Active(time.Now()); len(a) != 0 {
		t.Errorf("finished job still active: %+v", a)
	}
	// A job that already has a result answers at once.
	resp2, err := http.Get(url + "/jobs/live-1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	body, _ := io.ReadAll(resp2.Body)
	if !strings.Contains(string(body), "event: result") {
		t.Errorf("finished job's events: %s", body)
	}
}

func TestQueueAndWorkersPages(t *testing.T) {
	q := testQueue(t)
	ctx := context.Background()
	seqs := map[string]uint64{}
	for _, id := range []string{"q-running", "q-waiting"} {
		seqs[id] = submit(t, q, id)
	}
	s, url := startServer(t, q)
	// What a worker records: its heartbeat, its claim on one job, and progress.
	if err := q.PutWorker(ctx, queue.WorkerInfo{ID: "host-a", Host: "hv1", PID: 4242, Version: "v1", Accel: "tcg",
		AccelReason: "a KVM guest does not start: failed to set MSR 0x10a", Slots: 2,
		Running: []string{}, StartedAt: time.Now().Add(-time.Hour)}); err != nil { // its next heartbeat will name the job
		t.Fatal(err)
	}
	if _, _, err := q.ClaimAttempt(ctx, "q-running", seqs["q-running"], "img-q-running", "host-a", 0, 3); err != nil {
		t.Fatal(err)
	}
	if err := q.PublishProgress(jobs.Progress{JobID: "q-running", Worker: "host-a", Attempt: 1, Stage: "cloud-init", Event: "start"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the running job", func() bool { return len(s.Index().Active(time.Now())) == 1 })
	_, body := get(t, url+"/queue")
	for _, want := range []string{
		`<a href="/jobs/q-running">q-running</a></td><td>img-q-running</td><td><span class="v running">running</span></td><td>cloud-init</td><td>1</td><td>host-a</td>`,
		`<a href="/jobs/q-waiting">q-waiting</a></td><td>img-q-waiting</td><td><span class="v queued">queued</span></td><td>-</td><td>-</td><td>-</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("queue page lacks %q\n%s", want, body)
		}
	}
	_, body = get(t, url+"/workers")
	if !strings.Contains(body, `<td>host-a</td><td>hv1 <span class="reason">pid 4242</span></td>`) ||
		!strings.Contains(body, `<td>1/2</td><td><a href="/jobs/q-running">q-running</a> </td><td title="a KVM guest does not start: failed to set MSR 0x10a">tcg <span class="reason">a KVM guest does not start: failed to set MSR 0x10a</span></td><td>v1</td>`) {
		t.Errorf("workers page lacks host-a's heartbeat:\n%s", body)
	}
	// The running job's own page is the live one.
	_, body = get(t, url+"/jobs/q-running")
	if !strings.Contains(body, `data-events="/jobs/q-running/events"`) || !strings.Contains(body, `<b id="stage">cloud-init</b>`) {
		t.Errorf("running job page:\n%s", body)
	}
}

func TestHeadersKeepThePageToItsOrigin(t *testing.T) {
	q := testQueue(t)
	_, url := startServer(t, q)
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	for _, asset := range []string{"/static/style.css", "/static/page.js", "/favicon.ico"} {
		if code, body := get(t, url+asset); code != 200 || len(body) < 100 {
			t.Errorf("%s: %d", asset, code)
		}
	}
	resp, err = http.Get(url + "/favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "image/vnd.microsoft.icon" && ct != "image/x-icon" {
		t.Errorf("favicon content type %q", ct)
	}
	// The assets are served, not listed.
	for _, dir := range []string{"/static/", "/static", "/static/./"} {
		if code, body := get(t, url+dir); code != 404 || strings.Contains(body, "style.css") {
			t.Errorf("%s: %d %.100q", dir, code, body)
		}
	}
	// A 404 quotes a bounded, quoted piece of what was asked, not a megabyte, as
	// plain text the browser does not sniff.
	long := strings.Repeat("x", 1<<20) + "%0A%3Cscript%3E"
	for _, path := range []string{"/jobs/" + long, "/jobs/" + long + "/result.json", "/jobs/%3Cb%3E..%3C%2Fb%3E%0A"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || len(body) > 300 || strings.Count(string(body), "\n") > 1 ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %.30s…: %d, %d bytes: %.200q", path, resp.StatusCode, len(body), body)
		}
	}
}

// A job page says what the queue knows: 404 for a job never submitted (and its event
// stream ends at once), the place in the queue for a waiting one, attempt, worker
// and stage for a running one; never "running" for what is not.
func TestJobPageStates(t *testing.T) {
	q := testQueue(t)
	ctx := context.Background()
	_, url := startServer(t, q)

	code, body := get(t, url+"/jobs/never-submitted")
	if code != http.StatusNotFound || !strings.Contains(body, `<span class="v unknown">unknown</span>`) || strings.Contains(body, `class="v running"`) {
		t.Errorf("unknown job: %d\n%s", code, body)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url + "/jobs/never-submitted/events")
	if err != nil {
		t.Fatalf("events of an unknown job did not end: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("events of an unknown job: %d", resp.StatusCode)
	}

	seqA := submit(t, q, "st-a")
	submit(t, q, "st-b")
	submit(t, q, "st-c")
	code, body = get(t, url+"/jobs/st-b")
	if code != 200 || !strings.Contains(body, `<span class="v queued">queued</span>`) || !strings.Contains(body, `<b>number 2</b> of 3 waiting`) ||
		strings.Contains(body, `class="v running"`) {
		t.Errorf("queued job: %d\n%s", code, body)
	}
	// A worker claims st-a: it runs, and st-b is next.
	if _, _, err := q.ClaimAttempt(ctx, "st-a", seqA, "img-st-a", "host-a", 0, 3); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, url+"/jobs/st-b")
	if !strings.Contains(body, `<b>next to run</b> of 2 waiting`) {
		t.Errorf("queued job after the one before it started:\n%s", body)
	}
	_, body = get(t, url+"/jobs/st-a")
	if !strings.Contains(body, `<span class="v running">running</span>`) || !strings.Contains(body, `worker <b>host-a</b> · attempt 1 · since `) ||
		!strings.Contains(body, `<b id="stage">queue</b>`) {
		t.Errorf("running job:\n%s", body)
	}
}

func TestDecideLive(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	entries := []queue.QueueEntry{
		{JobID: "a", State: queue.StateRunning, Attempt: 2, Worker: "w1", Stage: "boot", StartedAt: t0},
		{JobID: "b", State: queue.StateRetrying, Attempt: 1, Worker: "w2", LastError: "libvirtd down", SubmittedAt: t0},
		{JobID: "c", State: queue.StateQueued, SubmittedAt: t0.Add(time.Second)},
	}
	for _, tc := range []struct {
		name, id string
		active   *Active
		want     liveState
		known    bool
	}{
		{"unknown", "x", nil, liveState{}, false},
		{"running from the state entry", "a", nil, liveState{State: queue.StateRunning, Since: t0, Attempt: 2, Worker: "w1", Stage: "boot"}, true},
		{"running, progress fresher", "a", &Active{JobID: "a", Attempt: 2, Worker: "w1", Stage: "ssh", Event: "start"},
			liveState{State: queue.StateRunning, Since: t0, Attempt: 2, Worker: "w1", Stage: "ssh", Event: "start"}, true},
		{"stale progress of an attempt before", "a", &Active{JobID: "a", Attempt: 1, Worker: "w9", Stage: "ssh"},
			liveState{State: queue.StateRunning, Since: t0, Attempt: 2, Worker: "w1", Stage: "boot"}, true},
		{"waiting to retry", "b", nil, liveState{State: queue.StateRetrying, Position: 1, Waiting: 2, Since: t0, Attempt: 1, Worker: "w2", LastError: "libvirtd down"}, true},
		{"queued", "c", &Active{JobID: "c", Attempt: 1, Worker: "w2"}, liveState{State: queue.StateQueued, Position: 2, Waiting: 2, Since: t0.Add(time.Second)}, true},
		{"reporting: progress only", "d", &Active{JobID: "d", Attempt: 1, Worker: "w3", Stage: "cleanup", Since: t0},
			liveState{State: queue.StateRunning, Since: t0, Attempt: 1, Worker: "w3", Stage: "cleanup"}, true},
	} {
		got, known := decideLive(tc.id, entries, tc.active)
		if known != tc.known || got != tc.want {
			t.Errorf("%s: got %+v %v, want %+v %v", tc.name, got, known, tc.want, tc.known)
		}
	}
}

// midJob queues mid-1 and plays a worker running it: a claim, the progress events
// of its fetch, prepare and boot so far, and its console with two milestones. It
// returns the time the attempt began.
func midJob(t testing.TB, q *queue.Queue) time.Time {
	t.Helper()
	ctx := context.Background()
	seq := submit(t, q, "mid-1")
	if _, _, err := q.ClaimAttempt(ctx, "mid-1", seq, "img-mid-1", "host-a", 0, 3); err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Add(-40 * time.Second)
	for i, p := range []jobs.Progress{
		{Stage: "queue", Event: "done", Message: "picked up by worker host-a (attempt 1, queued 2ms)"},
		{Stage: "fetch", Event: "start"},
		{Stage: "fetch", Event: "info", Message: "17.4 MiB of 17.4 MiB"},
		{Stage: "fetch", Event: "done"},
		{Stage: "prepare", Event: "start"},
		{Stage: "prepare", Event: "done"},
		{Stage: "boot", Event: "start"},
		{Stage: "boot", Event: "done"},
		{Stage: "ssh", Event: "start"},
	} {
		p.JobID, p.Attempt, p.Worker, p.Time = "mid-1", 1, "host-a", start.Add(time.Duration(i)*time.Second)
		if err := q.PublishProgress(p); err != nil {
			t.Fatal(err)
		}
	}
	// An older attempt's event on another worker is not this attempt's story.
	if err := q.PublishProgress(jobs.Progress{JobID: "mid-1", Attempt: 0, Worker: "host-z", Time: start.Add(-10 * time.Minute), Stage: "fetch", Event: "start"}); err != nil {
		t.Fatal(err)
	}
	if err := q.PutLiveConsole(ctx, jobs.LiveConsole{JobID: "mid-1", Attempt: 1, Worker: "host-a", Updated: start.Add(9 * time.Second),
		Tail: "SeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting from Hard Disk...\n[    0.000000] Linux version 6.1.0-57-cloud-amd64\n[    1.2] still booting <b>",
		Marks: []jobs.ConsoleMark{
			{Kind: jobs.MarkMilestone, Name: "firmware", Reason: "firmware started", Line: "SeaBIOS (version 1.16.2-debian-1.16.2-1)", At: start.Add(7500 * time.Millisecond)},
			{Kind: jobs.MarkMilestone, Name: "kernel", Reason: "kernel started", Line: "[    0.000000] Linux version 6.1.0-57-cloud-amd64", At: start.Add(8500 * time.Millisecond)},
		}}); err != nil {
		t.Fatal(err)
	}
	return start
}

// A running job's page opened mid-job tells the story so far, and a reload tells
// it again: the attempt's events replayed from the stream, the console with its
// milestones, the timeline with the running stage, the elapsed time and the
// family's usual time.
func TestRunningJobPageTellsTheStorySoFar(t *testing.T) {
	q := testQueue(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for i, took := range []time.Duration{50 * time.Second, 70 * time.Second, 60 * time.Second} {
		r := passResult(fmt.Sprintf("tiny-%d", i), "tiny", now.Add(-time.Duration(i+1)*time.Hour))
		r.StartedAt = r.FinishedAt.Add(-took)
		if _, err := q.PublishResult(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	s, url := startServer(t, q)
	midJob(t, q)
	waitFor(t, "the results and the running job", func() bool {
		return s.Index().Ready() && len(s.Index().Images()) == 1 && len(s.Index().Active(time.Now())) == 1
	})
	for range 2 { // a reload wipes nothing
		code, body := get(t, url+"/jobs/mid-1")
		if code != 200 {
			t.Fatalf("GET: %d", code)
		}
		for _, want := range []string{
			`<span class="v running">running</span>`,
			`image <b>img-mid-1</b> · worker <b>host-a</b> · attempt 1`,
			`<b id="stage">ssh</b> <span id="event">start</span>`,
			`so far of about <b>1m0s</b> <span class="reason">(the median of the family's last 3 passing runs)</span>`,
			`<td>fetch</td><td>info</td><td>17.4 MiB of 17.4 MiB</td>`,
			`<td>ssh</td><td>start</td><td></td>`,
			`<g class="lane running"><title>ssh: `,
			`<g class="lane ok"><title>fetch: 2.0s</title>`,
			`class="milestone" data-mark="firmware">SeaBIOS`,
			`class="milestone" data-mark="kernel">[    0.000000] Linux version`,
			`still booting &lt;b&gt;`,
			`class="mark milestone"><title>kernel started at `,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("running job page lacks %q\n%s", want, body)
			}
		}
		if n := strings.Count(body, "<tr><td title="); n != 9 {
			t.Errorf("%d event rows, want the attempt's 9:\n%s", n, body)
		}
		if strings.Contains(body, "host-z") {
			t.Error("an older attempt's event is shown")
		}
	}
	code, body := get(t, url+"/jobs/mid-1?part=sofar")
	if code != 200 || !strings.HasPrefix(body, `<div id="sofar">`) || strings.Contains(body, "<html") {
		t.Errorf("the story so far alone: %d %.200s", code, body)
	}
}

// Checks that did not run are listed as such, with why; a failed command's reason
// quotes the end of its output and the detail keeps all of it.
func TestJobPageListsChecksNotRunAndCommandOutput(t *testing.T) {
	q := testQueue(t)
	now := time.Now().UTC()
	r := passResult("cmds-1", "tiny", now)
	r.Verdict, r.FailedCheck = jobs.VerdictFail, jobs.CheckCommands
	r.Reason = `command 2 (apt-get update) exited 100, want 0; stderr ends "E: Failed to fetch ⏎ E: Some index files failed to download"`
	detail := "$ true\n[exit 0 in 3ms]\n$ apt-get update\n[stderr] W: line 1\n" + strings.Repeat("[stderr] W: more\n", 50) + "[stderr] E: Some index files failed to download\n[exit 100 in 2s]"
	r.Checks = append(r.Checks,
		jobs.CheckResult{Name: jobs.CheckCommands, Status: jobs.StatusFail, Required: true, Reason: r.Reason, Detail: detail},
		jobs.CheckResult{Name: jobs.CheckHostname, Status: jobs.StatusSkip, Required: true, Reason: jobs.NotRunPrefix + "a fatal console line ended the job first"},
		jobs.CheckResult{Name: jobs.CheckMetadata, Status: jobs.StatusSkip, Reason: "skipped by the job"})
	if _, err := q.PublishResult(context.Background(), r, nil); err != nil {
		t.Fatal(err)
	}
	_, url := startServer(t, q)
	_, body := get(t, url+"/jobs/cmds-1")
	for _, want := range []string{
		`<tr class="skip not-run"><td>hostname</td><td><span class="v skip">not run</span></td><td>yes</td><td>-</td><td class="reason-cell">a fatal console line ended the job first</td>`,
		`<tr class="skip"><td>metadata</td><td><span class="v skip">skip</span></td><td>no</td><td>0s</td><td class="reason-cell">skipped by the job</td>`,
		`stderr ends &#34;E: Failed to fetch ⏎ E: Some index files failed to download&#34;<details><summary>detail</summary><pre>$ true`,
		`[stderr] E: Some index files failed to download
[exit 100 in 2s]</pre>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("job page lacks %q", want)
		}
	}
}
