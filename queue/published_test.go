package queue

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

func TestPublishedRecordRoundTrip(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()

	// Nothing published yet: no bucket, no record, no error.
	if _, ok, err := q.PublishedImage(ctx, "debian-12", ""); err != nil || ok {
		t.Fatalf("before any publication: ok=%v err=%v", ok, err)
	}
	if all, err := q.PublishedImages(ctx); err != nil || len(all) != 0 {
		t.Fatalf("before any publication: %v %v", all, err)
	}

	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	first := jobs.Published{Family: "debian-12", Name: "Debian 12 Bookworm - Latest", ImageID: "img-1", Release: "20261120",
		JobID: "debian-12-20261120", VerdictAt: at, PublishedAt: at.Add(time.Minute), OSHashAlgo: "sha512", OSHashValue: strings.Repeat("a", 128)}
	if err := q.PutPublished(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := first
	second.ImageID, second.Release, second.Replaced = "img-2", "20261127", "img-1"
	if err := q.PutPublished(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := q.PutPublished(ctx, jobs.Published{Family: "ubuntu-24.04", ImageID: "img-3"}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := q.PublishedImage(ctx, "debian-12", "")
	if err != nil || !ok {
		t.Fatalf("read back: ok=%v err=%v", ok, err)
	}
	if got.ImageID != "img-2" || got.Replaced != "img-1" || got.Version != jobs.Version || !got.PublishedAt.Equal(first.PublishedAt) {
		t.Errorf("read back %+v", got)
	}
	all, err := q.PublishedImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Family != "debian-12" || all[1].Family != "ubuntu-24.04" {
		t.Errorf("all records: %+v", all)
	}
	if err := q.PutPublished(ctx, jobs.Published{ImageID: "x"}); err == nil {
		t.Error("a record without a family was accepted")
	}
}

func TestPublicationRecords(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	if _, ok, err := q.Publication(ctx, "debian-12-a", "east"); err != nil || ok {
		t.Fatalf("before any record: ok=%v err=%v", ok, err)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	refused := jobs.PublicationRecord{JobID: "debian-12-a", Family: "debian-12", Cloud: "west", Region: "RegionTwo", State: jobs.PublicationRefused,
		Reason: "cloud west (region RegionTwo): Glance sha512 os_hash_value of image x is b, the verdict was for a", Attempts: 1, UpdatedAt: at}
	done := jobs.PublicationRecord{JobID: "debian-12-a", Family: "debian-12", Cloud: "east", State: jobs.PublicationDone, Outcome: "published",
		ImageID: "img-1", SourceHash: strings.Repeat("c", 128), OSHashValue: strings.Repeat("a", 128), Attempts: 1, UpdatedAt: at}
	for _, p := range []jobs.PublicationRecord{refused, done} {
		if err := q.PutPublication(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := q.Publication(ctx, "debian-12-a", "west")
	if err != nil || !ok || got.State != jobs.PublicationRefused || got.Reason != refused.Reason || got.Version != jobs.Version {
		t.Fatalf("read back %+v %v %v", got, ok, err)
	}
	// An operator's retry overwrites the refusal.
	retried := refused
	retried.State, retried.Reason, retried.Attempts, retried.ImageID = jobs.PublicationDone, "", 2, "img-2"
	if err := q.PutPublication(ctx, retried); err != nil {
		t.Fatal(err)
	}
	all, err := q.Publications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Cloud != "east" || all[1].Cloud != "west" || all[1].State != jobs.PublicationDone || all[1].Attempts != 2 {
		t.Errorf("all records: %+v", all)
	}
	if err := q.PutPublication(ctx, jobs.PublicationRecord{JobID: "x"}); err == nil {
		t.Error("a record without a cloud was accepted")
	}
	// Latest records are per family and cloud.
	for _, c := range []string{"east", "west"} {
		if err := q.PutPublished(ctx, jobs.Published{Family: "debian-12", Cloud: c, ImageID: "img-" + c}); err != nil {
			t.Fatal(err)
		}
	}
	if p, ok, err := q.PublishedImage(ctx, "debian-12", "west"); err != nil || !ok || p.ImageID != "img-west" {
		t.Errorf("west's Latest: %+v %v %v", p, ok, err)
	}
}

// A listing is read again once the bucket changed (a write, a delete), and what it
// returns is the caller's to change.
func TestListingsFollowTheBucket(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	for _, f := range []string{"a", "b"} {
		if err := q.PutPublished(ctx, jobs.Published{Family: f, ImageID: "img-" + f + "-1"}); err != nil {
			t.Fatal(err)
		}
	}
	list := func() []jobs.Published {
		t.Helper()
		all, err := q.PublishedImages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return all
	}
	first := list()
	first[0].ImageID = "changed by the caller"
	if again := list(); len(again) != 2 || again[0].ImageID != "img-a-1" {
		t.Fatalf("second listing: %+v", again)
	}
	if err := q.PutPublished(ctx, jobs.Published{Family: "a", ImageID: "img-a-2"}); err != nil {
		t.Fatal(err)
	}
	if again := list(); len(again) != 2 || again[0].ImageID != "img-a-2" {
		t.Fatalf("after a write: %+v", again)
	}
	kv, err := q.publishedBucket(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, PublishedKey("b", "")); err != nil {
		t.Fatal(err)
	}
	if again := list(); len(again) != 1 || again[0].Family != "a" {
		t.Fatalf("after a delete: %+v", again)
	}
}

// A family's release history lists each record written, oldest first.
func TestReleaseHistory(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()
	if h, err := q.ReleaseHistory(ctx, "debian-12"); err != nil || len(h) != 0 {
		t.Fatalf("before any watcher: %v %v", h, err)
	}
	kv, err := q.ReleasesBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i, rel := range []string{"20261120", "20261127", "20261127"} {
		data, _ := json.Marshal(jobs.ReleaseRecord{Version: jobs.Version, Family: "debian-12", Release: rel, FirstSeen: at.Add(time.Duration(i) * time.Hour)})
		if _, err := kv.Put(ctx, "debian-12", data); err != nil {
			t.Fatal(err)
		}
	}
	h, err := q.ReleaseHistory(ctx, "debian-12")
	if err != nil || len(h) != 3 || h[0].Release != "20261120" || h[2].Release != "20261127" || !h[1].FirstSeen.Equal(at.Add(time.Hour)) {
		t.Errorf("history %+v %v", h, err)
	}
	if h, err := q.ReleaseHistory(ctx, "ubuntu-24.04"); err != nil || len(h) != 0 {
		t.Errorf("unknown family: %v %v", h, err)
	}
}
