package web

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// DefaultListen is where the page is served unless told otherwise: this host only.
const DefaultListen = "127.0.0.1:8080"

// ListenConfig says where and how the page is served.
type ListenConfig struct {
	// Addr is host:port (DefaultListen when empty).
	Addr string
	// TLSCertFile and TLSKeyFile serve HTTPS when both are set.
	TLSCertFile, TLSKeyFile string
	// TokenFile holds a secret that every request must carry, as
	// "Authorization: Bearer TOKEN" or as the password of HTTP basic auth (any user
	// name), so a browser can log in too. Required when Addr is not loopback.
	// Without it the page answers only requests naming it by a loopback Host
	// (localhost, 127.0.0.1, [::1] with its port), so a web site cannot read it
	// through a name it points at 127.0.0.1 (DNS rebinding).
	TokenFile string
}

// Validate reports settings that cannot work or would expose the page unguarded,
// naming the flag's setting.
func (c ListenConfig) Validate() error {
	var errs []error
	addr := c.Addr
	if addr == "" {
		addr = DefaultListen
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		errs = append(errs, fmt.Errorf("listen %q: want host:port: %w", addr, err))
	} else if !loopback(host) && c.TokenFile == "" {
		errs = append(errs, fmt.Errorf("listen %q: not a loopback address; give --token-file (IMAGEVET_WEB_TOKEN_FILE) so only operators can read the page", addr))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls: certificate and key go together"))
	}
	return errors.Join(errs...)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readToken reads the token file: its first line, which must not be empty.
func readToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	token, _, _ := strings.Cut(string(data), "\n")
	token = strings.TrimSpace(token)
	if len(token) < 16 {
		return "", fmt.Errorf("token file %s: the token must be at least 16 characters", path)
	}
	return token, nil
}

// RequireToken lets through only requests carrying token, as a bearer token (the
// scheme in any case) or as the basic-auth password; others get 401 with a
// basic-auth challenge. /healthz needs no token: without it, it says only whether
// the page is up (its status, and "ok" or "unavailable"), for a load balancer or a
// supervisor that holds no secret; why it is not (a NATS address in an error) is
// for those with the token.
func RequireToken(token string, next http.Handler) http.Handler {
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := ""
		if _, pass, ok := r.BasicAuth(); ok {
			got = pass
		} else if scheme, v, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			got = strings.TrimSpace(v)
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				rec := &statusOnly{header: http.Header{}}
				next.ServeHTTP(rec, r)
				w.Header().Set("Cache-Control", "no-store")
				if rec.code == 0 || rec.code == http.StatusOK {
					io.WriteString(w, "ok\n")
				} else {
					http.Error(w, "unavailable", rec.code)
				}
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="imagevet", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// statusOnly keeps a response's status and drops the rest.
type statusOnly struct {
	header http.Header
	code   int
}

func (s *statusOnly) Header() http.Header { return s.header }

func (s *statusOnly) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return len(p), nil
}

func (s *statusOnly) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}

// LoopbackHost lets through only requests whose Host header names this host by a
// loopback name or address (localhost, 127.0.0.0/8, [::1]) with port, the page's
// own; others get 403. It guards a page without a token against DNS rebinding: a
// web site whose name resolves to 127.0.0.1 sends its own name as the Host.
func LoopbackHost(port string, tls bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, got, err := net.SplitHostPort(r.Host)
		if err != nil { // no port: the scheme's default
			host, got = strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]"), "80"
			if tls {
				got = "443"
			}
		}
		if got != port || !loopback(strings.ToLower(host)) {
			http.Error(w, fmt.Sprintf("host %q is not this page's address: open it as http(s)://127.0.0.1:%s/, or serve it with --token-file",
				jobs.Bound(r.Host, maxEchoed), port), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Listen opens the configured address, and wraps h in the token check when a token
// file is set. Serve the returned listener with Serve.
func Listen(cfg ListenConfig, h http.Handler) (net.Listener, http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultListen
	}
	token := ""
	if cfg.TokenFile != "" {
		var err error
		if token, err = readToken(cfg.TokenFile); err != nil {
			return nil, nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	if token != "" {
		h = RequireToken(token, h)
	} else {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		h = LoopbackHost(port, cfg.TLSCertFile != "", h)
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	return ln, h, nil
}

// Serve serves h on ln until ctx is done, then shuts down within a few seconds
// (open event streams are cut).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
