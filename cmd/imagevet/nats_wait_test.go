package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/imagevet/imagevet/internal/testenv"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/daemon"

	"github.com/imagevet/imagevet/queue"
)

// freeAddr returns a loopback host:port nothing listens on (free a moment ago).
func freeAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
}

// natsLater starts a JetStream server on addr after delay; the returned func waits
// for it and gives its URL.
func natsLater(t *testing.T, addr string, delay time.Duration, opts server.Options) func() string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	opts.Host, opts.NoSigs, opts.NoLog, opts.JetStream, opts.StoreDir = host, true, true, true, t.TempDir()
	opts.Port, _ = strconv.Atoi(port)
	ready := make(chan *server.Server, 1)
	timer := time.AfterFunc(delay, func() {
		srv, err := server.NewServer(&opts)
		if err != nil {
			t.Error(err)
			close(ready)
			return
		}
		go srv.Start()
		srv.ReadyForConnections(10 * time.Second)
		ready <- srv
	})
	var once sync.Once
	var srv *server.Server
	t.Cleanup(func() {
		timer.Stop()
		once.Do(func() { srv = <-ready })
		if srv != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
		}
	})
	return func() string {
		once.Do(func() { srv = <-ready })
		if srv == nil {
			t.Fatal("nats server did not start")
		}
		return srv.ClientURL()
	}
}

