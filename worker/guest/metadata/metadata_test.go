package metadata

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	testKey1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGv0m2x9c7i3lH1fJ0nY0Qp0bqkQ2X2bW4zC8fQ0pG9a imagevet"
	testKey2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 imagevet"
)

func startTest(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("User-Agent", "Cloud-Init/22.4.2")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestOpenStackShapes(t *testing.T) {
	s := startTest(t, Config{InstanceID: "iid-job-42", Hostname: "vet-job-42", PublicKeys: []string{testKey1, testKey2},
		UserData: []byte("#cloud-config\nhostname: vet-job-42\n")})
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("listens on %s, want loopback", s.Addr())
	}
	c := http.DefaultClient
	code, body := get(t, c, s.URL()+"/openstack")
	if code != 200 || !strings.Contains(body, "2018-08-27\n") || !strings.HasSuffix(body, "latest") {
		t.Errorf("/openstack: %d %q", code, body)
	}
	code, body = get(t, c, s.URL()+"/openstack/latest/")
	if code != 200 || !strings.Contains(body, "meta_data.json") || !strings.Contains(body, "user_data") {
		t.Errorf("/openstack/latest/: %d %q", code, body)
	}
	for _, ver := range []string{"latest", "2018-08-27", "2012-08-10"} {
		code, body = get(t, c, s.URL()+"/openstack/"+ver+"/meta_data.json")
		var md struct {
			UUID       string            `json:"uuid"`
			Hostname   string            `json:"hostname"`
			Name       string            `json:"name"`
			PublicKeys map[string]string `json:"public_keys"`
			Keys       []struct{ Name, Type, Data string }
		}
		if err := json.Unmarshal([]byte(body), &md); code != 200 || err != nil {
			t.Fatalf("%s meta_data.json: %d %v %q", ver, code, err, body)
		}
		if md.UUID != "iid-job-42" || md.Hostname != "vet-job-42" || md.PublicKeys["imagevet"] != testKey1 ||
			len(md.Keys) != 2 || md.Keys[1].Data != testKey2 {
			t.Errorf("%s meta_data.json = %+v", ver, md)
		}
	}
	for path, want := range map[string]string{
		"/openstack/latest/user_data":             "#cloud-config\nhostname: vet-job-42\n",
		"/openstack/latest/vendor_data.json":      "{}",
		"/openstack/2018-08-27/vendor_data2.json": "{}",
	} {
		if code, body := get(t, c, s.URL()+path); code != 200 || body != want {
			t.Errorf("%s: %d %q", path, code, body)
		}
	}
	code, body = get(t, c, s.URL()+"/openstack/latest/network_data.json")
	if code != 200 || !json.Valid([]byte(body)) {
		t.Errorf("network_data.json: %d %q", code, body)
	}
	for _, path := range []string{"/openstack/1999-01-01/meta_data.json", "/openstack/latest/nope", "/openstack/latest/meta_data.json/x"} {
		if code, _ := get(t, c, s.URL()+path); code != 404 {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
}

func TestCallerMetaDataAndNoUserData(t *testing.T) {
	doc := `{"uuid": "from-seed", "hostname": "h", "meta": {"role": "x"}}`
	s := startTest(t, Config{InstanceID: "from-seed", Hostname: "h", MetaDataJSON: []byte(doc)})
	if code, body := get(t, http.DefaultClient, s.URL()+"/openstack/latest/meta_data.json"); code != 200 || body != doc {
		t.Errorf("meta_data.json: %d %q, want the caller's bytes", code, body)
	}
	for _, path := range []string{"/openstack/latest/user_data", "/latest/user-data"} {
		if code, _ := get(t, http.DefaultClient, s.URL()+path); code != 404 {
			t.Errorf("%s without user data: %d, want 404", path, code)
		}
	}
	if _, err := Start(Config{InstanceID: "x", Hostname: "h", MetaDataJSON: []byte("{not json")}); err == nil {
		t.Error("Start accepted invalid meta_data.json")
	}
	if _, err := Start(Config{Hostname: "h"}); err == nil {
		t.Error("Start accepted a config without instance id")
	}
}

func TestEC2Shapes(t *testing.T) {
	s := startTest(t, Config{InstanceID: "i-0042", Hostname: "vet-42", PublicKeys: []string{testKey1, testKey2}, UserData: []byte("#!/bin/sh\n")})
	c := http.DefaultClient
	for path, want := range map[string]string{
		"/latest/meta-data/instance-id":                 "i-0042",
		"/2009-04-04/meta-data/instance-id":             "i-0042",
		"/latest/meta-data/local-hostname":              "vet-42",
		"/latest/meta-data/hostname":                    "vet-42",
		"/latest/meta-data/public-keys/":                "0=imagevet\n1=imagevet-2",
		"/latest/meta-data/public-keys/0":               "openssh-key",
		"/latest/meta-data/public-keys/0/openssh-key":   testKey1,
		"/latest/meta-data/public-keys/1/openssh-key":   testKey2,
		"/latest/meta-data/placement/availability-zone": "nova",
		"/latest/user-data":                             "#!/bin/sh\n",
		"/latest/":                                      "meta-data\nuser-data",
	} {
		if code, body := get(t, c, s.URL()+path); code != 200 || body != want {
			t.Errorf("%s: %d %q, want %q", path, code, body, want)
		}
	}
	code, body := get(t, c, s.URL()+"/latest/meta-data/")
	for _, e := range []string{"instance-id", "local-hostname", "hostname", "public-keys/"} {
		if code != 200 || !strings.Contains("\n"+body+"\n", "\n"+e+"\n") {
			t.Errorf("meta-data/ listing lacks %s: %q", e, body)
		}
	}
	if code, body := get(t, c, s.URL()+"/"); code != 200 || !strings.Contains(body, "2009-04-04") {
		t.Errorf("/: %d %q", code, body)
	}
	for _, path := range []string{"/latest/meta-data/public-keys/2/openssh-key", "/latest/meta-data/public-keys/01", "/latest/meta-data/nope", "/nonsense/meta-data/instance-id"} {
		if code, _ := get(t, c, s.URL()+path); code != 404 {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
	// IMDSv2 token, then a request carrying it.
	req, _ := http.NewRequest(http.MethodPut, s.URL()+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(tok) == 0 {
		t.Errorf("token: %d %q", resp.StatusCode, tok)
	}
	req, _ = http.NewRequest(http.MethodPost, s.URL()+"/latest/meta-data/instance-id", nil)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp, err)
	}
}

func TestRequestsRecorded(t *testing.T) {
	s := startTest(t, Config{InstanceID: "iid", Hostname: "h"})
	before := time.Now()
	get(t, http.DefaultClient, s.URL()+"/openstack/latest/meta_data.json")
	get(t, http.DefaultClient, s.URL()+"/latest/meta-data/nope")
	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %+v", reqs)
	}
	r := reqs[0]
	if r.Method != "GET" || r.Path != "/openstack/latest/meta_data.json" || r.UserAgent != "Cloud-Init/22.4.2" ||
		r.Status != 200 || r.Time.Before(before) || r.RemoteAddr == "" {
		t.Errorf("request = %+v", r)
	}
	if reqs[1].Status != 404 {
		t.Errorf("second request status = %d", reqs[1].Status)
	}
}

// TestProxyStdio runs a guest's HTTP client over ProxyStdio the way qemu's
// guestfwd does: each guest connection is a byte stream on the command's stdio.
func TestProxyStdio(t *testing.T) {
	s := startTest(t, Config{InstanceID: "iid-proxy", Hostname: "h"})
	errs := make(chan error, 8)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			guest, cmd := net.Pipe()
			go func() { errs <- ProxyStdio(context.Background(), s.Addr(), cmd, cmd); cmd.Close() }()
			return guest, nil
		},
	}}
	// Keep-alive: several requests over one proxied connection.
	for i := 0; i < 3; i++ {
		code, body := get(t, client, "http://169.254.169.254/openstack/latest/meta_data.json")
		if code != 200 || !strings.Contains(body, `"uuid": "iid-proxy"`) {
			t.Fatalf("through the proxy: %d %q", code, body)
		}
	}
	client.CloseIdleConnections() // the guest hangs up: stdin ends
	select {
	case err := <-errs:
		if err != nil {
			t.Errorf("ProxyStdio: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("ProxyStdio did not return after the guest closed its side")
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("server saw %d requests, want 3", n)
	}
}

// A request written and then half-closed (stdin EOF) still gets its whole answer.
func TestProxyStdioHalfClose(t *testing.T) {
	s := startTest(t, Config{InstanceID: "iid-half", Hostname: "h"})
	in := strings.NewReader("GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ProxyStdio(context.Background(), s.Addr(), in, pw); pw.Close() }()
	resp, err := http.ReadResponse(bufio.NewReader(pr), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "iid-half" {
		t.Errorf("answer: %d %q", resp.StatusCode, b)
	}
	go io.Copy(io.Discard, pr)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ProxyStdio: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("ProxyStdio did not return after the server closed")
	}
}

func TestProxyStdioCancelAndDialError(t *testing.T) {
	s := startTest(t, Config{InstanceID: "iid", Hostname: "h"})
	pr, pw := io.Pipe() // a guest that never sends and never hangs up
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ProxyStdio(ctx, s.Addr(), pr, io.Discard) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ProxyStdio ignored ctx")
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if err := ProxyStdio(context.Background(), addr, strings.NewReader(""), io.Discard); err == nil {
		t.Error("dialing a closed port succeeded")
	}
}
