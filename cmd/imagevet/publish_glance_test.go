package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/publish/glancetest"
	"github.com/imagevet/imagevet/queue/queuetest"
)

// TestPublishJobToTwoRegions drives imagevet publish and imagevet status against two
// regions of a real Keystone, each with its own Glance (RegionTwo's converts imports
// to raw and its catalog has only identity and image): one raw job published in both,
// one whose recorded raw hash is wrong refused in both, shown by status with its
// reason, and retried in one cloud.
func TestPublishJobToTwoRegions(t *testing.T) {
	if testing.Short() || os.Getenv("IMAGEVET_INTEGRATION") != "1" {
		t.Skip("starts Keystone and two Glances from Debian's packages: set IMAGEVET_INTEGRATION=1, not in -short mode")
	}
	cloud := glancetest.StartRegions(t, glancetest.RegionSpec{Name: "RegionOne"},
		glancetest.RegionSpec{Name: "RegionTwo", Convert: true, ImageOnly: true})
	url := queuetest.Server(t)
	q, _ := queuetest.On(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dir := t.TempDir()
	released := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	result := func(id, release string, f *jobs.ImageFacts) jobs.Result {
		return jobs.Result{Version: jobs.Version, JobID: id, Verdict: jobs.VerdictPass, Worker: "w1", Attempt: 1,
			StartedAt: released.Add(time.Hour), FinishedAt: released.Add(2 * time.Hour), ImageFacts: f,
			Publish: jobs.Publication{Name: "Testix 1", Family: "testix-1", Release: release, ReleasedAt: &released,
				Glance: true, Visibility: "public", DiskFormat: jobs.FormatRaw}}
	}
	good := result("testix-1-a", "r1", glancetest.RawOfVendor(t, dir, "va", "64M"))
	badFacts := *glancetest.RawOfVendor(t, dir, "vb", "65M")
	badFacts.OSHashValue = strings.Repeat("0", 128)
	bad := result("testix-1-b", "r2", &badFacts)
	for _, r := range []jobs.Result{good, bad} {
		if _, err := q.PublishResult(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"--nats", url, "--os-cloud", "east=" + glancetest.CloudName + "@RegionOne",
		"--os-cloud", "west=" + glancetest.CloudName + "@RegionTwo", "--os-client-config-file", cloud.CloudsFile,
		"--state-dir", t.TempDir(), "--image-root", dir, "--import-converts", "west=yes"}

	code, out, errOut := runCmd(t, cmdPublish, append([]string{"--job", good.JobID}, args...)...)
	if code != exitPass || !strings.Contains(out, good.JobID+" in east (RegionOne): published") ||
		!strings.Contains(out, good.JobID+" in west (RegionTwo): published") {
		t.Fatalf("publish --job to both regions: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, cmdPublish, append([]string{"--job", bad.JobID}, args...)...)
	if code != exitError || !strings.Contains(errOut, "cloud east (region RegionOne): ") ||
		!strings.Contains(errOut, "cloud west (region RegionTwo): ") || !strings.Contains(errOut, "the verdict was for "+badFacts.OSHashValue) {
		t.Errorf("publish --job of wrong bytes: exit %d\n%s%s", code, out, errOut)
	}

	code, out, _ = runCmd(t, cmdStatus, "--nats", url)
	for _, want := range []string{
		`(?m)^testix-1 +east \(RegionOne\) +\S+ +Testix 1 - Latest +r1 +testix-1-a `,
		`(?m)^testix-1 +west \(RegionTwo\) +\S+ +Testix 1 - Latest +r1 +testix-1-a `,
		`(?m)^testix-1 +west +` + good.ImageFacts.Vendor.SHA512 + ` +` + good.ImageFacts.OSHashValue,
		`(?m)^testix-1-b +east \(RegionOne\) +refused +1 .*sha512 of `,
		`(?m)^testix-1-b +west \(RegionTwo\) +refused +1 .*Glance's conversion of the vetted qcow2 to raw`,
		`(?m)^a refused publication is tried again by: imagevet publish --job JOB-ID`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("status lacks %s:\n%s", want, out)
		}
	}
	// An operator's retry in one cloud: refused again (same bytes), counted there only.
	if code, out, errOut := runCmd(t, cmdPublish, append([]string{"--job", bad.JobID, "--cloud", "west"}, args...)...); code != exitError || strings.Contains(errOut, "cloud east") {
		t.Errorf("retry in west: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, cmdStatus, "--nats", url, "--job", bad.JobID)
	if code != exitPass || !regexp.MustCompile(`(?m)^testix-1-b +west \(RegionTwo\) +refused +2 `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^testix-1-b +east \(RegionOne\) +refused +1 `).MatchString(out) {
		t.Errorf("status --job after the retry: exit %d\n%s", code, out)
	}
}
