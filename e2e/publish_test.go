package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/publish"
	"github.com/imagevet/imagevet/publish/glancetest"
)

// releaseJob writes fixtures/jobs/NAME as one release of the "tiny" family, asking
// for publication to Glance.
func releaseJob(t *testing.T, name, id, release string, releasedAt time.Time) string {
	t.Helper()
	return editedJob(t, name, id, func(j *jobs.Job) {
		// Three TCG boots in a row on a shared host: generous deadlines (the worker
		// also multiplies boot and cloud-init ones by its TCG factor).
		j.Timeouts.Boot, j.Timeouts.CloudInit, j.Timeouts.Total = jobs.Duration(60*time.Second), jobs.Duration(60*time.Second), jobs.Duration(12*time.Minute)
		j.Publish = jobs.Publication{Name: "Tiny", Family: "tiny", Release: release, ReleasedAt: &releasedAt,
			Glance: true, Visibility: "public", Properties: map[string]string{"os_type": "linux"},
			Rotation: &jobs.Rotation{Keep: 1, Older: jobs.OlderCommunity, ReplaceFrequency: "weekly"}}
	})
}

// TestPublishTwoReleasesToGlance: two releases of a family are vetted by a worker and
// published by the `imagevet publish` service into a real Glance (Keystone auth, from
// Debian's packages); a failing release never reaches it. Both releases are the tiny
// fixture: every TCG boot costs minutes on a loaded host, and what is under test is
// publication and rotation, which only the job ids, releases and digests drive. Nova
// and Cinder are answered by glancetest's loopback stand-in (nothing is deleted here).
func TestPublishTwoReleasesToGlance(t *testing.T) {
	enabled(t)
	besideOthers(t)
	needLibvirt(t)
	fx := fixturesDir(t)
	// Keystone and Glance start before any machine boots: their setup is CPU-heavy,
	// and a TCG boot sharing two cores with it can miss its deadline.
	cloud := glancetest.Start(t)
	url := startNATS(t)
	state := stateDir(t)
	startWorker(t, url, "e2e-publish", "--state-dir", state)

	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	results := map[string]jobs.Result{}
	for _, j := range []struct{ fixture, id, release string }{
		{"tiny.json", "e2e-pub-tiny-r1", "r1"},
		{"tiny-panic.json", "e2e-pub-tiny-r2-panic", "r2"},
		{"tiny.json", "e2e-pub-tiny-r3", "r3"},
	} {
		released := day.AddDate(0, 0, 7*len(results))
		code, out, errOut := run(t, 15*time.Minute, "submit", "--nats", url, "--wait", "--json", "--timeout", "14m",
			releaseJob(t, j.fixture, j.id, j.release, released))
		if code == 3 {
			t.Fatalf("%s: timed out\n%s", j.id, errOut)
		}
		results[j.id] = resultOf(t, out)
	}
	r1, bad, r3 := results["e2e-pub-tiny-r1"], results["e2e-pub-tiny-r2-panic"], results["e2e-pub-tiny-r3"]
	if r1.Verdict != jobs.VerdictPass || r3.Verdict != jobs.VerdictPass || bad.Verdict != jobs.VerdictFail {
		t.Fatalf("verdicts %s %s %s, want pass fail pass; r1: %s %s\n%s", r1.Verdict, bad.Verdict, r3.Verdict,
			r1.FailedCheck, r1.Reason, tail(r1.ConsoleTail, 3000))
	}

	// The publisher shares the worker's state directory: the vetted bytes come from
	// its content-addressed cache. It starts after the verdicts: the results wait in
	// the stream for its durable consumer.
	pub := start(t, 30*time.Second, "publisher", imagevet(t), "publish", "--nats", url,
		"--os-cloud", glancetest.CloudName, "--os-client-config-file", cloud.CloudsFile,
		"--state-dir", state, "--image-root", fx, "--retry-delay", "5s", "--log-level", "debug")

	nc, q := openQueue(t, url)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var rec jobs.Published
	waitFor(t, 4*time.Minute, "the publisher to make r3 Latest", func() bool {
		select {
		case <-pub.done:
			t.Fatalf("publisher exited:\n%s", pub.output())
		default:
		}
		r, ok, err := q.PublishedImage(ctx, "tiny", glancetest.CloudName)
		rec = r
		return err == nil && ok && r.JobID == r3.JobID
	})

	pc, err := cloud.Provider(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := openstack.NewImageV2(pc, gophercloud.EndpointOpts{Region: glancetest.Region})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := images.List(ic, images.ListOpts{Tags: []string{publish.TagImagevet}}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := images.ExtractImages(pages)
	byJob := map[string]images.Image{}
	for _, im := range all {
		id, _ := im.Properties[publish.PropJobID].(string)
		byJob[id] = im
	}
	if len(all) != 2 {
		t.Errorf("Glance holds %d imagevet images, want 2: %v", len(all), byJob)
	}
	if _, ok := byJob[bad.JobID]; ok {
		t.Errorf("the failing release %s reached Glance", bad.JobID)
	}
	latest, older := byJob[r3.JobID], byJob[r1.JobID]
	if latest.ID != rec.ImageID || latest.Name != "Tiny - Latest" || latest.Visibility != "public" || string(latest.Status) != "active" {
		t.Errorf("Latest: %s %q %s %s (record %s)", latest.ID, latest.Name, latest.Visibility, latest.Status, rec.ImageID)
	}
	if older.Name != "Tiny (r1)" || older.Visibility != "community" {
		t.Errorf("older release: %q %s", older.Name, older.Visibility)
	}
	for _, c := range []struct {
		im images.Image
		r  jobs.Result
	}{{latest, r3}, {older, r1}} {
		if got := c.im.Properties["os_hash_value"]; got != c.r.ImageFacts.OSHashValue || c.r.ImageFacts.OSHashValue == "" {
			t.Errorf("%s: Glance os_hash_value %v, vetted %s", c.r.JobID, got, c.r.ImageFacts.OSHashValue)
		}
		if c.im.Properties["hw_firmware_type"] != "bios" || c.im.Properties["hw_machine_type"] != "pc" ||
			c.im.Properties["image_original_user"] != "debian" || c.im.Properties["os_type"] != "linux" {
			t.Errorf("%s: properties %v", c.r.JobID, c.im.Properties)
		}
	}

	// imagevet status shows the family's published image and when.
	code, out, _ := run(t, time.Minute, "status", "--nats", url)
	if code != 0 || !strings.Contains(out, "tiny") || !strings.Contains(out, rec.ImageID) ||
		!strings.Contains(out, rec.PublishedAt.UTC().Format(time.RFC3339)) {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	// One-shot runs: the dry run of a published job plans nothing new; the failing
	// job is refused.
	oneShot := []string{"--nats", url, "--os-cloud", glancetest.CloudName, "--os-client-config-file", cloud.CloudsFile,
		"--state-dir", state, "--image-root", fx}
	code, out, errOut := run(t, 2*time.Minute, append([]string{"publish", "--job", r3.JobID, "--dry-run"}, oneShot...)...)
	if code != 0 || !strings.Contains(out, "planned") || strings.Contains(out, "create") {
		t.Errorf("dry run of a published job: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, 2*time.Minute, append([]string{"publish", "--job", bad.JobID}, oneShot...)...)
	if code != 1 || !strings.Contains(out, "skipped (verdict fail") {
		t.Errorf("one-shot of a failing job: exit %d\n%s%s", code, out, errOut)
	}
}
