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

// digestReason is a failure reason holding two 64-hex digests (no break point in
// either), as an image check reports a checksum mismatch.
var digestReason = "image: sha256 " + strings.Repeat("3f9a", 16) + " does not match the vendor's " + strings.Repeat("c0de", 16)

// fillIndex adds n made-up results (a fake of the results stream, for timing our
// own rendering) spread over images: each image gets n/images runs, every fifth a
// failure with a reason, as a publisher's pipeline accumulates them.
func fillIndex(x *Index, n, images int) {
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		img := i % images
		r := passResult(fmt.Sprintf("vendor-os-%02d-2026%04d-%x", img, i/images, i*2654435761%0xffffff), fmt.Sprintf("Vendor OS %02d", img), base.Add(time.Duration(i)*time.Minute))
		r.Publish.Family = fmt.Sprintf("vendor-os-%02d", img)
		r.Publish.Release = fmt.Sprintf("2026%04d", i/images)
		switch {
		case i%35 == 0:
			r.Verdict, r.FailedCheck, r.Reason = jobs.VerdictFail, jobs.CheckImage, digestReason
		case i%5 == 0:
			r.Verdict, r.FailedCheck, r.Reason = jobs.VerdictFail, jobs.CheckCloudInit, `cloud-init status: error: ("DataSourceNoCloud", "failed to read seed")`
		}
		x.Add(r)
	}
	x.MarkReady()
}

// fillCatalog records in q what the watch and the publisher know of images
// families "vendor-os-NN": each family's newest upstream release, and its Latest
// image in two clouds with both hashes (the records the overview reads per view).
func fillCatalog(t testing.TB, q *queue.Queue, images int) {
	t.Helper()
	ctx := context.Background()
	kv, err := q.ReleasesBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for img := range images {
		family := fmt.Sprintf("vendor-os-%02d", img)
		rec := jobs.ReleaseRecord{Version: jobs.Version, Family: family, Name: fmt.Sprintf("Vendor OS %02d", img), Release: "20261201",
			JobID: family + "-20261201-abc", State: jobs.ReleaseQueued, FirstSeen: at, CheckedAt: at}
		data, _ := json.Marshal(rec)
		if _, err := kv.Put(ctx, family, data); err != nil {
			t.Fatal(err)
		}
		for _, cloud := range []string{"east", "west"} {
			if err := q.PutPublished(ctx, jobs.Published{Version: jobs.Version, Family: family, Name: rec.Name + " - Latest", ImageID: "img-" + family + "-" + cloud,
				Release: "20261130", JobID: family + "-20261130-abc", PublishedAt: at, OSHashAlgo: "sha512", OSHashValue: strings.Repeat("b", 128),
				SourceHash: strings.Repeat("c", 128), Cloud: cloud, Region: "Region-" + cloud}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// catalogServer is a page over a real (embedded) NATS server holding images
// families' records (fillCatalog), its index fed 30 runs of each (fillIndex).
func catalogServer(t testing.TB, images int) *Server {
	t.Helper()
	q := testQueue(t)
	s, err := New(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fillIndex(s.Index(), 30*images, images)
	fillCatalog(t, q, images)
	return s
}

// BenchmarkOverview1000Images renders the overview's first page over a catalog of
// 1,000 images with 30 runs each (30,000 results), each family's upstream release
// and its Latest image in two clouds read from a real (embedded) NATS server per
// view, as the page does.
func BenchmarkOverview1000Images(b *testing.B) {
	h := catalogServer(b, 1000).Handler()
	var size int
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}

// The overview of 1,000 images stays under 100 KB a page, unfiltered and filtered,
// and its pages together list every image once, failures first.
func TestOverviewOf1000ImagesWeighsUnder100KB(t *testing.T) {
	h := catalogServer(t, 1000).Handler()
	seen := map[string]bool{}
	fails := 0
	for page := 1; ; page++ {
		w := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(w, httptest.NewRequest("GET", fmt.Sprintf("/?page=%d", page), nil))
		took := time.Since(start)
		body := w.Body.String()
		if w.Code != 200 || len(body) >= 100<<10 {
			t.Fatalf("page %d: %d, %d bytes", page, w.Code, len(body))
		}
		if page == 1 {
			t.Logf("page 1: %d bytes in %s", len(body), took)
		}
		rows := strings.Split(body, `<tr data-image="`)[1:]
		for _, row := range rows {
			name, _, _ := strings.Cut(row, `"`)
			if seen[name] {
				t.Fatalf("page %d lists %s again", page, name)
			}
			seen[name] = true
			if strings.Contains(row, `<span class="v fail">`) {
				if fails != len(seen)-1 {
					t.Fatalf("page %d: failed %s after a passing image", page, name)
				}
				fails++
			}
		}
		if !strings.Contains(body, `rel="next"`) {
			break
		}
	}
	if len(seen) != 1000 || fails == 0 {
		t.Errorf("the pages list %d images (%d failing), want 1000", len(seen), fails)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/?verdict=pass&q=vendor", nil))
	if w.Code != 200 || w.Body.Len() >= 100<<10 || strings.Contains(w.Body.String(), `<span class="v fail">`) {
		t.Errorf("filtered page: %d, %d bytes", w.Code, w.Body.Len())
	}
}
