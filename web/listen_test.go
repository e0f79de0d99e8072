package web

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{ListenConfig{Addr: "0.0.0.0:8080"}, "not a loopback address"},
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
	h := RequireToken(token, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	for name, tc := range map[string]struct {
		set  func(*http.Request)
		want int
	}{
		"none":         {func(*http.Request) {}, http.StatusUnauthorized},
		"bearer":       {func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, http.StatusOK},
		"wrong bearer": {func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, http.StatusUnauthorized},
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
