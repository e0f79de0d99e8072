package web

import (
	"context"
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// TestJobPageSaysInspection: the job page says in one line what the offline
// inspection found, and nothing when the job had none.
func TestJobPageSaysInspection(t *testing.T) {
	q := testQueue(t)
	ctx := context.Background()
	r, log := recordedPanic(t)
	if _, err := q.PublishResult(ctx, r, strings.NewReader(log)); err != nil {
		t.Fatal(err)
	}
	r.JobID = "inspected"
	r.Inspection = &jobs.Inspection{Distro: "debian", Version: "13.2", Codename: "trixie", Arch: "x86_64", PackageFormat: "deb",
		Kernels: []string{"6.12.118+deb13-cloud-amd64"}, Packages: make([]jobs.Package, 213)}
	if _, err := q.PublishResult(ctx, r, strings.NewReader(log)); err != nil {
		t.Fatal(err)
	}
	_, url := startServer(t, q)
	want := `<h2>Inspection</h2><p class="meta inspection">debian 13.2 (trixie) x86_64, kernel 6.12.118&#43;deb13-cloud-amd64, 213 deb packages, took 0s</p>`
	if code, body := get(t, url+"/jobs/inspected"); code != 200 || !strings.Contains(body, want) {
		t.Errorf("job page lacks %s", want)
	}
	if code, body := get(t, url+"/jobs/tiny-panic"); code != 200 || strings.Contains(body, "<h2>Inspection</h2>") {
		t.Error("a job without an inspection shows one")
	}
}
