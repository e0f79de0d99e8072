package worker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// slowServer serves an "image" on loopback that sends a few bytes and then
// nothing, until the test ends: a stalled vendor mirror.
func slowServer(t *testing.T) string {
	t.Helper()
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1048576")
		w.Write([]byte("QFI\xfb"))
		w.(http.Flusher).Flush()
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv.URL + "/slow.qcow2"
}

// A real image store (not a fake) fetching from the slow server.
func slowFetchRunner(t *testing.T) (*Runner, Config, *fake.Hypervisor) {
	t.Helper()
	store, err := image.NewStore(image.StoreConfig{Dir: t.TempDir(), Retries: -1, StallTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	hv := &fake.Hypervisor{}
	r, cfg := newTestRunner(t, store, hv)
	return r, cfg, hv
}

// A fetch that runs out of its own timeout is a retryable infrastructure error,
// never the image's fault, and nothing boots.
func TestFetchTimeoutIsRetryableInfrastructure(t *testing.T) {
	r, cfg, hv := slowFetchRunner(t)
	job := testJob("slowfetch")
	job.Image.Source = slowServer(t)
	job.Timeouts.Fetch = jobs.Duration(time.Second)
	res := r.Run(context.Background(), job, 1, nil)
	if res.Verdict != jobs.VerdictError || !res.Retryable || res.FailedCheck != jobs.CheckImage ||
		!strings.Contains(res.Reason, "fetch did not finish within the job's fetch timeout of 1s") {
		t.Fatalf("got %s retryable=%v %s %q; want a retryable error naming the fetch timeout", res.Verdict, res.Retryable, res.FailedCheck, res.Reason)
	}
	if len(hv.Boots()) != 0 {
		t.Error("a job whose fetch timed out booted")
	}
	assertCleanedUp(t, cfg, hv)
}

// The job's total timeout running out during a slow download (fetch and total
// both long, as on a KVM host) is retryable too, not a boot failure.
func TestTotalTimeoutDuringFetchIsRetryable(t *testing.T) {
	r, cfg, hv := slowFetchRunner(t)
	job := testJob("slowtotal")
	job.Image.Source = slowServer(t)
	job.Timeouts.Fetch = jobs.Duration(time.Hour)
	job.Timeouts.Boot = jobs.Duration(time.Second)
	job.Timeouts.Total = jobs.Duration(10 * time.Second)
	res := r.Run(context.Background(), job, 1, nil)
	if res.Verdict != jobs.VerdictError || !res.Retryable || res.FailedCheck != jobs.CheckImage ||
		!strings.Contains(res.Reason, "total timeout of 10s") {
		t.Fatalf("got %s retryable=%v %s %q", res.Verdict, res.Retryable, res.FailedCheck, res.Reason)
	}
	if c := res.Check(jobs.CheckBoot); c == nil || c.Status != jobs.StatusSkip || !strings.HasPrefix(c.Reason, jobs.NotRunPrefix) {
		t.Errorf("boot = %+v, want listed as not run: nothing booted", c)
	}
	assertCleanedUp(t, cfg, hv)
}

// A cloud-init that never finishes within the job's time fails cloud-init, the
// stage that ran out, not boot.
func TestCloudInitOverrunFailsCloudInit(t *testing.T) {
	addr, key := sshServerReplying(t, func(cmd string) string {
		switch {
		case strings.Contains(cmd, "command -v cloud-init"):
			return "present\n"
		case strings.Contains(cmd, "result.json ]"):
			return "waiting\n"
		case strings.Contains(cmd, "@@status"):
			return "@@status\nstatus: running\n@@result\n@@status-json\n@@instance-id\n@@hostname\nvet\n"
		}
		return "ok\n"
	})
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	for _, tc := range []struct {
		name      string
		cloudInit time.Duration
		total     time.Duration
		want      string
	}{
		{"own timeout", 2 * time.Second, time.Minute, "did not finish"},
		{"total timeout", time.Minute, 10 * time.Second, "total timeout of 10s ran out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := testJob("ci-overrun")
			job.Checks.Skip = []string{jobs.CheckHostname, jobs.CheckMetadata, jobs.CheckCommands}
			job.Timeouts.Boot = jobs.Duration(5 * time.Second)
			job.Timeouts.CloudInit = jobs.Duration(tc.cloudInit)
			job.Timeouts.Total = jobs.Duration(tc.total)
			res := r.Run(context.Background(), job, 1, nil)
			if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckCloudInit || !strings.Contains(res.Reason, tc.want) {
				t.Fatalf("got %s/%s %q; want a cloud-init failure containing %q", res.Verdict, res.FailedCheck, res.Reason, tc.want)
			}
			if c := res.Check(jobs.CheckBoot); c == nil || c.Status != jobs.StatusPass {
				t.Errorf("boot = %+v, want pass", c)
			}
		})
	}
	assertCleanedUp(t, cfg, hv)
}
