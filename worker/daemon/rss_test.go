package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagevet/imagevet/internal/testenv"
	"github.com/imagevet/imagevet/jobs"
)

// The RSS measurements run the daemon in a child process (this test binary again)
// so that only the worker's memory is counted, not the test's server and client.
const childEnv = "IMAGEVET_DAEMON_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childDaemon())
	}
	os.Exit(m.Run())
}

// sleepRunner stands in for the real runner: it "runs" each job for a while.
type sleepRunner struct{ d time.Duration }

func (s sleepRunner) Run(ctx context.Context, _ jobs.Job, _ int, progress func(jobs.Progress)) jobs.Result {
	progress(jobs.Progress{Stage: "boot", Event: "start"})
	select {
	case <-time.After(s.d):
	case <-ctx.Done():
		return jobs.Result{Verdict: jobs.VerdictError, Retryable: true, Reason: "cancelled"}
	}
	progress(jobs.Progress{Stage: "boot", Event: "done"})
	return jobs.Result{Verdict: jobs.VerdictPass, Checks: []jobs.CheckResult{{Name: jobs.CheckBoot, Status: jobs.StatusPass, Required: true}},
		Stages: []jobs.Stage{{Name: "boot", Start: time.Now(), Duration: jobs.Duration(s.d)}}, ConsoleTail: strings.Repeat("console line\n", 200)}
}

// childDaemon runs a worker as configured by the environment until SIGTERM.
func childDaemon() int {
	cfg := Config{WorkerID: "rss-child", Concurrency: 2, FetchWait: time.Second, GracePeriod: 5 * time.Second}
	if url := os.Getenv("IMAGEVET_CHILD_NATS"); url != "" {
		cfg.NATS.URLs = []string{url}
	} else {
		cfg.StateDir = os.Getenv("IMAGEVET_CHILD_STATE")
		cfg.EmbeddedPort, _ = strconv.Atoi(os.Getenv("IMAGEVET_CHILD_PORT"))
	}
	d, err := New(cfg, sleepRunner{20 * time.Millisecond}, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-d.Ready()
		fmt.Println("READY")
	}()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// rssReport is what one measurement found, in MiB.
type rssReport struct {
	Idle, Batch1Peak, Batch2Peak, After float64
	PerJob                              time.Duration
}

func (r rssReport) String() string {
	return fmt.Sprintf("idle %.1f MiB, peak with 100 queued %.1f MiB, peak with 100 more %.1f MiB, after %.1f MiB; %s per job",
		r.Idle, r.Batch1Peak, r.Batch2Peak, r.After, r.PerJob.Round(time.Microsecond))
}

// measureRSS starts a child worker (with the embedded server, or against an
// in-process one), queues 2 × 100 jobs and samples the child's VmRSS throughout.
func measureRSS(t testing.TB, embedded bool) rssReport {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var url string
	if embedded {
		port := testenv.FreePort(t)
		url = fmt.Sprintf("nats://127.0.0.1:%d", port)
		cmd.Env = append(cmd.Env, "IMAGEVET_CHILD_STATE="+t.TempDir(), "IMAGEVET_CHILD_PORT="+strconv.Itoa(port))
	} else {
		url = startServer(t)
		cmd.Env = append(cmd.Env, "IMAGEVET_CHILD_NATS="+url)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	t.Cleanup(func() {
		// Stop the child by its PID on every path: SIGTERM, then SIGKILL.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "READY" {
				close(ready)
			}
		}
		io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("worker child exited: %s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("worker child not ready: %s", stderr.String())
	}

	q, _ := openQueue(t, url)
	time.Sleep(2 * time.Second) // settle
	var rep rssReport
	rep.Idle = vmRSS(t, pid)
	batch := func(n int, prefix string) (peak float64) {
		var mu sync.Mutex
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				v := vmRSS(t, pid)
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		start := time.Now()
		for i := range n {
			submit(t, q, testJob(fmt.Sprintf("%s-%03d", prefix, i)))
		}
		for i := range n {
			if r := wait(t, q, fmt.Sprintf("%s-%03d", prefix, i)); r.Verdict != jobs.VerdictPass {
				t.Fatalf("%+v", r)
			}
		}
		rep.PerJob = time.Since(start) / time.Duration(n)
		close(stop)
		<-sampled
		return peak
	}
	rep.Batch1Peak = batch(100, "first")
	rep.Batch2Peak = batch(100, "second")
	time.Sleep(time.Second)
	rep.After = vmRSS(t, pid)
	return rep
}

// vmRSS reads a process's resident set size in MiB.
func vmRSS(t testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read VmRSS: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS line")
	return 0
}

// rssLimitMiB is the worker's memory target (excluding its VMs).
const rssLimitMiB = 64

func TestWorkerRSSStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("measures a child worker through 200 jobs; not in -short")
	}
	for _, embedded := range []bool{false, true} {
		name := map[bool]string{false: "external-nats", true: "embedded-nats"}[embedded]
		t.Run(name, func(t *testing.T) {
			rep := measureRSS(t, embedded)
			t.Logf("%s: %s", name, rep)
			if rep.Batch1Peak > rssLimitMiB || rep.Batch2Peak > rssLimitMiB {
				t.Errorf("peak RSS %.1f/%.1f MiB over %d MiB", rep.Batch1Peak, rep.Batch2Peak, rssLimitMiB)
			}
			// The embedded JetStream server lives in the same process and caches
			// the streams it stores (results, status), so it may grow a little more.
			flat := map[bool]float64{false: 8, true: 16}[embedded]
			if grow := rep.Batch2Peak - rep.Batch1Peak; grow > flat {
				t.Errorf("RSS grew %.1f MiB from the first 100 jobs to the next 100: not flat", grow)
			}
		})
	}
}

// BenchmarkWorkerRSS reports a child worker's RSS idle and with 100 queued jobs.
func BenchmarkWorkerRSS(b *testing.B) {
	for _, embedded := range []bool{false, true} {
		name := map[bool]string{false: "external-nats", true: "embedded-nats"}[embedded]
		b.Run(name, func(b *testing.B) {
			var rep rssReport
			for range b.N {
				rep = measureRSS(b, embedded)
			}
			b.ReportMetric(rep.Idle, "idle-MiB")
			b.ReportMetric(rep.Batch1Peak, "peak100-MiB")
			b.ReportMetric(rep.Batch2Peak, "peak200-MiB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkQueueOverhead measures submit → result for a runner that does nothing:
// what NATS, the daemon and result publishing add to every job.
func BenchmarkQueueOverhead(b *testing.B) {
	url := startServer(b)
	cfg := fastConfig(url, "bench")
	cfg.Concurrency = 1
	startDaemon(b, cfg, newFake(nil))
	q, _ := openQueue(b, url)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("noop-%d", i)
		submit(b, q, testJob(id))
		if r := wait(b, q, id); r.Verdict != jobs.VerdictPass {
			b.Fatalf("%+v", r)
		}
	}
}
