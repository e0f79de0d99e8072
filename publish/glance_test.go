package publish

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/publish/glancetest"

	"github.com/imagevet/imagevet/queue"
	"github.com/imagevet/imagevet/queue/queuetest"
)

// integration gates the tests that start a real Keystone and Glance.
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() || os.Getenv("IMAGEVET_INTEGRATION") != "1" {
		t.Skip("starts Keystone and Glance from Debian's packages: set IMAGEVET_INTEGRATION=1, not in -short mode")
	}
}

// qcow2 makes a small, valid qcow2 file whose bytes differ by virtual size, and
// returns the facts a worker would have reported for it.
func qcow2(t *testing.T, dir, name, size string) *jobs.ImageFacts {
	t.Helper()
	path := filepath.Join(dir, name)
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", path, size).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
	return &jobs.ImageFacts{Size: int64(len(data)), VirtualSize: 64 << 20, Format: "qcow2",
		SHA256: hex.EncodeToString(s256[:]), OSHashAlgo: "sha512", OSHashValue: hex.EncodeToString(s512[:]),
		Source: path, VendorDigest: "sha512:" + hex.EncodeToString(s512[:])}
}

func passed(id, release string, released time.Time, f *jobs.ImageFacts, rot *jobs.Rotation) jobs.Result {
	return jobs.Result{Version: jobs.Version, JobID: id, Verdict: jobs.VerdictPass, Worker: "w1", Attempt: 1,
		StartedAt: released.Add(time.Hour), FinishedAt: released.Add(2 * time.Hour), ImageFacts: f,
		VettedWith: &jobs.VettedMachine{Firmware: "uefi", Type: "q35", DiskBus: "virtio", MemoryMiB: 1024, User: "debian"},
		Publish: jobs.Publication{Name: "Testix 1", Family: "testix-1", Release: release, ReleasedAt: &released,
			Glance: true, Visibility: "public", Rotation: rot, Properties: map[string]string{"architecture": "x86_64"}}}
}

func embeddedQueue(t *testing.T) *queue.Queue {
	t.Helper()
	q, _ := queuetest.Queue(t)
	return q
}

