package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/queue"
)

// familyEpoch is when seedFamily's first release appeared upstream.
var familyEpoch = time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)

// seedFamily records, as the watch, the workers and the publisher would, six
// releases of family deb-12 (one a day): the watch's record of each, a result
// each (boot time and size regress at release 5; release 3 fails), and the
// publications: in time, 30 h late in one region (release 2), and none yet for
// the newest, though it passed long ago.
func seedFamily(t testing.TB, q *queue.Queue, idx *Index) {
	t.Helper()
	ctx := context.Background()
	kv, err := q.ReleasesBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		seen := familyEpoch.Add(time.Duration(i-1) * 24 * time.Hour)
		rel := fmt.Sprintf("2026110%d", i)
		id := "deb-12-" + rel + "-ab"
		data, _ := json.Marshal(jobs.ReleaseRecord{Version: jobs.Version, Family: "deb-12", Name: "Deb 12", Release: rel, JobID: id,
			State: jobs.ReleaseQueued, FirstSeen: seen, CheckedAt: seen})
		if _, err := kv.Put(ctx, "deb-12", data); err != nil {
			t.Fatal(err)
		}
		r := passResult(id, "Deb 12", seen.Add(2*time.Hour))
		r.Publish.Family, r.Publish.Release = "deb-12", rel
		boot := 20 * time.Second
		size := int64(300 << 20)
		if i == 5 {
			boot, size = 70*time.Second, 900<<20
		}
		r.Stages = []jobs.Stage{
			{Name: "boot", Start: r.StartedAt.Add(5 * time.Second), Duration: jobs.Duration(time.Second)},
			{Name: "ssh", Start: r.StartedAt.Add(6 * time.Second), Duration: jobs.Duration(boot - time.Second)},
		}
		r.ImageFacts = &jobs.ImageFacts{Size: size, Format: "qcow2"}
		if i == 3 {
			r.Verdict, r.FailedCheck, r.Reason = jobs.VerdictFail, jobs.CheckCloudInit, "cloud-init status: error"
			r.Stages[1].Error = "no SSH banner"
		}
		if _, err := q.PublishResult(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
		idx.Add(r)
		if i == 3 || i == 6 {
			continue
		}
		for _, cloud := range []string{"east", "west"} {
			at := seen.Add(3 * time.Hour)
			if i == 2 && cloud == "west" {
				at = seen.Add(30 * time.Hour)
			}
			if err := q.PutPublication(ctx, jobs.PublicationRecord{JobID: id, Family: "deb-12", Cloud: cloud, Region: "Region-" + cloud,
				State: jobs.PublicationDone, Outcome: "published", ImageID: "img-" + rel + "-" + cloud, OSHashValue: strings.Repeat("b", 128),
				Attempts: 1, UpdatedAt: at}); err != nil {
				t.Fatal(err)
			}
		}
	}
	idx.MarkReady()
}

