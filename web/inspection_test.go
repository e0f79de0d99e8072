package web

import (
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// TestJobPageSaysInspection: the job page says in one line what the offline
// inspection found, and nothing when the job had none.
func TestJobPageSaysInspection(t *testing.T) {
	url := serveRecordedPanic(t, func(r *jobs.Result) {
		r.JobID = "inspected"
		r.Inspection = &jobs.Inspection{Distro: "debian", Version: "13.2", Codename: "trixie", Arch: "x86_64", PackageFormat: "deb",
			Kernels: []string{"6.12.118+deb13-cloud-amd64"}, Packages: make([]jobs.Package, 213)}
	})
	want := `<h2>Inspection</h2><p class="meta inspection">debian 13.2 (trixie) x86_64, kernel 6.12.118&#43;deb13-cloud-amd64, 213 deb packages, took 0s</p>`
	if code, body := get(t, url+"/jobs/inspected"); code != 200 || !strings.Contains(body, want) {
		t.Errorf("job page lacks %s", want)
	}
	if code, body := get(t, url+"/jobs/tiny-panic"); code != 200 || strings.Contains(body, "<h2>Inspection</h2>") {
		t.Error("a job without an inspection shows one")
	}
}
