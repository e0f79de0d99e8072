package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenConfigRefusesAnUnguardedPublicAddress(t *testing.T) {
	for _, tc := range []struct {
		cfg  ListenConfig
		want string // "" for valid
	}{
		{ListenConfig{}, ""},
		{ListenConfig{Addr: "127.0.0.1:0"}, ""},
		{ListenConfig{Addr: "[::1]:8080"}, ""},
		{ListenConfig{Addr: "localhost:8080"}, ""},
		{ListenConfig{Addr: "0.0.0.0:8080"}, "not a loopback address; give --token-file"},
		{ListenConfig{Addr: ":8080"}, "not a loopback address"},
		{ListenConfig{Addr: "0.0.0.0:8080", TokenFile: "/etc/imagevet/token"}, ""},
		{ListenConfig{Addr: "8080"}, "want host:port"},
		{ListenConfig{TLSCertFile: "cert.pem"}, "certificate and key go together"},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestRequireTokenAcceptsBearerAndBasic(t *testing.T) {
	const token = "s3cret-token-0123456789"
	h := RequireToken(token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Down") != "" {
			http.Error(w, "nats: dial tcp 10.1.2.3:4222: connection refused", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	for name, tc := range map[string]struct {
		set  func(*http.Request)
		want int
	}{
		"none":         {func(*http.Request) {}, http.StatusUnauthorized},
		"bearer":       {func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, http.StatusOK},
		"wrong bearer": {func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, http.StatusUnauthorized},
		"lower bearer": {func(r *http.Request) { r.Header.Set("Authorization", "bearer "+token) }, http.StatusOK},
		"upper bearer": {func(r *http.Request) { r.Header.Set("Authorization", "BEARER  "+token) }, http.StatusOK},
		"other scheme": {func(r *http.Request) { r.Header.Set("Authorization", "Token "+token) }, http.StatusUnauthorized},
		"no scheme":    {func(r *http.Request) { r.Header.Set("Authorization", token) }, http.StatusUnauthorized},
		"healthz":      {func(r *http.Request) { r.URL.Path = "/healthz" }, http.StatusOK},
		"healthz down": {func(r *http.Request) { r.URL.Path = "/healthz"; r.Header.Set("X-Down", "1") }, http.StatusServiceUnavailable},
		"healthz post": {func(r *http.Request) { r.URL.Path, r.Method = "/healthz", "POST" }, http.StatusUnauthorized},
		"basic":        {func(r *http.Request) { r.SetBasicAuth("ops", token) }, http.StatusOK},
		"wrong basic":  {func(r *http.Request) { r.SetBasicAuth("ops", token+"x") }, http.StatusUnauthorized},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		tc.set(r)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s: %d, want %d", name, w.Code, tc.want)
		}
		if w.Code == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: no basic-auth challenge", name)
		}
		if strings.HasPrefix(name, "healthz") && strings.Contains(w.Body.String(), "10.1.2.3") {
			t.Errorf("%s: an unauthenticated health check learns %q", name, w.Body.String())
		}
	}
	// With the token, /healthz says why.
	r := httptest.NewRequest("GET", "/healthz", nil)
	r.Header.Set("X-Down", "1")
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "10.1.2.3") {
		t.Errorf("authorised /healthz: %d %q", w.Code, w.Body.String())
	}
}

// Without a token the page answers only a loopback Host with its own port: a site
// whose name resolves to 127.0.0.1 (DNS rebinding) is refused.
func TestLoopbackHostRefusesOtherNames(t *testing.T) {
	h := LoopbackHost("8080", false, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	for host, want := range map[string]int{
		"127.0.0.1:8080": 200, "localhost:8080": 200, "LocalHost:8080": 200, "[::1]:8080": 200, "127.0.0.2:8080": 200,
		"evil.example:8080": 403, "127.0.0.1:9090": 403, "127.0.0.1": 403, "localhost.evil.example:8080": 403,
		"10.0.0.1:8080": 403, "": 403, strings.Repeat("a", 1<<20) + ":8080": 403,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %.40q: %d, want %d", host, w.Code, want)
		}
		if w.Code == 403 && (w.Body.Len() > 400 || !strings.Contains(w.Body.String(), "--token-file")) {
			t.Errorf("Host %.40q: refusal of %d bytes: %.200s", host, w.Body.Len(), w.Body.String())
		}
	}
	// On the scheme's default port a browser sends no port.
	h = LoopbackHost("443", true, http.NotFoundHandler())
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "localhost"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 404 {
		t.Errorf("localhost on 443: %d", w.Code)
	}
}

// Listen without a token file guards the page with LoopbackHost on the port it
// bound.
func TestListenWithoutTokenChecksTheHost(t *testing.T) {
	ln, h, err := Listen(ListenConfig{Addr: "127.0.0.1:0"}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("page")) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, slog.New(slog.DiscardHandler)) }()
	defer func() { cancel(); <-done }()
	url := "http://" + ln.Addr().String() + "/"
	if code, body := get(t, url); code != 200 || body != "page" {
		t.Errorf("GET %s: %d %q", url, code, body)
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = "rebound.example:" + strings.Split(ln.Addr().String(), ":")[1]
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("Host %s: %d, want 403", req.Host, resp.StatusCode)
	}
}

func TestListenReadsTheTokenFile(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	if _, _, err := Listen(ListenConfig{Addr: "127.0.0.1:0", TokenFile: short}, http.NotFoundHandler()); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short token: %v", err)
	}
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("s3cret-token-0123456789\n"), 0o600)
	ln, h, err := Listen(ListenConfig{Addr: "127.0.0.1:0", TokenFile: good}, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != http.StatusUnauthorized {
		t.Errorf("unauthenticated request through Listen's handler: %d", w.Code)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns their
// paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imagevet test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServeOverTLSWithToken(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret-token-0123456789\n"), 0o600)
	ln, h, err := Listen(ListenConfig{Addr: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile, TokenFile: tokenFile},
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("page")) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, slog.New(slog.DiscardHandler)) }()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + ln.Addr().String() + "/"
	req, _ := http.NewRequest("GET", url, nil)
	req.SetBasicAuth("ops", "s3cret-token-0123456789")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "page" || resp.TLS == nil {
		t.Errorf("authorised HTTPS request: %d %q", resp.StatusCode, body)
	}
	resp, err = client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("request without the token: %d", resp.StatusCode)
	}
	// Plain HTTP on the TLS port gets nowhere.
	if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served the page")
		}
		resp.Body.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve after shutdown: %v", err)
	}
}