// The family page lists every release vetted, newest first, with its verdict,
// when it appeared upstream, when it was vetted and published per cloud, and
// marks the releases past the 24-hour promise; its charts mark the regression.
func TestFamilyPageShowsReleasesPromiseAndCharts(t *testing.T) {
	q := testQueue(t)
	now := familyEpoch.Add(8 * 24 * time.Hour)
	s, err := New(q, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	seedFamily(t, q, s.Index())
	h := s.Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/families/deb-12", nil))
	body := w.Body.String()
	if w.Code != 200 {
		t.Fatalf("family page: %d %s", w.Code, body)
	}
	for _, want := range []string{
		`<h1>Deb 12 <span class="reason">family deb-12</span></h1>`,
		`6 releases vetted · <b class="over">2 past the 24 h promise</b>`,
		`<a href="/jobs/deb-12-20261103-ab"><span class="v fail">fail</span></a> <b>cloud-init</b> <span class="reason">cloud-init status: error</span>`,
		`<td>2026-11-02 06:00:00Z <span class="reason">first seen</span></td>`,
		`west (Region-west): 2026-11-03 12:00:00Z</div>`,
		`<td>30h0m0s <b class="over">over 24 h</b></td>`,
		`<td>3h0m0s</td>`,
		`<b class="over">not published 24 h after upstream</b>`,
		`; os_hash_value ` + strings.Repeat("b", 128),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("family page lacks %q", want)
		}
	}
	if i, j := strings.Index(body, ">20261106<"), strings.Index(body, ">20261101<"); i < 0 || j < 0 || i > j {
		t.Error("releases are not listed newest first")
	}
	if n := strings.Count(body, `<tr class="over">`); n != 2 {
		t.Errorf("%d rows marked over the promise, want 2 (20261102 late in west, 20261106 unpublished)", n)
	}
	// Three charts; boot time has 5 points (release 3 never answered SSH), the
	// regression at release 5 marked in boot time and size.
	if n := strings.Count(body, `<figure class="chart">`); n != 3 {
		t.Errorf("%d charts, want 3", n)
	}
	if n := strings.Count(body, `class="pass jump"`); n != 2 {
		t.Errorf("%d regression points, want 2 (boot time and size of 20261105)", n)
	}
	if !strings.Contains(body, `<title>20261105: 1m10s (pass)</title>`) || !strings.Contains(body, `<title>20261105: 900.0 MiB (pass)</title>`) {
		t.Error("the charts lack release 20261105's boot time or size")
	}
	// The overview and the job page link the family.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(w.Body.String(), `<a href="/families/deb-12">deb-12</a>`) {
		t.Error("the overview does not link the family")
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/jobs/deb-12-20261101-ab", nil))
	if !strings.Contains(w.Body.String(), `of family <a href="/families/deb-12">deb-12</a>`) {
		t.Error("the job page does not link the family")
	}
	for path, want := range map[string]int{"/families/nope": 404, "/families/" + strings.Repeat("x", 5000): 404, "/families/Bad%20Name": 404} {
		w = httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != want || w.Body.Len() > 300 {
			t.Errorf("GET %.40s: %d (%d bytes), want %d", path, w.Code, w.Body.Len(), want)
		}
	}
}

// A release's times: upstream is when it was released, else first seen; the time
// to publish counts to the last cloud once every cloud has it; past Promise, or
// waiting longer than that, it is over.
func TestFamilyReleaseMeasure(t *testing.T) {
	t0 := familyEpoch
	done := func(h int) familyPublication {
		return familyPublication{Done: true, At: t0.Add(time.Duration(h) * time.Hour)}
	}
	waiting := familyPublication{State: "retry"}
	for _, c := range []struct {
		name                  string
		published             []familyPublication
		verdict               jobs.Verdict
		firstSeen, releasedAt time.Time
		now                   time.Time
		from                  string
		toPublish             time.Duration
		waiting, over         bool
	}{
		{name: "released, published in time", published: []familyPublication{done(3), done(5)}, releasedAt: t0, firstSeen: t0.Add(time.Hour),
			from: "released", toPublish: 5 * time.Hour},
		{name: "first seen, one cloud late", published: []familyPublication{done(30), done(3)}, firstSeen: t0,
			from: "first seen", toPublish: 30 * time.Hour, over: true},
		{name: "one cloud waiting, within the promise", published: []familyPublication{done(3), waiting}, firstSeen: t0, now: t0.Add(10 * time.Hour),
			from: "first seen", waiting: true},
		{name: "one cloud waiting, past the promise", published: []familyPublication{done(3), waiting}, firstSeen: t0, now: t0.Add(25 * time.Hour),
			from: "first seen", waiting: true, over: true},
		{name: "passed, no publication yet", verdict: jobs.VerdictPass, firstSeen: t0, now: t0.Add(25 * time.Hour),
			from: "first seen", waiting: true, over: true},
		{name: "failed, no publication", verdict: jobs.VerdictFail, firstSeen: t0, now: t0.Add(25 * time.Hour), from: "first seen"},
		{name: "never seen upstream", verdict: jobs.VerdictPass, now: t0.Add(25 * time.Hour), waiting: true},
	} {
		rel := familyRelease{Published: c.published, Last: Run{Verdict: c.verdict}}
		rel.measure(c.firstSeen, c.releasedAt, c.now)
		if rel.UpstreamFrom != c.from || rel.ToPublish != c.toPublish || rel.Waiting != c.waiting || rel.Over != c.over || !rel.FirstSeen.Equal(c.firstSeen) {
			t.Errorf("%s: from %q, to publish %s, waiting %v, over %v; want %q, %s, %v, %v",
				c.name, rel.UpstreamFrom, rel.ToPublish, rel.Waiting, rel.Over, c.from, c.toPublish, c.waiting, c.over)
		}
	}
}
