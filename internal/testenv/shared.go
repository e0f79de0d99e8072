package testenv

import (
	"net"
	"strings"
	"sync"
	"testing"
)

// FreePort returns a loopback TCP port nothing listened on a moment ago: for a
// server a test starts later on a port it must know first. It never returns the
// same port twice in one test process: the kernel may hand a port just closed to
// the next listener, and two servers of one test (a NATS server started late and
// a metrics endpoint) would then share it.
func FreePort(t testing.TB) int {
	t.Helper()
	handedMu.Lock()
	defer handedMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !handed[port] {
			handed[port] = true
			return port
		}
	}
	t.Fatal("no loopback port that this process has not used already")
	return 0
}

var (
	handedMu sync.Mutex
	handed   = map[int]bool{}
)

// LogBuffer collects what loggers on several goroutines write, for a test to read.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
