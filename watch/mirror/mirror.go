// Package mirror is a vendor mirror on loopback for tests and benchmarks: it serves
// documents in each vendor's layout (Debian's dated build directories and SHA512SUMS,
// Ubuntu's simplestreams, CHECKSUM files, Flatcar's version.txt and DIGESTS, CirrOS's
// version/released), signs them with a key of its own, and serves local image files as
// the artefacts. Every response carries an ETag and a Last-Modified date and answers
// conditional requests with 304, as the vendors' servers do. Paths can be made to
// hang, or be replaced with anything (malformed documents, bad signatures).
//
// It listens only on 127.0.0.1.
package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Mirror is a running loopback HTTP server holding a tree of files. Its methods are
// safe for concurrent use.
type Mirror struct {
	srv    *http.Server
	url    string
	closed chan struct{}

	mu       sync.Mutex
	files    map[string]*file // by path, "/a/b"
	hang     map[string]bool
	requests map[string]int
	total    int
	notMod   int
	clock    time.Time
	digests  map[string]Digests
	trees    map[string]any // vendor state per published root
}

type file struct {
	data []byte
	disk string // served from this local file instead of data
	mod  time.Time
	etag string
}

// Start listens on a free 127.0.0.1 port and serves until Close.
func Start() (*Mirror, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	m := &Mirror{
		url:      "http://" + ln.Addr().String(),
		closed:   make(chan struct{}),
		files:    map[string]*file{},
		hang:     map[string]bool{},
		requests: map[string]int{},
		digests:  map[string]Digests{},
		trees:    map[string]any{},
		clock:    time.Now().UTC().Truncate(time.Second).Add(-24 * time.Hour),
	}
	m.srv = &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
	go m.srv.Serve(ln)
	return m, nil
}

// URL is the mirror's base URL ("http://127.0.0.1:PORT"), without a trailing slash.
func (m *Mirror) URL() string { return m.url }

// Close stops the server and releases requests that hang.
func (m *Mirror) Close() error {
	close(m.closed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.srv.Shutdown(ctx)
}

// tick returns a modification time one second after the previous one, so that every
// change is visible to If-Modified-Since.
func (m *Mirror) tick() time.Time {
	m.clock = m.clock.Add(time.Second)
	return m.clock
}

// Put serves data at path ("/images/x/SHA512SUMS").
func (m *Mirror) Put(path string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(path, data)
}

func (m *Mirror) put(path string, data []byte) {
	sum := sha256.Sum256(data)
	m.files[path] = &file{data: bytes.Clone(data), mod: m.tick(), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// PutFile serves the local file at diskPath at path and returns its digests.
func (m *Mirror) PutFile(path, diskPath string) (Digests, error) {
	d, err := m.fileDigests(diskPath)
	if err != nil {
		return Digests{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[path] = &file{disk: diskPath, mod: m.tick(), etag: `"` + d.SHA256[:16] + `"`}
	return d, nil
}

// Remove stops serving path (it answers 404).
func (m *Mirror) Remove(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, path)
}

// Hang makes requests for path wait, without an answer, until the client gives up
// or the mirror closes.
func (m *Mirror) Hang(path string, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hang[path] = on
}

// Requests returns how many requests the mirror answered, in all and with 304 Not
// Modified.
func (m *Mirror) Requests() (total, notModified int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total, m.notMod
}

// RequestsFor returns how many requests asked for path.
func (m *Mirror) RequestsFor(path string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests[path]
}

// Digests are a file's size and hex digests.
type Digests struct {
	Size   int64
	SHA256 string
	SHA512 string
}

func (m *Mirror) fileDigests(path string) (Digests, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Digests{}, fmt.Errorf("mirror: %w", err)
	}
	key := fmt.Sprintf("%s|%d|%d", path, st.Size(), st.ModTime().UnixNano())
	m.mu.Lock()
	d, ok := m.digests[key]
	m.mu.Unlock()
	if ok {
		return d, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return Digests{}, fmt.Errorf("mirror: %w", err)
	}
	defer f.Close()
	h256, h512 := sha256.New(), sha512.New()
	n, err := io.Copy(io.MultiWriter(h256, h512), f)
	if err != nil {
		return Digests{}, fmt.Errorf("mirror: read %s: %w", path, err)
	}
	d = Digests{Size: n, SHA256: hex.EncodeToString(h256.Sum(nil)), SHA512: hex.EncodeToString(h512.Sum(nil))}
	m.mu.Lock()
	m.digests[key] = d
	m.mu.Unlock()
	return d, nil
}

// ServeHTTP answers GET and HEAD for the tree. A directory path ("/x/") without a file
// of its own gets an autoindex page listing its entries, like the vendors' servers.
func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	m.mu.Lock()
	m.total++
	m.requests[p]++
	hang := m.hang[p]
	f := m.files[p]
	if f == nil && strings.HasSuffix(p, "/") {
		f = m.index(p)
	}
	m.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-m.closed:
		}
		return
	}
	if f == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", f.etag)
	rw := &statusWriter{ResponseWriter: w}
	if f.disk != "" {
		fh, err := os.Open(f.disk)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer fh.Close()
		http.ServeContent(rw, r, "", f.mod, fh)
	} else {
		http.ServeContent(rw, r, "", f.mod, bytes.NewReader(f.data))
	}
	if rw.status == http.StatusNotModified {
		m.mu.Lock()
		m.notMod++
		m.mu.Unlock()
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// index builds the autoindex page of directory dir from the files below it; nil when
// nothing is below it. Its date is the newest entry's.
func (m *Mirror) index(dir string) *file {
	entries := map[string]time.Time{}
	for p, f := range m.files {
		rest, ok := strings.CutPrefix(p, dir)
		if !ok || rest == "" {
			continue
		}
		name := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			name = rest[:i+1]
		}
		if f.mod.After(entries[name]) {
			entries[name] = f.mod
		}
	}
	if len(entries) == 0 {
		return nil
	}
	names := make([]string, 0, len(entries))
	var newest time.Time
	for n, t := range entries {
		names = append(names, n)
		if t.After(newest) {
			newest = t
		}
	}
	sort.Strings(names)
	type row struct{ Name, Date string }
	page := struct {
		Dir  string
		Rows []row
	}{Dir: dir}
	for _, n := range names {
		page.Rows = append(page.Rows, row{n, entries[n].Format("2006-01-02 15:04")})
	}
	var b bytes.Buffer
	if err := autoindex.Execute(&b, page); err != nil {
		return nil
	}
	sum := sha256.Sum256(b.Bytes())
	return &file{data: b.Bytes(), mod: newest, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// autoindex is the directory page, in the shape of Apache's autoindex.
var autoindex = template.Must(template.New("index").Parse(`<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of {{.Dir}}</title>
 </head>
 <body>
<h1>Index of {{.Dir}}</h1>
<table>
<tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th></tr>
<tr><td><a href="../">Parent Directory</a></td><td>&nbsp;</td></tr>
{{range .Rows}}<tr><td><a href="{{.Name}}">{{.Name}}</a></td><td align="right">{{.Date}}</td></tr>
{{end}}</table>
</body></html>
`))
