package metadata

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagevet/imagevet/cloudinit"
)

// testKeys are made once: RSA generation is slow.
var testKeys = sync.OnceValue(func() *cloudinit.Keys {
	k, err := cloudinit.NewKeys()
	if err != nil {
		panic(err)
	}
	return k
})

// seed is a job's seed with the given identity.
func seed(instanceID, hostname string) cloudinit.Spec {
	return cloudinit.Spec{InstanceID: instanceID, Hostname: hostname, Keys: testKeys(), User: "debian"}
}

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
	testKey1, testKey2 := testKeys().AuthorizedKeys()[0], testKeys().AuthorizedKeys()[1]
	s := startTest(t, Config{Seed: seed("iid-job-42", "vet-job-42"),
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
		if code, body := get(t, c, s.URL()+path); code != 200 || strings.TrimSuffix(body, "\n") != strings.TrimSuffix(want, "\n") {
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

// The service answers with the seed's own meta_data.json, byte for byte: the
// config drive and the metadata service never disagree.
func TestSeedMetaDataAndNoUserData(t *testing.T) {
	sd := seed("from-seed", "h")
	doc, err := sd.OpenStackMetaData()
	if err != nil {
		t.Fatal(err)
	}
	s := startTest(t, Config{Seed: sd})
	if code, body := get(t, http.DefaultClient, s.URL()+"/openstack/latest/meta_data.json"); code != 200 || body != string(doc) {
		t.Errorf("meta_data.json: %d %q, want the seed's bytes %q", code, body, doc)
	}
	for _, path := range []string{"/openstack/latest/user_data", "/latest/user-data"} {
		if code, _ := get(t, http.DefaultClient, s.URL()+path); code != 404 {
			t.Errorf("%s without user data: %d, want 404", path, code)
		}
	}
	if _, err := Start(Config{Seed: sd, NetworkDataJSON: []byte("{not json")}); err == nil || !strings.Contains(err.Error(), "NetworkDataJSON") {
		t.Errorf("Start with invalid network_data.json: %v", err)
	}
	if _, err := Start(Config{Seed: seed("", "h")}); err == nil || !strings.Contains(err.Error(), "instance_id") {
		t.Errorf("Start with a seed without instance id: %v", err)
	}
}

func TestEC2Shapes(t *testing.T) {
	testKey1, testKey2 := testKeys().AuthorizedKeys()[0], testKeys().AuthorizedKeys()[1]
	s := startTest(t, Config{Seed: seed("i-0042", "vet-42"), UserData: []byte("#!/bin/sh\n")})
	c := http.DefaultClient
	for path, want := range map[string]string{
		"/latest/meta-data/instance-id":                 "i-0042",
		"/2009-04-04/meta-data/instance-id":             "i-0042",
		"/latest/meta-data/local-hostname":              "vet-42",
		"/latest/meta-data/hostname":                    "vet-42",
		"/latest/meta-data/public-keys/":                "0=imagevet\n1=imagevet-rsa",
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
	s := startTest(t, Config{Seed: seed("iid", "h")})
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

// dialStream connects to the server's stream address as qemu's chardev does.
func dialStream(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.StreamAddr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readAnswer(t *testing.T, br *bufio.Reader, method string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// TestStreamSequentialClients plays what slirp does with several guest
// connections: their requests arrive one after another on one stream, some
// asking for "Connection: close", one as HTTP/1.0, one HEAD; each gets its whole
// answer with a length and the stream stays open.
func TestStreamSequentialClients(t *testing.T) {
	s := startTest(t, Config{Seed: seed("iid-stream", "h"), UserData: []byte("#cloud-config\n")})
	if !strings.HasPrefix(s.StreamAddr(), "127.0.0.1:") || s.StreamAddr() == s.Addr() {
		t.Fatalf("stream address %s (http %s)", s.StreamAddr(), s.Addr())
	}
	c, br := dialStream(t, s)
	for _, r := range []struct{ method, req, want string }{
		{"GET", "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\nUser-Agent: Wget\r\n\r\n", "iid-stream"},
		{"GET", "GET /openstack/latest/meta_data.json HTTP/1.0\r\n\r\n", `"uuid": "iid-stream"`},
		{"HEAD", "HEAD /latest/user-data HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"PUT", "PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", imdsToken},
		{"GET", "GET /latest/user-data HTTP/1.1\r\nHost: x\r\n\r\n", "#cloud-config"},
	} {
		if _, err := io.WriteString(c, r.req); err != nil {
			t.Fatal(err)
		}
		code, body, h := readAnswer(t, br, r.method)
		if code != 200 || !strings.Contains(body, r.want) || h.Get("Connection") != "" {
			t.Errorf("%q: %d %q %v", r.req, code, body, h)
		}
	}
	// The server counts a request once its answer is written: the client may read
	// the last answer a moment before that.
	st := s.StreamStats()
	for deadline := time.Now().Add(2 * time.Second); st.Requests < 5 && time.Now().Before(deadline); st = s.StreamStats() {
		time.Sleep(5 * time.Millisecond)
	}
	if st.Connections != 1 || st.Requests != 5 || st.Resets != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := len(s.Requests()); n != 5 {
		t.Errorf("recorded %d requests, want 5", n)
	}
}

// A guest that sends garbage, half a request or an oversized one gets a 400 and
// the stream is closed (qemu reconnects); a fresh stream serves again.
func TestStreamResets(t *testing.T) {
	s := startTest(t, Config{Seed: seed("iid-reset", "h")})
	for name, req := range map[string]string{
		"garbage":         "\x16\x03\x01 not http\r\n\r\n",
		"huge header":     "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxStreamRequest) + "\r\n\r\n",
		"huge body":       fmt.Sprintf("PUT /latest/api/token HTTP/1.1\r\nContent-Length: %d\r\n\r\n", maxStreamRequest+1),
		"request smuggle": "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		c, br := dialStream(t, s)
		go func() { io.WriteString(c, req); c.(*net.TCPConn).CloseWrite() }()
		code, _, _ := readAnswer(t, br, "GET")
		if code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, code)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Errorf("%s: stream not closed after the reset: %v", name, err)
		}
	}
	// A request cut short: the rest never comes within the request timeout is
	// covered by the deadline; here the guest hangs up mid-request.
	c, _ := dialStream(t, s)
	io.WriteString(c, "GET /latest/meta-d")
	c.Close()

	c2, br := dialStream(t, s)
	io.WriteString(c2, "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, body, _ := readAnswer(t, br, "GET"); code != 200 || body != "iid-reset" {
		t.Errorf("after resets: %d %q", code, body)
	}
	waitFor(t, func() bool { return s.StreamStats().Resets == 5 }, "5 resets counted: %+v", func() any { return s.StreamStats() })
}

// At most maxStreams stream connections are served at once; more are closed
// at once, and a closed server closes the ones it had.
func TestStreamBounded(t *testing.T) {
	s := startTest(t, Config{Seed: seed("iid-bound", "h")})
	var held []net.Conn
	for i := 0; i < maxStreams; i++ {
		c, br := dialStream(t, s)
		io.WriteString(c, "GET /latest/meta-data/instance-id HTTP/1.1\r\n\r\n")
		if code, _, _ := readAnswer(t, br, "GET"); code != 200 {
			t.Fatalf("stream %d: %d", i, code)
		}
		held = append(held, c)
	}
	extra, br := dialStream(t, s)
	if _, err := br.ReadByte(); err == nil {
		t.Error("a stream beyond the bound was served")
	}
	extra.Close()
	if st := s.StreamStats(); st.Refused != 1 || st.Connections != maxStreams {
		t.Errorf("stats %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.Close(ctx)
	for i, c := range held {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("stream %d still open after Close: %v", i, err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool, format string, arg func() any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, arg())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
