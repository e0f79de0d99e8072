package publish

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/publish/glancetest"
)

// TestGlanceRegionsRawAndConversion publishes to two regions of one Keystone, each
// with its own Glance: RegionOne plain, with Nova and Cinder in its catalog (the
// Answerer); RegionTwo with Glance's image_conversion import plugin (raw output) and
// only identity and image in its catalog. The publisher logs in to RegionOne with a
// Keystone v3 openrc and to RegionTwo with a Horizon openrc, both sourced by bash. A
// third cloud is down and retried without holding the others back.
func TestGlanceRegionsRawAndConversion(t *testing.T) {
	integration(t)
	t.Parallel() // its own Keystone and Glance in a temporary directory, on free loopback ports
	start := time.Now()
	cloud := glancetest.StartRegions(t, glancetest.RegionSpec{Name: "RegionOne"},
		glancetest.RegionSpec{Name: "RegionTwo", Convert: true, ImageOnly: true})
	t.Logf("keystone and two glances up in %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	pc, err := cloud.Provider(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idc, err := openstack.NewIdentityV3(pc, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := projects.List(idc, projects.ListOpts{Name: glancetest.Admin}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	projs, err := projects.ExtractProjects(pages)
	if err != nil || len(projs) != 1 {
		t.Fatalf("admin project: %v %v", projs, err)
	}
	ks := sourceOpenrc(t, keystoneOpenrc, "", map[string]string{"@AUTH@": cloud.KeystoneURL, "@PASSWORD@": glancetest.Password})
	hz := sourceOpenrc(t, strings.Replace(horizonOpenrc, "RegionOne", "RegionTwo", 1), glancetest.Password+"\n",
		map[string]string{"@AUTH@": cloud.KeystoneURL, "@PROJECT_ID@": projs[0].ID})
	down := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(down, []byte("clouds:\n  down:\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n      username: a\n      password: b\n      project_name: p\n      user_domain_id: default\n      project_domain_id: default\n    region_name: RegionOne\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	store, err := image.NewStore(image.StoreConfig{Dir: filepath.Join(dir, "cache"), FileRoots: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	q := embeddedQueue(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), nil))
	fleet, err := NewFleet(Config{Store: store, Queue: q, PollEvery: 200 * time.Millisecond, Logger: log}, []Credentials{
		{Name: "one", Region: "RegionOne", Getenv: func(k string) string { return ks[k] }},
		{Name: "two", Getenv: func(k string) string { return hz[k] }},
		{Name: "down", Cloud: "down", CloudsFile: down, RequestTimeout: 5 * time.Second},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	two, err := fleet.Publisher(ctx, "two")
	if err != nil {
		t.Fatalf("Horizon openrc login: %v", err)
	}
	if c := two.Cloud(); c.Region != "RegionTwo" || c.Compute != nil || c.Volume != nil {
		t.Fatalf("RegionTwo's catalog has only identity and image: %+v", c)
	}

	rot := &jobs.Rotation{Keep: 0, Older: jobs.OlderCommunity, DeleteUnused: true, ReplaceFrequency: "weekly", UUIDValidity: "none"}
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	r1 := passed("testix-1-a", "r1", day, glancetest.RawOfVendor(t, dir, "va", "64M"), rot)
	r2 := passed("testix-1-b", "r2", day.AddDate(0, 0, 7), glancetest.RawOfVendor(t, dir, "vb", "65M"), rot)
	for _, r := range []*jobs.Result{&r1, &r2} {
		r.Publish.DiskFormat = jobs.FormatRaw
	}
	// The qcow2 family, published as the vendor's file.
	qf := qcow2(t, dir, "q1.qcow2", "66M")
	q1 := passed("testix-2-a", "q1", day, qf, rot)
	q1.Publish.Name, q1.Publish.Family = "Testix 2", "testix-2"

	publishAll := func(r jobs.Result) map[string]CloudOutcome {
		t.Helper()
		out := map[string]CloudOutcome{}
		for _, o := range fleet.PublishTo(ctx, q, r, fleet.Selected(r), false, true, time.Minute) {
			out[o.Cloud] = o
		}
		for _, name := range []string{"one", "two"} {
			if o := out[name]; o.Err != nil || o.Status != StatusPublished || o.Record == nil || o.Record.State != jobs.PublicationDone {
				t.Fatalf("publish %s to %s: %+v %v", r.JobID, name, o.Outcome, o.Err)
			}
		}
		if o := out["down"]; o.Err == nil || !o.Retryable || o.Record == nil || o.Record.State != jobs.PublicationRetrying ||
			!strings.Contains(o.Record.Reason, "cloud down (region RegionOne)") {
			t.Fatalf("the cloud that is down: %+v %v", o.Record, o.Err)
		}
		return out
	}

	// First raw release: uploaded raw to both regions (RegionTwo's conversion is not
	// known yet; a raw import is not converted).
	publishAll(r1)
	// The qcow2 release on RegionTwo: its import comes back raw, the publisher learns
	// that this Glance converts, and uploads the qcow2 plainly instead.
	publishAll(q1)
	if !strings.Contains(logs.String(), "this cloud converts imported images") {
		t.Error("RegionTwo's conversion was not learnt")
	}
	// Second raw release: RegionTwo imports the vetted qcow2, Glance converts it, and
	// its os_hash_value must be the raw's sha512 the worker recorded.
	publishAll(r2)
	// Second qcow2 release: uploaded plainly where Glance converts imports (known now),
	// so it stays qcow2; the first retires in both regions.
	q2 := passed("testix-2-b", "q2", day.AddDate(0, 0, 7), qcow2(t, dir, "q2.qcow2", "67M"), rot)
	q2.Publish.Name, q2.Publish.Family = "Testix 2", "testix-2"
	publishAll(q2)
	if !strings.Contains(logs.String(), "converted_by_glance=true") {
		t.Error("RegionTwo did not get the qcow2 to convert")
	}

	for _, region := range []string{"RegionOne", "RegionTwo"} {
		ic, err := openstack.NewImageV2(pc, gophercloud.EndpointOpts{Region: region})
		if err != nil {
			t.Fatal(err)
		}
		fam := familyImagesIn(t, ctx, ic, "testix-1")
		latest, older := fam[r2.JobID], fam[r1.JobID]
		if latest.Name != "Testix 1 - Latest" || latest.DiskFormat != "raw" || string(latest.Status) != "active" || latest.Visibility != "public" {
			t.Errorf("%s Latest: %s %s %s %s", region, latest.Name, latest.DiskFormat, latest.Status, latest.Visibility)
		}
		for _, c := range []struct {
			im images.Image
			f  *jobs.ImageFacts
		}{{latest, r2.ImageFacts}, {older, r1.ImageFacts}} {
			if c.im.ID == "" {
				continue
			}
			raw := filepath.Join(t.TempDir(), "raw")
			if out, err := exec.Command("qemu-img", "convert", "-O", "raw", c.f.Source, raw).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			if got := c.im.Properties["os_hash_value"]; got != glancetest.SHA512Sum(t, raw) {
				t.Errorf("%s %s: os_hash_value %v is not sha512sum of qemu-img convert -O raw", region, c.im.Name, got)
			}
			if got := c.im.Properties[PropSourceHash]; got != glancetest.SHA512Sum(t, c.f.Source) {
				t.Errorf("%s %s: source_hash %v is not sha512sum of the vendor file", region, c.im.Name, got)
			}
			if c.im.Properties[PropSourceURL] != c.f.Source || c.im.DiskFormat != "raw" {
				t.Errorf("%s %s: source_url %v, disk_format %s", region, c.im.Name, c.im.Properties[PropSourceURL], c.im.DiskFormat)
			}
		}
		qfam := familyImagesIn(t, ctx, ic, "testix-2")
		for _, r := range []jobs.Result{q1, q2} {
			qim := qfam[r.JobID]
			if qim.ID == "" && r.JobID == q1.JobID {
				continue // past the policy and unused: deleted where usage can be checked
			}
			if qim.DiskFormat != "qcow2" || qim.Properties["os_hash_value"] != glancetest.SHA512Sum(t, r.ImageFacts.Source) || qim.Properties[PropSourceHash] != r.ImageFacts.OSHashValue {
				t.Errorf("%s qcow2 image %s: %s %v %v", region, r.JobID, qim.DiskFormat, qim.Properties["os_hash_value"], qim.Properties[PropSourceHash])
			}
		}
		if qfam[q2.JobID].Name != "Testix 2 - Latest" || (qfam[q1.JobID].ID != "" && qfam[q1.JobID].Name != "Testix 2 (q1)") {
			t.Errorf("%s qcow2 rotation: %q, %q", region, qfam[q2.JobID].Name, qfam[q1.JobID].Name)
		}
		rec, ok, err := q.PublishedImage(ctx, "testix-1", map[string]string{"RegionOne": "one", "RegionTwo": "two"}[region])
		if err != nil || !ok || rec.ImageID != latest.ID || rec.Region != region || rec.SourceHash != r2.ImageFacts.Vendor.SHA512 ||
			rec.OSHashValue != r2.ImageFacts.OSHashValue {
			t.Errorf("%s published record: %+v %v %v", region, rec, ok, err)
		}
	}
	// Retirement (keep 0, delete unused): RegionOne asks Nova and Cinder and deletes
	// the first release; RegionTwo cannot ask, so it keeps it, deactivated, and says so.
	if _, ok := familyImages(t, ctx, fleetCloud(t, ctx, fleet, "one"), "testix-1", false)[r1.JobID]; ok {
		t.Error("RegionOne kept the unused first release")
	}
	im, ok := familyImages(t, ctx, two.Cloud(), "testix-1", false)[r1.JobID]
	if !ok || string(im.Status) != "deactivated" || im.Name != "Testix 1 (r1)" {
		t.Errorf("RegionTwo's first release: %v %s %s", ok, im.Status, im.Name)
	}
	again, err := two.Publish(ctx, r2, false)
	if err != nil || len(again.Kept) != 1 || !strings.Contains(again.Kept[0], "its use cannot be checked: the catalog has no compute and no block storage service") || len(again.Problems) != 0 {
		t.Errorf("RegionTwo's retirement: %+v %v", again, err)
	}
	// A dry run on the image-only region works too.
	if dry, err := two.Publish(ctx, r2, true); err != nil || dry.Status != StatusPlanned {
		t.Errorf("dry run on RegionTwo: %+v %v", dry, err)
	}

	// A raw whose recorded sha512 is not what the vendor file converts to: RegionOne's
	// cache conversion does not match before upload, RegionTwo's Glance conversion
	// after; both refused, recorded with the reason, and nothing left in Glance.
	bad := passed("testix-1-c", "r3", day.AddDate(0, 0, 14), glancetest.RawOfVendor(t, dir, "vc", "67M"), rot)
	bad.Publish.DiskFormat = jobs.FormatRaw
	bad.ImageFacts.OSHashValue = strings.Repeat("0", 128)
	for _, o := range fleet.PublishTo(ctx, q, bad, []string{"one", "two"}, false, true, time.Minute) {
		if o.Err == nil || o.Retryable || o.Record == nil || o.Record.State != jobs.PublicationRefused || !strings.Contains(o.Record.Reason, "the verdict was for "+bad.ImageFacts.OSHashValue) {
			t.Errorf("%s: wrong raw hash: %+v %v", o.Cloud, o.Record, o.Err)
		}
	}
	if rec, _, _ := q.Publication(ctx, bad.JobID, "two"); !strings.Contains(rec.Reason, "Glance's conversion of the vetted qcow2 to raw") {
		t.Errorf("RegionTwo's refusal does not say Glance converted: %q", rec.Reason)
	}
	for _, c := range []*Cloud{fleetCloud(t, ctx, fleet, "one"), two.Cloud()} {
		if _, ok := familyImages(t, ctx, c, "testix-1", true)[bad.JobID]; ok {
			t.Errorf("%s kept the refused image", c)
		}
	}
}

// fleetCloud returns one cloud of the fleet.
func fleetCloud(t *testing.T, ctx context.Context, f *Fleet, name string) *Cloud {
	t.Helper()
	p, err := f.Publisher(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return p.Cloud()
}

// familyImagesIn lists a family's images, hidden ones too, by job id.
func familyImagesIn(t *testing.T, ctx context.Context, ic *gophercloud.ServiceClient, family string) map[string]images.Image {
	t.Helper()
	out := familyImages(t, ctx, &Cloud{Image: ic}, family, false)
	for k, v := range familyImages(t, ctx, &Cloud{Image: ic}, family, true) {
		out[k] = v
	}
	return out
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