// TestGlancePublishRotateRetire publishes three releases of a family into a real
// Glance (Keystone auth, glance-direct import), with the in-use check answered by
// glancetest.Answerer (a loopback stand-in for Nova and Cinder).
func TestGlancePublishRotateRetire(t *testing.T) {
	integration(t)
	t.Parallel() // its own Keystone and Glance in a temporary directory, on free loopback ports
	start := time.Now()
	cloud := glancetest.Start(t)
	t.Logf("keystone and glance up in %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dir := t.TempDir()
	store, err := image.NewStore(image.StoreConfig{Dir: filepath.Join(dir, "cache"), FileRoots: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Login(ctx, Credentials{Cloud: glancetest.CloudName, CloudsFile: cloud.CloudsFile})
	if err != nil {
		t.Fatal(err)
	}
	q := embeddedQueue(t)
	p, err := New(Config{Cloud: c, Store: store, Queue: q, PollEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rot := &jobs.Rotation{Keep: 1, Older: jobs.OlderCommunity, DeleteUnused: true, ReplaceFrequency: "weekly", UUIDValidity: "last-3"}
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	r1 := passed("testix-1-a", "20261120", day, qcow2(t, dir, "a.qcow2", "64M"), rot)
	r2 := passed("testix-1-b", "20261127", day.AddDate(0, 0, 7), qcow2(t, dir, "b.qcow2", "65M"), rot)
	r3 := passed("testix-1-c", "20261204", day.AddDate(0, 0, 14), qcow2(t, dir, "c.qcow2", "66M"), rot)

	family := func() map[string]images.Image {
		t.Helper()
		return familyImages(t, ctx, c, "testix-1", false)
	}
	publish := func(r jobs.Result, dry bool, want string) Outcome {
		t.Helper()
		out, err := p.Publish(ctx, r, dry)
		if err != nil {
			t.Fatalf("publish %s: %v", r.JobID, err)
		}
		if out.Status != want || len(out.Problems) > 0 {
			t.Fatalf("publish %s: %+v, want status %s", r.JobID, out, want)
		}
		return out
	}

	// A fail never reaches Glance.
	bad := r1
	bad.JobID, bad.Verdict, bad.FailedCheck = "testix-1-bad", jobs.VerdictFail, jobs.CheckSSH
	publish(bad, false, StatusSkipped)

	// First release: Latest, public, Glance's sha512 is the vetted one, properties set.
	o1 := publish(r1, false, StatusPublished)
	fam := family()
	im1 := fam[r1.JobID]
	if len(fam) != 1 || im1.ID != o1.ImageID || im1.Name != "Testix 1 - Latest" || im1.Visibility != "public" || string(im1.Status) != "active" {
		t.Fatalf("after the first release: %+v", fam)
	}
	if im1.Properties["os_hash_value"] != r1.ImageFacts.OSHashValue || im1.Properties["os_hash_algo"] != "sha512" {
		t.Errorf("Glance hash %v %v, vetted %s", im1.Properties["os_hash_algo"], im1.Properties["os_hash_value"], r1.ImageFacts.OSHashValue)
	}
	for k, want := range map[string]string{"hw_firmware_type": "uefi", "hw_machine_type": "q35", "hw_disk_bus": "virtio",
		"os_distro": "testix", "os_version": "1", "image_source": r1.ImageFacts.Source, "image_build_date": "2026-11-20",
		"image_original_user": "debian", "replace_frequency": "weekly", "uuid_validity": "last-3", "provided_until": "none",
		"architecture": "x86_64", PropJobID: r1.JobID, PropVendorDigest: r1.ImageFacts.VendorDigest} {
		if got, _ := im1.Properties[k].(string); got != want {
			t.Errorf("property %s = %q, want %q", k, got, want)
		}
	}
	if im1.MinDiskGigabytes != 1 || im1.DiskFormat != "qcow2" || im1.ContainerFormat != "bare" {
		t.Errorf("min_disk %d disk_format %s container_format %s", im1.MinDiskGigabytes, im1.DiskFormat, im1.ContainerFormat)
	}
	rec, ok, err := q.PublishedImage(ctx, "testix-1", c.Name)
	if err != nil || !ok || rec.ImageID != im1.ID || rec.JobID != r1.JobID || rec.OSHashValue != r1.ImageFacts.OSHashValue {
		t.Fatalf("published record %+v %v %v", rec, ok, err)
	}

	// The same job again (a redelivery, a second publisher): no second image.
	publish(r1, false, StatusAlready)
	if n := len(family()); n != 1 {
		t.Fatalf("a rerun made %d images", n)
	}

	// A crash left an unfinished upload behind; the dry run plans its cleanup and the
	// second release, and changes nothing.
	vis := images.ImageVisibilityPrivate
	left, err := images.Create(ctx, c.Image, images.CreateOpts{Name: "Testix 1 (crashed)", DiskFormat: "qcow2", ContainerFormat: "bare",
		Visibility: &vis, Tags: []string{TagImagevet}, Properties: map[string]string{PropFamily: "testix-1", PropJobID: "testix-1-crashed"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	dry := publish(r2, true, StatusPlanned)
	var kinds []string
	for _, a := range dry.Plan {
		kinds = append(kinds, a.Kind)
	}
	if got := strings.Join(kinds, ","); got != "create,cleanup,retire,latest" {
		t.Errorf("dry-run plan %s:\n%v", got, dry.Plan)
	}
	if fam := family(); len(fam) != 2 || fam[r1.JobID].Name != "Testix 1 - Latest" {
		t.Fatalf("the dry run changed Glance: %+v", fam)
	}

	// Second release: Latest; the first is community under its dated name.
	o2 := publish(r2, false, StatusPublished)
	t.Logf("second release plan:\n%s", planString(o2.Plan))
	fam = family()
	if _, ok := fam["testix-1-crashed"]; ok || len(fam) != 2 {
		t.Errorf("the unfinished upload %s is still there: %+v", left.ID, fam)
	}
	if im := fam[r2.JobID]; im.ID != o2.ImageID || im.Name != "Testix 1 - Latest" || im.Visibility != "public" {
		t.Errorf("second release: %+v", im)
	}
	if im := fam[r1.JobID]; im.Name != "Testix 1 (20261120)" || im.Visibility != "community" || string(im.Status) != "active" {
		t.Errorf("first release after rotation: %s %s %s", im.Name, im.Visibility, im.Status)
	}
	if rec, _, _ := q.PublishedImage(ctx, "testix-1", c.Name); rec.ImageID != o2.ImageID || rec.Replaced != o1.ImageID {
		t.Errorf("published record after the second release: %+v", rec)
	}

	// Third release while a volume still uses the first: the first is past the
	// policy (keep 1), deactivated, and kept.
	cloud.Usage.UseByVolume(o1.ImageID, "vol-1")
	o3 := publish(r3, false, StatusPublished)
	fam = family()
	if im := fam[r1.JobID]; string(im.Status) != "deactivated" || len(o3.Kept) != 1 || !strings.Contains(o3.Kept[0], "volume vol-1") {
		t.Errorf("first release in use: status %s, kept %v", im.Status, o3.Kept)
	}
	if im := fam[r2.JobID]; im.Name != "Testix 1 (20261127)" || im.Visibility != "community" {
		t.Errorf("second release after the third: %s %s", im.Name, im.Visibility)
	}
	if cloud.Usage.Requests("/volume/v3/volumes/detail") == 0 || cloud.Usage.Requests("/compute/v2.1/servers/detail") == 0 {
		t.Error("the in-use check asked neither Nova nor Cinder")
	}
	// Once nothing uses it, the next run deletes it.
	cloud.Usage.Release(o1.ImageID)
	publish(r3, false, StatusAlready)
	if fam := family(); len(fam) != 2 || fam[r3.JobID].Name != "Testix 1 - Latest" {
		t.Errorf("after the retirement: %+v", fam)
	}
	// The first release's result again: superseded, nothing uploaded.
	publish(r1, false, StatusSuperseded)
	if n := len(family()); n != 2 {
		t.Errorf("a superseded release was uploaded: %d images", n)
	}

	// Bytes that are not the vetted ones never reach Glance.
	wrong := passed("testix-1-d", "20261211", day.AddDate(0, 0, 21), qcow2(t, dir, "d.qcow2", "67M"), rot)
	wrong.ImageFacts.SHA256 = strings.Repeat("0", 64)
	_, err = p.Publish(ctx, wrong, false)
	var me *MismatchError
	if !errors.As(err, &me) || Retryable(err) {
		t.Errorf("wrong sha256: %v", err)
	}
	if n := len(family()); n != 2 {
		t.Errorf("an image with the wrong bytes was left in Glance: %d images", n)
	}

	// The service: results already in the stream (a fail, then a new release) are
	// replayed to its durable consumer; the fail is acknowledged unpublished, the
	// release becomes Latest.
	r5 := passed("testix-1-e", "20261218", day.AddDate(0, 0, 28), qcow2(t, dir, "e.qcow2", "68M"), rot)
	failed := r5
	failed.JobID, failed.Verdict = "testix-1-e-fail", jobs.VerdictFail
	for _, r := range []jobs.Result{failed, r5} {
		if _, err := q.PublishResult(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- Serve(sctx, q, FleetOf(p), ServiceConfig{RetryDelay: time.Second}) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rec, ok, err := q.PublishedImage(ctx, "testix-1", c.Name)
		if err == nil && ok && rec.JobID == r5.JobID {
			break
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("the service did not publish %s: record %+v %v", r5.JobID, rec, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	fam = family()
	if _, ok := fam[failed.JobID]; ok || fam[r5.JobID].Name != "Testix 1 - Latest" || fam[r3.JobID].Name != "Testix 1 (20261204)" {
		t.Errorf("after the service: %+v", fam)
	}

	// Two publishers (a service and a one-shot run, two services on two hosts) given
	// the same new release at once: the family lease makes them take turns, so one
	// uploads and the other finds the image there.
	// The third release goes past the policy with this one, but a volume uses it.
	cloud.Usage.UseByVolume(o3.ImageID, "vol-3")
	r6 := passed("testix-1-f", "20261225", day.AddDate(0, 0, 35), qcow2(t, dir, "f.qcow2", "69M"), rot)
	p2, err := New(Config{Cloud: c, Store: store, Queue: q, PollEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		o   Outcome
		err error
	}
	both := make(chan outcome, 2)
	for _, pub := range []*Publisher{p, p2} {
		go func() {
			o, err := pub.Publish(ctx, r6, false)
			both <- outcome{o, err}
		}()
	}
	var statuses []string
	for range 2 {
		got := <-both
		if got.err != nil {
			t.Fatalf("concurrent publication: %v", got.err)
		}
		statuses = append(statuses, got.o.Status)
	}
	slices.Sort(statuses)
	if !slices.Equal(statuses, []string{StatusAlready, StatusPublished}) {
		t.Errorf("two publishers at once: %v, want one published and one already", statuses)
	}
	n := 0
	for _, im := range family() {
		if im.Properties[PropJobID] == r6.JobID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("two publishers at once made %d images of one job", n)
	}
	if im, ok := family()[r3.JobID]; !ok || string(im.Status) != "deactivated" {
		t.Fatalf("the third release, in use, should be kept deactivated: %+v", im)
	}

	// The service takes r6's result (still in use: kept), then the third release's
	// last user goes away and no release follows: the service's periodic rotation
	// deletes it without waiting for the next release.
	if _, err := q.PublishResult(ctx, r6, nil); err != nil {
		t.Fatal(err)
	}
	sctx, stop = context.WithCancel(ctx)
	go func() {
		served <- Serve(sctx, q, FleetOf(p), ServiceConfig{RetryDelay: time.Second, RotateEvery: 2 * time.Second})
	}()
	deadline = time.Now().Add(time.Minute)
	for {
		info, err := q.ResultsConsumerInfo(ctx, ConsumerPublishers)
		if err == nil {
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Stream > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatal("the service never took r6's result")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok := family()[r3.JobID]; !ok {
		t.Fatal("the third release was deleted while a volume used it")
	}
	cloud.Usage.Release(o3.ImageID)
	deadline = time.Now().Add(time.Minute)
	for {
		if _, ok := family()[r3.JobID]; !ok {
			break
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatal("the periodic rotation never deleted the unused third release")
		}
		time.Sleep(500 * time.Millisecond)
	}
	stop()
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}

	// A family whose policy hides older releases: the release a new one replaces
	// keeps its visibility under its dated name and is listed only when hidden
	// images are asked for (os_hidden).
	hide := &jobs.Rotation{Keep: 2, Older: jobs.OlderHidden, ReplaceFrequency: "monthly", UUIDValidity: "none"}
	h1 := passed("testix-2-a", "20261101", day, qcow2(t, dir, "h1.qcow2", "70M"), hide)
	h2 := passed("testix-2-b", "20261201", day.AddDate(0, 1, 0), qcow2(t, dir, "h2.qcow2", "71M"), hide)
	for _, r := range []*jobs.Result{&h1, &h2} {
		r.Publish.Name, r.Publish.Family = "Testix 2", "testix-2"
	}
	publish(h1, false, StatusPublished)
	publish(h2, false, StatusPublished)
	shown, hidden := familyImages(t, ctx, c, "testix-2", false), familyImages(t, ctx, c, "testix-2", true)
	if im, ok := shown[h2.JobID]; !ok || im.Name != "Testix 2 - Latest" || im.Hidden || len(shown) != 1 {
		t.Errorf("listed images of the hiding family: %+v", shown)
	}
	if im, ok := hidden[h1.JobID]; !ok || !im.Hidden || im.Name != "Testix 2 (20261101)" || im.Visibility != "public" {
		t.Errorf("the replaced release should be hidden, public, under its dated name: %+v", hidden)
	}

	// A plain upload (a cloud whose import is off or broken) publishes the same bytes:
	// Glance's own sha512 is the vetted one.
	plain, err := New(Config{Cloud: c, Store: store, Queue: q, UploadMethod: UploadPlain, PollEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	u1 := passed("testix-3-a", "20261101", day, qcow2(t, dir, "u1.qcow2", "72M"), rot)
	u1.Publish.Name, u1.Publish.Family = "Testix 3", "testix-3"
	if out, err := plain.Publish(ctx, u1, false); err != nil || out.Status != StatusPublished {
		t.Fatalf("plain upload: %+v %v", out, err)
	}
	if im := familyImages(t, ctx, c, "testix-3", false)[u1.JobID]; im.Name != "Testix 3 - Latest" ||
		im.Properties["os_hash_value"] != u1.ImageFacts.OSHashValue || string(im.Status) != "active" {
		t.Errorf("plain upload in Glance: %s %s %v", im.Name, im.Status, im.Properties["os_hash_value"])
	}
}

// familyImages lists a family's images in Glance by job id: the listed ones, or with
// hidden those listed only when asked for (os_hidden).
func familyImages(t *testing.T, ctx context.Context, c *Cloud, family string, hidden bool) map[string]images.Image {
	t.Helper()
	pages, err := images.List(c.Image, hiddenQuery{familyQuery{family: family}, hidden}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := images.ExtractImages(pages)
	out := map[string]images.Image{}
	for _, im := range all {
		out[im.Properties[PropJobID].(string)] = im
	}
	return out
}
