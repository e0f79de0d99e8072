package queue

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/imagevet/imagevet/internal/testenv"

	"github.com/imagevet/imagevet/jobs"
)

// startServerOn starts an in-process JetStream server on a given loopback port.
func startServerOn(t testing.TB, port int, opts server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", port, true, true
	if opts.JetStream {
		opts.StoreDir = t.TempDir()
	}
	srv, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

// TestDialerWaitsForTheServer: a service started before its NATS server keeps
// trying with backoff (a few log lines, not one per 100 ms), says so in Health, and
// connects and works once the server listens on its port.
func TestDialerWaitsForTheServer(t *testing.T) {
	port := testenv.FreePort(t)
	var logs testenv.LogBuffer
	d := &Dialer{
		Options:    ConnectOptions{URLs: []string{"nats://127.0.0.1:" + strconv.Itoa(port)}, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		MinBackoff: 200 * time.Millisecond,
	}
	if err := d.Health(); err == nil {
		t.Error("healthy before dialing")
	}
	type dialed struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() { nc, err := d.Dial(context.Background()); done <- dialed{nc, err} }()
	time.Sleep(2 * time.Second)
	if err := d.Health(); err == nil || !strings.Contains(err.Error(), "waiting for a first connection") {
		t.Errorf("health while waiting: %v", err)
	}
	if n := strings.Count(logs.String(), "nats not reachable"); n < 2 || n > 6 {
		t.Errorf("%d log lines in 2 s of waiting, want a few (backoff):\n%s", n, logs.String())
	}
	start := time.Now()
	startServerOn(t, port, server.Options{JetStream: true})
	var got dialed
	select {
	case got = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("not connected 10 s after the server started")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	defer got.nc.Close()
	t.Logf("connected %s after the server started", time.Since(start).Round(time.Millisecond))
	if err := d.Health(); err != nil {
		t.Errorf("health once connected: %v", err)
	}
	if !strings.Contains(logs.String(), "nats connected") {
		t.Errorf("no line saying it connected:\n%s", logs.String())
	}
	// It works: the queue is set up and takes a job.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := Setup(ctx, got.nc, Config{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Submit(ctx, jobs.Job{Version: jobs.Version, ID: "after-wait", Image: jobs.ImageSpec{Source: "https://example.invalid/x.qcow2", Format: "qcow2", Checksum: "sha256:" + strings.Repeat("a", 64)}, Guest: jobs.GuestSpec{User: "debian"}}); err != nil {
		t.Fatal(err)
	}
}

// TestDialerEndsOnWhatWaitingCannotMend: bad credentials, a malformed URL and a
// missing credentials file end Dial at once with a *ConnectError naming the cause
// (and never the password); the end of the context ends the wait.
func TestDialerEndsOnWhatWaitingCannotMend(t *testing.T) {
	port := testenv.FreePort(t)
	startServerOn(t, port, server.Options{Username: "imagevet", Password: "right"})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	quiet := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name, reason, in string
		opts             ConnectOptions
	}{
		{"wrong password", "credentials", "Authorization Violation", ConnectOptions{URLs: []string{"nats://imagevet:wrong@" + addr}}},
		{"no credentials", "credentials", "Authorization Violation", ConnectOptions{URLs: []string{"nats://" + addr}}},
		{"port out of range", "configuration", `port "99999"`, ConnectOptions{URLs: []string{"nats://127.0.0.1:99999"}}},
		{"not a nats scheme", "configuration", `scheme "http"`, ConnectOptions{URLs: []string{"http://" + addr}}},
		{"creds file missing", "file", "credentials file", ConnectOptions{URLs: []string{"nats://" + addr}, CredsFile: filepath.Join(t.TempDir(), "absent.creds")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Logger = quiet
			d := &Dialer{Options: c.opts}
			start := time.Now()
			_, err := d.Dial(context.Background())
			var ce *ConnectError
			if !errors.As(err, &ce) || ce.Reason != c.reason || !strings.Contains(err.Error(), c.in) {
				t.Fatalf("err = %v, want a ConnectError (%s) containing %q", err, c.reason, c.in)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("the password is in the error: %v", err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("took %s to give up", took)
			}
			if h := d.Health(); h == nil {
				t.Error("healthy after giving up")
			}
		})
	}
	if _, err := Connect(ConnectOptions{URLs: []string{"nats://imagevet:wrong@" + addr}}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("Connect with a wrong password: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	d := &Dialer{Options: ConnectOptions{URLs: []string{"nats://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))}, Logger: quiet}}
	start := time.Now()
	if _, err := d.Dial(ctx); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("after the context ended: %v (%s)", err, time.Since(start))
	}
}
