package jobs

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestPublishedRecordRoundTrip(t *testing.T) {
	q, _ := testQueue(t)
	ctx := context.Background()

	// Nothing published yet: no bucket, no record, no error.
	if _, ok, err := q.PublishedImage(ctx, "debian-12"); err != nil || ok {
		t.Fatalf("before any publication: ok=%v err=%v", ok, err)
	}
	if all, err := q.PublishedImages(ctx); err != nil || len(all) != 0 {
		t.Fatalf("before any publication: %v %v", all, err)
	}

	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	first := Published{Family: "debian-12", Name: "Debian 12 Bookworm - Latest", ImageID: "img-1", Release: "20261120",
		JobID: "debian-12-20261120", VerdictAt: at, PublishedAt: at.Add(time.Minute), OSHashAlgo: "sha512", OSHashValue: strings.Repeat("a", 128)}
	if err := q.PutPublished(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := first
	second.ImageID, second.Release, second.Replaced = "img-2", "20261127", "img-1"
	if err := q.PutPublished(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := q.PutPublished(ctx, Published{Family: "ubuntu-24.04", ImageID: "img-3"}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := q.PublishedImage(ctx, "debian-12")
	if err != nil || !ok {
		t.Fatalf("read back: ok=%v err=%v", ok, err)
	}
	if got.ImageID != "img-2" || got.Replaced != "img-1" || got.Version != Version || !got.PublishedAt.Equal(first.PublishedAt) {
		t.Errorf("read back %+v", got)
	}
	all, err := q.PublishedImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Family != "debian-12" || all[1].Family != "ubuntu-24.04" {
		t.Errorf("all records: %+v", all)
	}
	if err := q.PutPublished(ctx, Published{ImageID: "x"}); err == nil {
		t.Error("a record without a family was accepted")
	}
}
