package watch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/watch"
	"github.com/imagevet/imagevet/watch/feed"
	"github.com/imagevet/imagevet/watch/mirror"
)

// BenchmarkReleaseToQueued: a release appears on the mirror; one poll of its family
// reads the feed, records the release in the KV bucket and queues its job. The time
// per op is from the poll's start to the job being in the queue (in-process NATS,
// loopback mirror; publishing the release is not timed).
func BenchmarkReleaseToQueued(b *testing.B) {
	e := newEnv(b)
	if err := e.m.Debian("/deb/", mirror.Release{Version: "20260101-0000", Name: "d-x86_64-20260101-0000.qcow2", Image: e.image}, e.signer); err != nil {
		b.Fatal(err)
	}
	fams := e.catalog(b, map[string]catalogFamily{
		"debian-12": {"Debian 12", feed.KindDebian, "/deb/", "d-{arch}-{version}.qcow2", e.keyring},
	})
	w, _ := e.watcher(b, fams, watch.Config{CheckArtefact: true})
	ctx := context.Background()
	if o := w.PollFamily(ctx, "debian-12"); o.State != watch.OutcomeQueued {
		b.Fatalf("%+v", o)
	}
	var requests int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		v := fmt.Sprintf("2026%04d-%04d", 1000+i/10000, i%10000)
		if err := e.m.Debian("/deb/", mirror.Release{Version: v, Name: "d-x86_64-" + v + ".qcow2", Image: e.image}, e.signer); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		o := w.PollFamily(ctx, "debian-12")
		if o.State != watch.OutcomeQueued || o.Release != v {
			b.Fatalf("%+v", o)
		}
		requests += o.Requests
	}
	b.ReportMetric(float64(requests)/float64(b.N), "requests/op")
}

// BenchmarkPollTwentyUnchanged: a poll over 20 families (four of each feed kind)
// when nothing changed upstream. "conditional" is how the watcher polls: each family
// costs one request answered 304. "without-validators" strips the cache validators
// from the records before each poll (not timed), so every feed is read in full and
// found unchanged: the cost the conditional requests save.
func BenchmarkPollTwentyUnchanged(b *testing.B) {
	e := newEnv(b)
	fams := map[string]catalogFamily{}
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	for i := range 4 {
		p := fmt.Sprintf("/v%d", i)
		r := func(v, name string) mirror.Release { return mirror.Release{Version: v, Name: name, Image: e.image} }
		must(e.m.Debian(p+"/deb/", r("20261120-1234", "d-x86_64-20261120-1234.qcow2"), e.signer))
		must(e.m.Ubuntu(p+"/ubuntu/", "com.ubuntu.cloud:server:24.04:x86_64", "x86_64", "disk1.img", "server/u.img", r("20261120", ""), e.signer))
		must(e.m.Checksum(p+"/el/CHECKSUM", true, r("", "El-9-20261120.0.x86_64.qcow2"), e.signer))
		must(e.m.Flatcar(p+"/flatcar/", r("4459.2.1", "f.img"), e.signer))
		must(e.m.Cirros(p+"/cirros/", r("0.6.3", "c-0.6.3.img")))
		fams[fmt.Sprintf("debian-%d", i)] = catalogFamily{"D", feed.KindDebian, p + "/deb/", "d-{arch}-{version}.qcow2", e.keyring}
		fams[fmt.Sprintf("el-%d", i)] = catalogFamily{"E", feed.KindChecksum, p + "/el/CHECKSUM", "El-9-{version}.{arch}.qcow2", e.keyring}
		fams[fmt.Sprintf("flatcar-%d", i)] = catalogFamily{"F", feed.KindFlatcar, p + "/flatcar/", "f.img", e.keyring}
		fams[fmt.Sprintf("cirros-%d", i)] = catalogFamily{"C", feed.KindCirros, p + "/cirros/", "c-{version}.img", ""}
		fams[fmt.Sprintf("ubuntu-%d", i)] = catalogFamily{"U", feed.KindUbuntu, p + "/ubuntu/", "disk1.img", e.keyring}
	}
	w, _ := e.watcher(b, e.catalog(b, fams), watch.Config{})
	ctx := context.Background()
	for _, o := range w.Poll(ctx) {
		if o.State != watch.OutcomeQueued {
			b.Fatalf("first poll %+v", o)
		}
	}
	kv, err := e.q.ReleasesBucket(ctx)
	must(err)
	stripValidators := func() {
		for key := range fams {
			entry, err := kv.Get(ctx, key)
			must(err)
			rec, err := jobs.DecodeReleaseRecord(entry.Value())
			must(err)
			rec.Validators = nil
			data, _ := json.Marshal(rec)
			_, err = kv.Put(ctx, key, data)
			must(err)
		}
	}
	for _, mode := range []string{"conditional", "without-validators"} {
		b.Run(mode, func(b *testing.B) {
			var requests int64
			for range b.N {
				if mode == "without-validators" {
					b.StopTimer()
					stripValidators()
					b.StartTimer()
				}
				for _, o := range w.Poll(ctx) {
					if o.State != watch.OutcomeUnchanged {
						b.Fatalf("%+v", o)
					}
					requests += o.Requests
				}
			}
			b.ReportMetric(float64(requests)/float64(b.N), "requests/op")
		})
	}
}
