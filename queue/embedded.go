package queue

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedServer is a JetStream-enabled NATS server running inside the worker, so a
// single host needs no other service.
type EmbeddedServer struct {
	srv *server.Server
}

// StartEmbedded starts a JetStream server storing its data under storeDir and
// listening on host:port (port -1 picks a free one). It returns once the server
// accepts connections.
func StartEmbedded(storeDir, host string, port int, log *slog.Logger) (*EmbeddedServer, error) {
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded nats store: %w", err)
	}
	opts := &server.Options{
		ServerName: "imagevet-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		// The HTTP monitor and cluster ports stay closed.
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if log != nil {
		srv.SetLoggerV2(serverLogger{log.With("component", "nats-server")}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s:%d did not become ready", host, port)
	}
	return &EmbeddedServer{srv: srv}, nil
}

// ClientURL is the URL clients connect to.
func (e *EmbeddedServer) ClientURL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits until it is down.
func (e *EmbeddedServer) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger sends the embedded server's log lines to slog.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) {
	l.log.Info("nats server", "line", fmt.Sprintf(format, v...))
}
func (l serverLogger) Warnf(format string, v ...any) {
	l.log.Warn("nats server", "line", fmt.Sprintf(format, v...))
}
func (l serverLogger) Fatalf(format string, v ...any) {
	l.log.Error("nats server", "line", fmt.Sprintf(format, v...))
}
func (l serverLogger) Errorf(format string, v ...any) {
	l.log.Error("nats server", "line", fmt.Sprintf(format, v...))
}
func (l serverLogger) Debugf(format string, v ...any) {
	l.log.Debug("nats server", "line", fmt.Sprintf(format, v...))
}
func (l serverLogger) Tracef(format string, v ...any) {
	l.log.Debug("nats server", "line", fmt.Sprintf(format, v...))
}
