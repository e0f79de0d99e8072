package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testImage is a small valid qcow2 with data, and its digests.
type testImage struct {
	data   []byte
	sha256 string
	sha512 string
}

func newTestImage() testImage {
	b := buildQCOW2(qcowSpec{withData: true})
	h256 := sha256.Sum256(b)
	h512 := sha512.Sum512(b)
	return testImage{data: b, sha256: hex.EncodeToString(h256[:]), sha512: hex.EncodeToString(h512[:])}
}

func newStore(t testing.TB, roots ...string) *Store {
	t.Helper()
	s, err := NewStore(StoreConfig{
		Dir:          filepath.Join(t.TempDir(), "cache"),
		FileRoots:    roots,
		RetryBackoff: 5 * time.Millisecond,
		MaxBackoff:   20 * time.Millisecond,
		Retries:      3,
		StallTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertNoTemp fails if a download or metadata temp file was left behind.
func assertNoTemp(t testing.TB, s *Store) {
	t.Helper()
	left, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestFetchFileAndCache(t *testing.T) {
	root := t.TempDir()
	ti := newTestImage()
	writeFile(t, root, "img.qcow2", ti.data)
	s := newStore(t, root)
	ctx := context.Background()

	var calls []int64
	img, err := s.Fetch(ctx, Source{URL: "img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256},
		func(done, total int64) {
			calls = append(calls, done)
			if total != int64(len(ti.data)) {
				t.Errorf("progress total = %d", total)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(s.Dir(), "sha256", ti.sha256+".qcow2")
	if img.Path != want || img.SHA256 != ti.sha256 || img.SHA512 != ti.sha512 || img.Cached ||
		img.Size != int64(len(ti.data)) || img.VirtualSize != 1<<30 || img.Format != FormatQCOW2 {
		t.Fatalf("image = %+v", img)
	}
	if len(calls) == 0 || calls[len(calls)-1] != int64(len(ti.data)) {
		t.Fatalf("progress calls = %v", calls)
	}
	got, err := os.ReadFile(img.Path)
	if err != nil || !bytes.Equal(got, ti.data) {
		t.Fatalf("cached content differs: %v", err)
	}
	for p, mode := range map[string]os.FileMode{
		img.Path:                         0o444,
		img.Path + ".json":               0o444,
		filepath.Join(s.Dir(), "sha256"): 0o755 | os.ModeDir,
		s.Dir():                          0o755 | os.ModeDir,
	} {
		st, err := os.Stat(p)
		if err != nil || st.Mode() != mode {
			t.Fatalf("%s mode = %v (%v), want %v", p, st.Mode(), err, mode)
		}
	}
	assertNoTemp(t, s)

	// The same image by SHA-256 again, by SHA-512, via file:// and via an
	// absolute path: all cache hits on the same path.
	for _, src := range []Source{
		{URL: "img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256},
		{URL: "img.qcow2", Format: FormatQCOW2, Checksum: "sha512:" + strings.ToUpper(ti.sha512)},
		{URL: "file://" + filepath.Join(root, "img.qcow2"), Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256},
	} {
		again, err := s.Fetch(ctx, src, func(int64, int64) { t.Errorf("progress on a cache hit for %+v", src) })
		if err != nil {
			t.Fatal(err)
		}
		if !again.Cached || again.Path != img.Path || again.SHA512 != ti.sha512 || again.VirtualSize != img.VirtualSize {
			t.Fatalf("second fetch of %+v = %+v", src, again)
		}
	}
}

func TestFetchFileWithoutChecksumUsesStatIndex(t *testing.T) {
	root := t.TempDir()
	ti := newTestImage()
	p := writeFile(t, root, "img.qcow2", ti.data)
	s := newStore(t, root)
	ctx := context.Background()
	src := Source{URL: p, Format: FormatQCOW2}

	first, err := s.Fetch(ctx, src, nil)
	if err != nil || first.Cached {
		t.Fatalf("first = %+v, %v", first, err)
	}
	second, err := s.Fetch(ctx, src, nil)
	if err != nil || !second.Cached || second.SHA256 != ti.sha256 {
		t.Fatalf("second = %+v, %v", second, err)
	}
	// A changed mtime means the file must be read again.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	third, err := s.Fetch(ctx, src, nil)
	if err != nil || third.Cached || third.Path != first.Path {
		t.Fatalf("third = %+v, %v", third, err)
	}
	// Rewritten in place with the same size and the mtime pinned back (as a
	// reproducible build does): still noticed, through ctime.
	other := buildQCOW2(qcowSpec{withData: true, virtualSize: 2 << 30})
	if len(other) != len(ti.data) {
		t.Fatal("test images differ in size")
	}
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(p, other, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	fourth, err := s.Fetch(ctx, src, nil)
	if err != nil || fourth.Cached || fourth.SHA256 == ti.sha256 || fourth.VirtualSize != 2<<30 {
		t.Fatalf("fourth = %+v, %v", fourth, err)
	}
}

func TestFetchChecksumMismatch(t *testing.T) {
	root := t.TempDir()
	ti := newTestImage()
	writeFile(t, root, "img.qcow2", ti.data)
	s := newStore(t, root)
	wrong := strings.Repeat("0", 128)
	_, err := s.Fetch(context.Background(), Source{URL: "img.qcow2", Format: FormatQCOW2, Checksum: "sha512:" + wrong}, nil)
	var ce *ChecksumMismatchError
	if !errors.As(err, &ce) || ce.Algo != "sha512" || ce.Want != wrong || ce.Got != ti.sha512 || ce.File != "img.qcow2" {
		t.Fatalf("err = %#v", err)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "img.qcow2") {
		t.Fatalf("message %q", err)
	}
	assertNoTemp(t, s)
	if entries, _ := os.ReadDir(filepath.Join(s.Dir(), "sha256")); len(entries) != 0 {
		t.Fatalf("mismatched image was published: %v", entries)
	}
}

func TestFetchUnsafeImageNotPublished(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "bad.qcow2", buildQCOW2(qcowSpec{backing: "/etc/passwd"}))
	writeFile(t, root, "raw.qcow2", mbrDisk(1<<20, [3]uint32{0x80, 0x83, 2048}))
	writeFile(t, root, "empty.raw", nil)
	s := newStore(t, root)
	for _, tc := range []struct {
		src  Source
		rule Violation
	}{
		{Source{URL: "bad.qcow2", Format: FormatQCOW2}, ViolationBackingFile},
		{Source{URL: "raw.qcow2", Format: FormatQCOW2}, ViolationFormatMismatch},
		{Source{URL: "empty.raw", Format: FormatRaw}, ViolationEmpty},
	} {
		_, err := s.Fetch(context.Background(), tc.src, nil)
		ue := wantRule(t, err, tc.rule)
		if ue.File != tc.src.URL || !strings.Contains(err.Error(), tc.src.URL) {
			t.Fatalf("error does not name the file: %v", err)
		}
	}
	assertNoTemp(t, s)
	if entries, _ := os.ReadDir(filepath.Join(s.Dir(), "sha256")); len(entries) != 0 {
		t.Fatalf("unsafe image was published: %v", entries)
	}
}

func TestFetchSourceErrors(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ti := newTestImage()
	writeFile(t, outside, "secret.qcow2", ti.data)
	writeFile(t, root, "img.qcow2", ti.data)
	if err := os.Symlink(filepath.Join(outside, "secret.qcow2"), filepath.Join(root, "link.qcow2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "sub", "out")); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, root)
	noRoots := newStore(t)
	sum := "sha256:" + ti.sha256

	for _, tc := range []struct {
		name  string
		store *Store
		src   Source
		field string
	}{
		{"dotdot escape", s, Source{URL: "../outside/secret.qcow2", Format: FormatQCOW2}, FieldSource},
		{"absolute outside", s, Source{URL: filepath.Join(outside, "secret.qcow2"), Format: FormatQCOW2}, FieldSource},
		{"symlink out", s, Source{URL: "link.qcow2", Format: FormatQCOW2}, FieldSource},
		{"dir symlink out", s, Source{URL: "sub/out/secret.qcow2", Format: FormatQCOW2}, FieldSource},
		{"file url dotdot", s, Source{URL: "file://" + root + "/sub/../../outside/secret.qcow2", Format: FormatQCOW2}, FieldSource},
		{"file url with host", s, Source{URL: "file://example.org/etc/passwd", Format: FormatQCOW2}, FieldSource},
		{"missing", s, Source{URL: "nope.qcow2", Format: FormatQCOW2}, FieldSource},
		{"directory", s, Source{URL: "sub", Format: FormatQCOW2}, FieldSource},
		{"no roots", noRoots, Source{URL: "/etc/passwd", Format: FormatRaw}, FieldSource},
		{"ftp", s, Source{URL: "ftp://127.0.0.1/x.qcow2", Format: FormatQCOW2, Checksum: sum}, FieldSource},
		{"empty url", s, Source{Format: FormatQCOW2}, FieldSource},
		{"credentials", s, Source{URL: "https://u:p@127.0.0.1/x.qcow2", Format: FormatQCOW2, Checksum: sum}, FieldSource},
		{"bad format", s, Source{URL: "img.qcow2", Format: "vmdk"}, FieldFormat},
		{"bad checksum algo", s, Source{URL: "img.qcow2", Format: FormatQCOW2, Checksum: "md5:abc"}, FieldChecksum},
		{"bad checksum hex", s, Source{URL: "img.qcow2", Format: FormatQCOW2, Checksum: "sha256:xyz"}, FieldChecksum},
		{"http without checksum", s, Source{URL: "http://127.0.0.1:1/x.qcow2", Format: FormatQCOW2}, FieldChecksum},
		{"sums outside root", s, Source{URL: "img.qcow2", Format: FormatQCOW2, SumsURL: "../outside/SUMS"}, FieldSumsURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.store.Fetch(context.Background(), tc.src, nil)
			var se *SourceError
			if !errors.As(err, &se) || se.Field != tc.field {
				t.Fatalf("want SourceError on %s, got %T %v", tc.field, err, err)
			}
			if !strings.HasPrefix(err.Error(), tc.field+": ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("message %q", err)
			}
		})
	}
}

func TestFetchWithSumsFile(t *testing.T) {
	root := t.TempDir()
	ti := newTestImage()
	writeFile(t, root, "debian-12-genericcloud-amd64.qcow2", ti.data)
	writeFile(t, root, "SHA512SUMS", []byte(fmt.Sprintf("%s  other.qcow2\n%s  debian-12-genericcloud-amd64.qcow2\n", strings.Repeat("1", 128), ti.sha512)))
	writeFile(t, root, "SHA256SUMS.bsd", []byte(fmt.Sprintf("SHA256 (renamed.qcow2) = %s\n", ti.sha256)))
	writeFile(t, root, "SHA256SUMS.bin", []byte(fmt.Sprintf("%s *renamed.qcow2\n", ti.sha256)))
	s := newStore(t, root)
	ctx := context.Background()

	img, err := s.Fetch(ctx, Source{URL: "debian-12-genericcloud-amd64.qcow2", Format: FormatQCOW2, SumsURL: "SHA512SUMS"}, nil)
	if err != nil || img.SHA512 != ti.sha512 || img.Cached {
		t.Fatalf("img = %+v, %v", img, err)
	}
	for _, sums := range []string{"SHA256SUMS.bsd", "SHA256SUMS.bin"} {
		img, err = s.Fetch(ctx, Source{URL: "debian-12-genericcloud-amd64.qcow2", Format: FormatQCOW2, SumsURL: sums, SumsName: "renamed.qcow2"}, nil)
		if err != nil || !img.Cached {
			t.Fatalf("%s: img = %+v, %v", sums, img, err)
		}
	}
	_, err = s.Fetch(ctx, Source{URL: "debian-12-genericcloud-amd64.qcow2", Format: FormatQCOW2, SumsURL: "SHA512SUMS", SumsName: "missing.qcow2"}, nil)
	var se *SourceError
	if !errors.As(err, &se) || se.Field != FieldSumsName {
		t.Fatalf("err = %v", err)
	}
}

// imageServer serves one file on 127.0.0.1 with configurable misbehaviour.
type imageServer struct {
	*httptest.Server
	data     []byte
	requests atomic.Int32
	ranges   atomic.Int32 // requests that carried a Range header
	fulls    atomic.Int32 // requests answered with the whole body
}

func newImageServer(t testing.TB, data []byte, handler func(s *imageServer, n int32, w http.ResponseWriter, r *http.Request) bool) *imageServer {
	t.Helper()
	is := &imageServer{data: data}
	is.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := is.requests.Add(1)
		if r.Header.Get("Range") != "" {
			is.ranges.Add(1)
		}
		if handler != nil && handler(is, n, w, r) {
			return
		}
		if r.Header.Get("Range") == "" {
			is.fulls.Add(1)
		}
		http.ServeContent(w, r, "img", time.Time{}, bytes.NewReader(is.data))
	}))
	t.Cleanup(is.Close)
	if host, _, _ := net.SplitHostPort(is.Listener.Addr().String()); host != "127.0.0.1" {
		t.Fatalf("test server not on loopback: %s", host)
	}
	return is
}

// dropAfter writes the headers of a full response and half the body, then
// kills the connection.
func dropAfter(w http.ResponseWriter, data []byte, acceptRanges bool) {
	if acceptRanges {
		w.Header().Set("Accept-Ranges", "bytes")
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:len(data)/2+123]) // an unaligned offset to resume from
	w.(http.Flusher).Flush()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestFetchHTTPResumesAfterDrop(t *testing.T) {
	ti := newTestImage()
	srv := newImageServer(t, ti.data, func(s *imageServer, n int32, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			dropAfter(w, s.data, true)
			return true
		}
		return false
	})
	s := newStore(t)
	var last, total int64
	img, err := s.Fetch(context.Background(), Source{URL: srv.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256},
		func(done, tot int64) {
			if done < last {
				t.Errorf("progress went back: %d after %d", done, last)
			}
			last, total = done, tot
		})
	if err != nil {
		t.Fatal(err)
	}
	if img.SHA512 != ti.sha512 || srv.requests.Load() != 2 || srv.ranges.Load() != 1 {
		t.Fatalf("img %+v, requests %d, ranged %d", img, srv.requests.Load(), srv.ranges.Load())
	}
	if last != int64(len(ti.data)) || total != int64(len(ti.data)) {
		t.Fatalf("final progress %d/%d", last, total)
	}
	assertNoTemp(t, s)
}

func TestFetchHTTPRetries503(t *testing.T) {
	ti := newTestImage()
	srv := newImageServer(t, ti.data, func(s *imageServer, n int32, w http.ResponseWriter, r *http.Request) bool {
		switch n {
		case 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		case 2:
			w.Header().Set("Retry-After", "0")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return true
		}
		return false
	})
	s := newStore(t)
	img, err := s.Fetch(context.Background(), Source{URL: srv.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha512:" + ti.sha512}, nil)
	if err != nil || img.SHA256 != ti.sha256 || srv.requests.Load() != 3 {
		t.Fatalf("img %+v, err %v, requests %d", img, err, srv.requests.Load())
	}
}

func TestFetchHTTPWithoutRangeSupportRestarts(t *testing.T) {
	ti := newTestImage()
	srv := newImageServer(t, ti.data, func(s *imageServer, n int32, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			dropAfter(w, s.data, false)
			return true
		}
		// A server that ignores Range and always sends everything.
		s.fulls.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(s.data)))
		w.Write(s.data)
		return true
	})
	s := newStore(t)
	img, err := s.Fetch(context.Background(), Source{URL: srv.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
	if err != nil || img.SHA512 != ti.sha512 {
		t.Fatalf("img %+v, err %v", img, err)
	}
	if srv.requests.Load() != 2 || srv.ranges.Load() != 0 {
		t.Fatalf("requests %d, ranged %d", srv.requests.Load(), srv.ranges.Load())
	}
}

func TestFetchHTTPIgnoredRangeRestartsFromZero(t *testing.T) {
	ti := newTestImage()
	srv := newImageServer(t, ti.data, func(s *imageServer, n int32, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			dropAfter(w, s.data, true) // claims range support...
			return true
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(s.data))) // ...but answers 200
		w.Write(s.data)
		return true
	})
	s := newStore(t)
	img, err := s.Fetch(context.Background(), Source{URL: srv.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
	if err != nil || img.SHA512 != ti.sha512 || srv.ranges.Load() != 1 {
		t.Fatalf("img %+v, err %v, ranged %d", img, err, srv.ranges.Load())
	}
}

func TestFetchHTTPStallResumes(t *testing.T) {
	ti := newTestImage()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := newImageServer(t, ti.data, func(s *imageServer, n int32, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("Content-Length", fmt.Sprint(len(s.data)))
			w.Write(s.data[:len(s.data)/2])
			w.(http.Flusher).Flush()
			select { // stall
			case <-release:
			case <-r.Context().Done():
			}
			return true
		}
		return false
	})
	s := newStore(t)
	s.stallTimeout = 300 * time.Millisecond
	img, err := s.Fetch(context.Background(), Source{URL: srv.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
	if err != nil || img.SHA512 != ti.sha512 || srv.ranges.Load() != 1 {
		t.Fatalf("img %+v, err %v, ranged %d", img, err, srv.ranges.Load())
	}
}

func TestFetchHTTPErrors(t *testing.T) {
	ti := newTestImage()
	notFound := newImageServer(t, ti.data, func(s *imageServer, n int32, w http.ResponseWriter, r *http.Request) bool {
		http.NotFound(w, r)
		return true
	})
	down := newImageServer(t, ti.data, func(s *imageServer, n int32, w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down", http.StatusBadGateway)
		return true
	})
	s := newStore(t)
	ctx := context.Background()

	_, err := s.Fetch(ctx, Source{URL: notFound.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
	var se *SourceError
	if !errors.As(err, &se) || se.Field != FieldSource || notFound.requests.Load() != 1 || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404: err %v, requests %d", err, notFound.requests.Load())
	}

	_, err = s.Fetch(ctx, Source{URL: down.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
	var fe *FetchError
	if !errors.As(err, &fe) || !fe.Retryable || down.requests.Load() != int32(s.retries+1) {
		t.Fatalf("502: err %v, requests %d", err, down.requests.Load())
	}

	// SUMS file missing on the server.
	_, err = s.Fetch(ctx, Source{URL: down.URL + "/img.qcow2", Format: FormatQCOW2, SumsURL: notFound.URL + "/SHA256SUMS"}, nil)
	if !errors.As(err, &se) || se.Field != FieldSumsURL {
		t.Fatalf("sums 404: %v", err)
	}

	// Nothing listens: a transient failure after retries.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = s.Fetch(ctx, Source{URL: "http://" + addr + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
	if !errors.As(err, &fe) || !fe.Retryable {
		t.Fatalf("refused: %v", err)
	}

	// A cancelled context stops the fetch with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Fetch(cctx, Source{URL: down.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	assertNoTemp(t, s)
}

func TestFetchHTTPSameCacheAsFile(t *testing.T) {
	root := t.TempDir()
	ti := newTestImage()
	writeFile(t, root, "img.qcow2", ti.data)
	srv := newImageServer(t, ti.data, nil)
	s := newStore(t, root)
	ctx := context.Background()
	a, err := s.Fetch(ctx, Source{URL: srv.URL + "/x/img.qcow2", Format: FormatQCOW2, SumsURL: "file://" + writeFile(t, root, "SUMS", []byte(ti.sha256+"  img.qcow2\n"))}, nil)
	if err != nil || a.Cached {
		t.Fatalf("http: %+v %v", a, err)
	}
	b, err := s.Fetch(ctx, Source{URL: "img.qcow2", Format: FormatQCOW2, Checksum: "sha512:" + ti.sha512}, nil)
	if err != nil || !b.Cached || b.Path != a.Path {
		t.Fatalf("file: %+v %v", b, err)
	}
	if srv.requests.Load() != 1 {
		t.Fatalf("requests %d", srv.requests.Load())
	}
}

func TestFetchConcurrentSharesOneDownload(t *testing.T) {
	ti := newTestImage()
	gate := make(chan struct{})
	srv := newImageServer(t, ti.data, func(s *imageServer, n int32, w http.ResponseWriter, r *http.Request) bool {
		<-gate // hold the first download until every fetcher is waiting
		return false
	})
	s := newStore(t)
	const jobs = 8
	var wg sync.WaitGroup
	imgs := make([]*Image, jobs)
	errs := make([]error, jobs)
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			imgs[i], errs[i] = s.Fetch(context.Background(), Source{URL: srv.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.requests.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(gate)
	wg.Wait()
	fresh := 0
	for i := range jobs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if imgs[i].Path != imgs[0].Path {
			t.Fatalf("paths differ: %s vs %s", imgs[i].Path, imgs[0].Path)
		}
		if !imgs[i].Cached {
			fresh++
		}
	}
	if fresh != 1 || srv.requests.Load() != 1 {
		t.Fatalf("fresh downloads %d, requests %d", fresh, srv.requests.Load())
	}
}

// TestFetchAcrossProcessesRace publishes the same image from two stores
// sharing one directory (as two worker processes would).
func TestFetchAcrossStoresSharingDir(t *testing.T) {
	root := t.TempDir()
	ti := newTestImage()
	writeFile(t, root, "img.qcow2", ti.data)
	dir := filepath.Join(t.TempDir(), "cache")
	var stores []*Store
	for range 4 {
		s, err := NewStore(StoreConfig{Dir: dir, FileRoots: []string{root}})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Fetch(context.Background(), Source{URL: "img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(filepath.Join(dir, "sha256", ti.sha256+".qcow2"))
	if err != nil || !bytes.Equal(got, ti.data) {
		t.Fatalf("published content: %v", err)
	}
	assertNoTemp(t, stores[0])
}

func TestFetchSizeCaps(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "img.qcow2", buildQCOW2(qcowSpec{virtualSize: 8 << 30, withData: true}))
	s, err := NewStore(StoreConfig{Dir: t.TempDir(), FileRoots: []string{root}, MaxVirtualSize: 4 << 30})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Fetch(context.Background(), Source{URL: "img.qcow2", Format: FormatQCOW2}, nil)
	wantRule(t, err, ViolationVirtualSize)

	// A cache entry ingested under a larger cap is refused under a smaller one.
	dir := t.TempDir()
	big, err := NewStore(StoreConfig{Dir: dir, FileRoots: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.Fetch(context.Background(), Source{URL: "img.qcow2", Format: FormatQCOW2}, nil); err != nil {
		t.Fatal(err)
	}
	small, err := NewStore(StoreConfig{Dir: dir, FileRoots: []string{root}, MaxVirtualSize: 4 << 30})
	if err != nil {
		t.Fatal(err)
	}
	_, err = small.Fetch(context.Background(), Source{URL: "img.qcow2", Format: FormatQCOW2}, nil)
	wantRule(t, err, ViolationVirtualSize)

	s, err = NewStore(StoreConfig{Dir: t.TempDir(), FileRoots: []string{root}, MaxSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Fetch(context.Background(), Source{URL: "img.qcow2", Format: FormatQCOW2}, nil)
	wantRule(t, err, ViolationTooLarge)

	ti := newTestImage()
	srv := newImageServer(t, ti.data, nil)
	_, err = s.Fetch(context.Background(), Source{URL: srv.URL + "/img.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
	wantRule(t, err, ViolationTooLarge)
}

func TestOverlay(t *testing.T) {
	needQemuImg(t)
	root := t.TempDir()
	qcow := filepath.Join(root, "base.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", qcow, "256M")
	writeFile(t, root, "base.raw", mbrDisk(4<<20, [3]uint32{0x80, 0x83, 2048}))
	s := newStore(t, root)
	ctx := context.Background()
	for _, src := range []Source{{URL: "base.qcow2", Format: FormatQCOW2}, {URL: "base.raw", Format: FormatRaw}} {
		t.Run(src.Format, func(t *testing.T) {
			base, err := s.Fetch(ctx, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(base.Path)
			ov := filepath.Join(t.TempDir(), "overlay.qcow2")
			start := time.Now()
			if err := s.Overlay(ctx, base, ov); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			t.Logf("overlay over %s created in %v", src.Format, took)
			if took > 500*time.Millisecond {
				t.Fatalf("overlay took %v", took)
			}
			var info struct {
				Format        string `json:"format"`
				VirtualSize   int64  `json:"virtual-size"`
				Backing       string `json:"backing-filename"`
				BackingFormat string `json:"backing-filename-format"`
			}
			out := run(t, "qemu-img", "info", "-U", "--output=json", "-f", "qcow2", ov)
			if err := json.Unmarshal(out, &info); err != nil {
				t.Fatal(err)
			}
			if info.Format != "qcow2" || info.Backing != base.Path || info.BackingFormat != base.Format || info.VirtualSize != base.VirtualSize {
				t.Fatalf("overlay info %+v, base %+v", info, base)
			}
			// Write through the overlay; the base must not change.
			if qio, err := exec.LookPath("qemu-io"); err == nil {
				run(t, qio, "-f", "qcow2", "-c", "write -P 0x5a 0 1M", ov)
				after, _ := os.ReadFile(base.Path)
				if !bytes.Equal(before, after) {
					t.Fatal("base image changed after writing the overlay")
				}
			}
			// A base that vanished from the cache is an infrastructure error.
			gone := *base
			gone.Path = filepath.Join(t.TempDir(), "gone.qcow2")
			var fe *FetchError
			if err := s.Overlay(ctx, &gone, ov+".2"); !errors.As(err, &fe) {
				t.Fatalf("overlay over a missing base: %v", err)
			}
			// Our own inspector must refuse the overlay as a base image.
			_, err = inspectFile(t, ov)
			wantRule(t, err, ViolationBackingFile)
		})
	}
}

func TestQemuCheckRejectsCorruption(t *testing.T) {
	needQemuImg(t)
	root := t.TempDir()
	// Two L2 entries pointing at the same data cluster: refcounts are wrong,
	// which only qemu-img check notices.
	b := buildQCOW2(qcowSpec{withData: true})
	cs := 1 << 16
	copy(b[4*cs+8:], b[4*cs:4*cs+8])
	writeFile(t, root, "dup.qcow2", b)
	s := newStore(t, root)
	_, err := s.Fetch(context.Background(), Source{URL: "dup.qcow2", Format: FormatQCOW2}, nil)
	wantRule(t, err, ViolationCorrupt)
	assertNoTemp(t, s)
}
