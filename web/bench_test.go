package web

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

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
		if i%5 == 0 {
			r.Verdict, r.FailedCheck, r.Reason = jobs.VerdictFail, jobs.CheckCloudInit, `cloud-init status: error: ("DataSourceNoCloud", "failed to read seed")`
		}
		x.Add(r)
	}
	x.MarkReady()
}

// BenchmarkOverview1000 renders the overview over 1,000 results (40 images × 25
// runs) with the published column read from a real (embedded) NATS server.
func BenchmarkOverview1000(b *testing.B) {
	s, err := New(testQueue(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	fillIndex(s.Index(), 1000, 40)
	h := s.Handler()
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

// The overview over 1,000 results stays under 100 KB, for a pipeline of 40 images
// with 25 runs each and for one of 100 images with 10.
func TestOverviewOf1000ResultsWeighsUnder100KB(t *testing.T) {
	for _, images := range []int{40, 100} {
		s, err := New(testQueue(t), Options{})
		if err != nil {
			t.Fatal(err)
		}
		fillIndex(s.Index(), 1000, images)
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Code != 200 || w.Body.Len() >= 100<<10 {
			t.Errorf("%d images: %d, %d bytes", images, w.Code, w.Body.Len())
		}
		t.Logf("%d images: %d bytes", images, w.Body.Len())
	}
}
