package publish

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"
)

// brokenGlance is an Image API that answers every call 503, as a cloud that is down.
func brokenGlance(t *testing.T) *gophercloud.ServiceClient {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	return &gophercloud.ServiceClient{ProviderClient: &gophercloud.ProviderClient{HTTPClient: *srv.Client()},
		Endpoint: srv.URL + "/", ResourceBase: srv.URL + "/v2/"}
}

// syncBuffer is a log sink several goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFleetRecordsRefusalsAndRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an embedded NATS server and waits out the service's idle fetches (15 s)")
	}
	q := embeddedQueue(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := image.NewStore(image.StoreConfig{Dir: filepath.Join(t.TempDir(), "cache")})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(Config{Cloud: &Cloud{Name: "east", Region: "RegionOne", Image: brokenGlance(t), Timeout: 5 * time.Second},
		Store: store, Queue: q, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	fleet := FleetOf(p)
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	f := &jobs.ImageFacts{Size: 10, Format: "raw", SHA256: strings.Repeat("a", 64), OSHashAlgo: "sha512",
		OSHashValue: strings.Repeat("b", 128), Source: "/nowhere/x.qcow2",
		Vendor: &jobs.VendorFile{Format: "qcow2", Size: 5, SHA256: strings.Repeat("c", 64), SHA512: strings.Repeat("d", 128)}}
	r := passed("testix-1-a", "r1", day, f, nil)
	r.Publish.Clouds = []string{"east", "west"}

	// The cloud is down: retrying, due after the delay; the unknown cloud is refused,
	// named, with the clouds there are.
	outs := fleet.PublishTo(ctx, q, r, fleet.Selected(r), false, true, time.Minute)
	if len(outs) != 2 {
		t.Fatalf("%d outcomes", len(outs))
	}
	east, west := outs[0], outs[1]
	if east.Err == nil || !east.Retryable || east.Record == nil || east.Record.State != jobs.PublicationRetrying ||
		east.Record.NextTry == nil || !strings.Contains(east.Record.Reason, "cloud east (region RegionOne)") {
		t.Errorf("a cloud that is down: %+v %v", east.Record, east.Err)
	}
	if west.Err == nil || west.Retryable || west.Record == nil || west.Record.State != jobs.PublicationRefused ||
		!strings.Contains(west.Record.Reason, `cloud "west" is not one of this publisher's clouds (east)`) {
		t.Errorf("an unknown cloud: %+v %v", west.Record, west.Err)
	}
	rec, ok, err := q.Publication(ctx, r.JobID, "east")
	if err != nil || !ok || rec.SourceHash != f.Vendor.SHA512 || rec.OSHashValue != f.OSHashValue || rec.Attempts != 1 {
		t.Errorf("east's record: %+v %v %v", rec, ok, err)
	}

	// A result whose vetted file is not the format it asks for is refused for good,
	// with its reason; publishing it again (an operator's retry) counts the attempt.
	wrong := passed("testix-1-b", "r2", day.AddDate(0, 0, 7), f, nil)
	wrong.Publish.DiskFormat = "qcow2"
	for attempt := 1; attempt <= 2; attempt++ {
		out := fleet.PublishTo(ctx, q, wrong, fleet.Selected(wrong), false, false, time.Minute)[0]
		var me *MismatchError
		if !errors.As(out.Err, &me) || out.Record == nil || out.Record.State != jobs.PublicationRefused ||
			out.Record.Attempts != attempt || !strings.Contains(out.Record.Reason, "publish.disk_format qcow2") {
			t.Errorf("attempt %d of a wrong-format result: %+v %v", attempt, out.Record, out.Err)
		}
	}
	// A dry run records nothing.
	before, _ := q.Publications(ctx)
	fleet.PublishTo(ctx, q, wrong, []string{"east"}, true, false, time.Minute)
	if after, _ := q.Publications(ctx); len(after) != len(before) || after[len(after)-1].Attempts != 2 {
		t.Errorf("a dry run changed the records: %+v", after)
	}

	// A retry that is due for a result no longer in the results stream is refused
	// once, not asked about every round.
	past := day
	if err := q.PutPublication(ctx, jobs.PublicationRecord{JobID: "testix-1-gone", Family: "testix-1", Cloud: "east",
		State: jobs.PublicationRetrying, Reason: "cloud east: 503", Attempts: 3, UpdatedAt: day, NextTry: &past}); err != nil {
		t.Fatal(err)
	}

	// The service, idle but for the retry that is not due yet, logs no warning: its
	// fetches that find nothing are not trouble.
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Serve(sctx, q, fleet, ServiceConfig{RetryDelay: time.Hour, Logger: log}) }()
	time.Sleep(12 * time.Second)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "publisher serving") {
		t.Errorf("an idle service logged:\n%s", logs.String())
	}
	if rec, _, _ := q.Publication(ctx, r.JobID, "east"); rec.Attempts != 1 {
		t.Errorf("a retry ran before it was due: %+v", rec)
	}
	if rec, _, _ := q.Publication(ctx, "testix-1-gone", "east"); rec.State != jobs.PublicationRefused ||
		!strings.Contains(rec.Reason, "no longer in the results stream") || rec.NextTry != nil {
		t.Errorf("a due retry whose result is gone: %+v", rec)
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 4: 8 * time.Minute, 10: time.Hour} {
		if got := backoff(time.Minute, n); got != want {
			t.Errorf("attempt %d: %s, want %s", n, got, want)
		}
	}
}

func TestFleetRemembersAFailedLogin(t *testing.T) {
	var mu sync.Mutex
	asked := 0
	keystone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		asked++
		mu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer keystone.Close()
	env := map[string]string{"OS_AUTH_URL": keystone.URL + "/v3", "OS_USERNAME": "u", "OS_PASSWORD": "p",
		"OS_PROJECT_NAME": "x", "OS_DOMAIN_NAME": "Default"}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	fleet, err := NewFleet(Config{Now: func() time.Time { return now }},
		[]Credentials{{Name: "east", Region: "RegionOne", Getenv: func(k string) string { return env[k] }, RequestTimeout: 5 * time.Second}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, first := fleet.Publisher(ctx, "east")
	mu.Lock()
	n := asked
	mu.Unlock()
	if first == nil || n == 0 || !Retryable(first) || !strings.Contains(first.Error(), "cloud east (region RegionOne)") {
		t.Fatalf("login to a keystone that is down: %v (asked %d times)", first, n)
	}
	// Within the pause the failure is answered from memory: no second wait.
	if _, err := fleet.Publisher(ctx, "east"); err != first {
		t.Errorf("second login within the pause: %v", err)
	}
	mu.Lock()
	if asked != n {
		t.Errorf("keystone asked again within the pause: %d, then %d", n, asked)
	}
	mu.Unlock()
	// After it, the cloud is tried again.
	now = now.Add(loginPause)
	_, _ = fleet.Publisher(ctx, "east")
	mu.Lock()
	defer mu.Unlock()
	if asked == n {
		t.Error("keystone not asked again after the pause")
	}
}