// healthz returns the status code and body of GET http://addr/healthz (0 when
// nothing answers).
func healthz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// eventually polls cond every 100 ms until it holds or within passes.
func eventually(within time.Duration, cond func() bool) bool {
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestWorkerWaitsForNATS: a worker started before its NATS server keeps trying,
// answers /healthz with 503 saying it waits, and once the server listens on its port
// it connects, serves jobs and answers 200. Bad credentials end it with an error
// naming them.
func TestWorkerWaitsForNATS(t *testing.T) {
	addr, metrics := freeAddr(t), freeAddr(t)
	serverURL := natsLater(t, addr, 2*time.Second, server.Options{})
	var logs testenv.LogBuffer
	d, err := daemon.New(daemon.Config{
		NATS: queue.ConnectOptions{URLs: []string{"nats://" + addr}}, WorkerID: "waiting", Concurrency: 1,
		FetchWait: 200 * time.Millisecond, GracePeriod: 100 * time.Millisecond, MemoryReserveMiB: 1, MetricsAddr: metrics,
	}, verdictRunner{}, daemon.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), daemon.WithMemInfo(daemon.FixedMemInfo(1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	var code int
	var body string
	if !eventually(1500*time.Millisecond, func() bool {
		code, body = healthz(metrics)
		return strings.Contains(body, "waiting for a first connection")
	}) ||
		code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for a first connection") {
		t.Errorf("healthz before the server: %d %q", code, body)
	}
	select {
	case <-done:
		t.Fatalf("worker ended before its server started: %v", runErr)
	case <-d.Ready():
		t.Fatal("ready without a server")
	case <-time.After(100 * time.Millisecond):
	}
	url := serverURL()
	select {
	case <-d.Ready():
	case <-done:
		t.Fatalf("worker ended: %v", runErr)
	case <-time.After(15 * time.Second):
		t.Fatal("worker not ready 15 s after its server started")
	}
	if code, body := healthz(metrics); code != http.StatusOK {
		t.Errorf("healthz once connected: %d %q", code, body)
	}
	// It does work: a submitted job gets its verdict.
	code, out, errOut := runCmd(t, cmdSubmit, "--nats", url, "--wait", "--timeout", "20s", writeJob(t, "pass-after-wait"))
	if code != exitPass {
		t.Errorf("submit: exit %d\n%s\n%s", code, out, errOut)
	}
	n := strings.Count(logs.String(), "nats not reachable")
	if n < 1 || n > 6 {
		t.Errorf("%d waiting lines over 2 s, want a few (backoff)", n)
	}
}

// setupQueueLater checks that a service connected to url but finding no queue says
// so on the /healthz at addr, then sets the queue up as a worker starting late would.
func setupQueueLater(t *testing.T, url, addr string) {
	t.Helper()
	var c int
	var body string
	if !eventually(10*time.Second, func() bool { c, body = healthz(addr); return strings.Contains(body, "queue") }) ||
		c != http.StatusServiceUnavailable {
		t.Errorf("healthz without a queue: %d %q", c, body)
	}
	nc, err := queue.Connect(queue.ConnectOptions{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := queue.Setup(ctx, nc, queue.Config{}, "late worker"); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerEndsOnBadCredentials: credentials the server refuses end the worker at
// once with an error naming them.
func TestWorkerEndsOnBadCredentials(t *testing.T) {
	addr := freeAddr(t)
	natsLater(t, addr, 0, server.Options{Username: "imagevet", Password: "right"})()
	d, err := daemon.New(daemon.Config{NATS: queue.ConnectOptions{URLs: []string{"nats://imagevet:wrong@" + addr}}, WorkerID: "badcreds"},
		verdictRunner{}, daemon.WithLogger(slog.New(slog.DiscardHandler)), daemon.WithMemInfo(daemon.FixedMemInfo(1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = d.Run(ctx)
	var ce *queue.ConnectError
	if !errors.As(err, &ce) || ce.Reason != "credentials" || strings.Contains(err.Error(), "wrong") {
		t.Errorf("err = %v, want a credentials ConnectError without the password", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s to give up", took)
	}
}

// TestServicesWaitForNATS: serve, watch (as a service) and publish (as a service)
// started before their NATS server keep trying instead of exiting; serve and watch
// say so on /healthz and start work once the server listens; bad credentials end
// each with exit 2 naming them.
func TestServicesWaitForNATS(t *testing.T) {
	run := func(ctx context.Context, f func(context.Context, []string, Env) int, args ...string) (chan int, *testenv.LogBuffer) {
		errb := &testenv.LogBuffer{}
		env := Env{Stdout: io.Discard, Stderr: errb, Getenv: func(string) string { return "" }}
		code := make(chan int, 1)
		go func() { code <- f(ctx, args, env) }()
		return code, errb
	}
	t.Run("serve", func(t *testing.T) {
		addr, listen := freeAddr(t), freeAddr(t)
		serverURL := natsLater(t, addr, 2*time.Second, server.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		code, errb := run(ctx, cmdServe, "--nats", "nats://"+addr, "--listen", listen)
		defer func() { cancel(); <-code }()
		var c int
		var body string
		if !eventually(1500*time.Millisecond, func() bool {
			c, body = healthz(listen)
			return strings.Contains(body, "waiting for a first connection")
		}) ||
			c != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for a first connection") {
			t.Errorf("healthz before the server: %d %q", c, body)
		}
		setupQueueLater(t, serverURL(), listen)
		if !eventually(15*time.Second, func() bool { c, body = healthz(listen); return c == http.StatusOK }) {
			t.Fatalf("healthz after the server started: %d %q\n%s", c, body, errb)
		}
		resp, err := http.Get("http://" + listen + "/")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("the page after connecting: %v %v", resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	})
	t.Run("watch", func(t *testing.T) {
		addr, metrics := freeAddr(t), freeAddr(t)
		serverURL := natsLater(t, addr, 2*time.Second, server.Options{})
		m, dir := cirrosMirror(t)
		cat := filepath.Join(dir, "families.yaml")
		os.WriteFile(cat, []byte("families:\n  cirros:\n    name: CirrOS\n    feed: {kind: cirros, url: \""+m.URL()+"/cirros/\", arch: x86_64, artefact: \"cirros-{version}-{arch}-disk.img\"}\n    job:\n      guest: {user: cirros}\n"), 0o644)
		ctx, cancel := context.WithCancel(context.Background())
		code, errb := run(ctx, cmdWatch, "--nats", "nats://"+addr, "--catalog", cat, "--metrics", metrics)
		defer func() { cancel(); <-code }()
		var c int
		var body string
		if !eventually(1500*time.Millisecond, func() bool {
			c, body = healthz(metrics)
			return strings.Contains(body, "waiting for a first connection")
		}) ||
			c != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for a first connection") {
			t.Errorf("healthz before the server: %d %q", c, body)
		}
		url := serverURL()
		setupQueueLater(t, url, metrics)
		nc, err := queue.Connect(queue.ConnectOptions{URLs: []string{url}})
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		qctx, qcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer qcancel()
		var recs []jobs.ReleaseRecord
		if !eventually(15*time.Second, func() bool {
			q, err := queue.Open(qctx, nc)
			if err != nil {
				return false
			}
			recs, _ = q.Releases(qctx)
			return len(recs) == 1 && recs[0].State == jobs.ReleaseQueued
		}) {
			t.Fatalf("no release queued after the server started: %+v\n%s", recs, errb)
		}
		if c, body := healthz(metrics); c != http.StatusOK {
			t.Errorf("healthz once connected: %d %q", c, body)
		}
	})
	t.Run("publish", func(t *testing.T) {
		addr := freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		code, errb := run(ctx, cmdPublish, "--nats", "nats://"+addr, "--os-cloud", "nowhere", "--state-dir", t.TempDir())
		select {
		case c := <-code:
			t.Fatalf("publish ended without its server: exit %d\n%s", c, errb)
		case <-time.After(1500 * time.Millisecond):
		}
		cancel()
		select {
		case c := <-code:
			if c != 0 {
				t.Errorf("publish stopped while waiting: exit %d\n%s", c, errb)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("publish did not stop")
		}
	})
	t.Run("bad credentials", func(t *testing.T) {
		addr := freeAddr(t)
		natsLater(t, addr, 0, server.Options{Username: "imagevet", Password: "right"})()
		bad := "nats://imagevet:wrong@" + addr
		for name, f := range map[string]func(context.Context, []string, Env) int{"serve": cmdServe, "watch": cmdWatch, "publish": cmdPublish} {
			args := map[string][]string{
				"serve":   {"--nats", bad, "--listen", freeAddr(t)},
				"watch":   {"--nats", bad, "--catalog", filepath.Join("..", "..", "catalog")},
				"publish": {"--nats", bad, "--os-cloud", "nowhere", "--state-dir", t.TempDir()},
			}[name]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			code, errb := run(ctx, f, args...)
			select {
			case c := <-code:
				if c != exitError || !strings.Contains(errb.String(), "nats credentials") || strings.Contains(errb.String(), "wrong") {
					t.Errorf("%s: exit %d, stderr %q; want exit 2 naming the credentials", name, c, errb)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("%s still running with bad credentials", name)
				cancel()
				<-code
			}
			cancel()
		}
	})
}
