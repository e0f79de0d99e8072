// Package queuetest gives the tests of every service one way to get a real NATS
// server and imagevet's queue on it: the embedded JetStream server on a random
// loopback port, gone when the test ends.
package queuetest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/imagevet/imagevet/queue"
)

// Server starts an embedded JetStream server on 127.0.0.1 and returns its client URL.
// The queue is not set up on it.
func Server(t testing.TB) string {
	t.Helper()
	srv, err := queue.StartEmbedded(t.TempDir(), "127.0.0.1", -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// Queue starts a Server, connects to it and sets the queue up with the default
// settings, as the first worker would.
func Queue(t testing.TB) (*queue.Queue, *nats.Conn) {
	t.Helper()
	return On(t, Server(t))
}

// On connects to the server at url and sets the queue up with the default settings.
func On(t testing.TB, url string) (*queue.Queue, *nats.Conn) {
	t.Helper()
	nc, err := queue.Connect(queue.ConnectOptions{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := queue.Setup(ctx, nc, queue.Config{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return q, nc
}
