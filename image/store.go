// Package image ingests base images for imagevet jobs: it fetches them from
// http(s) or allowed local paths in one streaming pass that computes SHA-256
// and SHA-512, verifies the expected checksum, inspects the format in pure Go
// before any qemu touches the file, and keeps them read-only in a
// content-addressed cache. Each job then boots a qcow2 overlay over the
// cached base (Store.Overlay), so the base is never written.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imagevet/imagevet/keyring"
)

// Image is a verified, inspected, cached base image. Read-only on disk.
type Image struct {
	Path        string // absolute path in the cache (mode 0444)
	Format      string // "qcow2" or "raw"
	Size        int64  // file size in bytes
	VirtualSize int64  // disk size the guest sees
	SHA256      string // lower-case hex
	SHA512      string // lower-case hex (Glance os_hash_value)
	Cached      bool   // true when this call downloaded, converted and hashed nothing
	// Vendor is the verified vendor file this image was converted from
	// (Source.ConvertTo); nil when Path is the vendor's file itself.
	Vendor *Facts

	// hold is the image file, open with a shared lock while a job uses the
	// image, so no Store (in this or another process) evicts it.
	hold *os.File
}

// StoreConfig configures a Store. Zero values pick the documented defaults.
type StoreConfig struct {
	Dir            string        // cache root, created 0755 if missing (required)
	FileRoots      []string      // directories file sources must lie under; none: file sources are refused
	HTTP           *http.Client  // default: a client with a 60 s response-header timeout
	MaxVirtualSize int64         // cap on the guest-visible size (default 64 GiB)
	MaxSize        int64         // cap on the file size (default MaxVirtualSize)
	Retries        int           // retries after transient download failures (default 5; negative: none)
	RetryBackoff   time.Duration // first retry delay, doubled each time (default 1 s)
	MaxBackoff     time.Duration // cap on one retry delay (default 30 s)
	StallTimeout   time.Duration // abort an attempt that receives nothing for this long (default 60 s)
	QemuImg        string        // qemu-img binary (default: "qemu-img" from PATH)
	SkipQemuCheck  bool          // skip `qemu-img check` of new qcow2 images after Go inspection
	Logger         *slog.Logger  // default: discard
	// MaxCacheBytes caps the images kept under Dir: before a new image is
	// published, images no job holds are evicted, least recently used first,
	// until it fits; if it cannot fit the fetch fails with a retryable
	// ErrCacheFull. Zero means no cap.
	MaxCacheBytes int64
	// Keyring, when set, is the operator's OpenPGP keyring: every SUMS file
	// must then be signed (clear-signed, or Source.SumsSignature) by a key in
	// it. Without one, a job naming a signature is refused: it cannot be
	// checked.
	Keyring *keyring.Keyring
}

// Store is the content-addressed image cache. It is safe for concurrent use
// by many jobs, and several processes may share one Dir.
//
// Layout under Dir (dirs 0755, files 0444, so libvirt's qemu user can read):
//
//	sha256/<hex>.<format>       the image
//	sha256/<hex>.<format>.json  its facts (digests, sizes); written last, marks the entry complete
//	sha512/<hex>.<format>.json  the same facts, indexed by SHA-512
//	files/<key>.json            file sources without a checksum: (path, size, mtime, inode) -> digests
//	converted/<algo>/<hex>.<format>.<target>.json  a vendor file (by either digest) -> its conversion to target
//	tmp/                        downloads in progress
type Store struct {
	dir            string
	roots          []string
	http           *http.Client
	maxVirtualSize int64
	maxSize        int64
	retries        int
	retryBackoff   time.Duration
	maxBackoff     time.Duration
	stallTimeout   time.Duration
	qemuImg        string // "" when not available
	qemuCheck      bool
	maxCache       int64
	keyring        *keyring.Keyring
	log            *slog.Logger

	mu      sync.Mutex
	flights map[string]*flight
}

type flight struct {
	done chan struct{}
	img  *Image
	err  error
}

// Defaults for StoreConfig.
const (
	DefaultMaxVirtualSize = 64 << 30
	DefaultRetries        = 5
	DefaultRetryBackoff   = time.Second
	DefaultMaxBackoff     = 30 * time.Second
	DefaultStallTimeout   = 60 * time.Second

	sumsLimit    = 4 << 20
	sigLimit     = 1 << 20
	staleTempAge = 24 * time.Hour
)

// NewStore validates cfg, creates the cache directories and removes
// downloads abandoned for more than a day by crashed processes.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("image store: Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	s := &Store{
		dir:            dir,
		http:           cfg.HTTP,
		maxVirtualSize: cfg.MaxVirtualSize,
		maxSize:        cfg.MaxSize,
		retries:        cfg.Retries,
		retryBackoff:   cfg.RetryBackoff,
		maxBackoff:     cfg.MaxBackoff,
		stallTimeout:   cfg.StallTimeout,
		qemuCheck:      !cfg.SkipQemuCheck,
		keyring:        cfg.Keyring,
		maxCache:       cfg.MaxCacheBytes,
		log:            cfg.Logger,
		flights:        map[string]*flight{},
	}
	for _, r := range cfg.FileRoots {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("image store: file root %q: %w", r, err)
		}
		s.roots = append(s.roots, abs)
	}
	if s.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 60 * time.Second
		s.http = &http.Client{Transport: tr}
	}
	if s.maxVirtualSize <= 0 {
		s.maxVirtualSize = DefaultMaxVirtualSize
	}
	if s.maxSize <= 0 {
		s.maxSize = s.maxVirtualSize
	}
	switch {
	case s.retries == 0:
		s.retries = DefaultRetries
	case s.retries < 0:
		s.retries = 0
	}
	if s.retryBackoff <= 0 {
		s.retryBackoff = DefaultRetryBackoff
	}
	if s.maxBackoff <= 0 {
		s.maxBackoff = DefaultMaxBackoff
	}
	if s.stallTimeout <= 0 {
		s.stallTimeout = DefaultStallTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	q := cfg.QemuImg
	if q == "" {
		q = "qemu-img"
	}
	if p, err := exec.LookPath(q); err == nil {
		s.qemuImg = p
	}
	for _, d := range []string{"", "sha256", "sha512", "files", "tmp", "converted", "converted/sha256", "converted/sha512"} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
		if err := os.Chmod(p, 0o755); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	s.sweepTemp()
	return s, nil
}

func (s *Store) sweepTemp() {
	entries, err := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if err != nil {
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && time.Since(info.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(s.dir, "tmp", e.Name()))
		}
	}
}

// inspectorVersion is recorded with every cached image; raising it (when
// the inspection rules get stricter) makes older entries cache misses, so
// they are inspected again.
const inspectorVersion = 1

// facts is the JSON record kept next to every cached image.
type facts struct {
	Inspector   int    `json:"inspector"`
	Format      string `json:"format"`
	Size        int64  `json:"size"`
	VirtualSize int64  `json:"virtual_size"`
	SHA256      string `json:"sha256"`
	SHA512      string `json:"sha512"`
}

func (s *Store) imagePath(sum256, format string) string {
	return filepath.Join(s.dir, "sha256", sum256+"."+format)
}

func (s *Store) factsPath(algo, sum, format string) string {
	return filepath.Join(s.dir, algo, sum+"."+format+".json")
}

// lookup returns the cached image with the given digest and format, or nil.
func (s *Store) lookup(d digest, format string) *Image {
	data, err := os.ReadFile(s.factsPath(d.Algo, d.Hex, format))
	if err != nil {
		return nil
	}
	var f facts
	if json.Unmarshal(data, &f) != nil || f.Inspector != inspectorVersion || f.Format != format || len(f.SHA256) != 64 {
		return nil
	}
	if d.pick(f.SHA256, f.SHA512) != d.Hex {
		return nil
	}
	p := s.imagePath(f.SHA256, format)
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() != f.Size {
		return nil
	}
	return &Image{Path: p, Format: format, Size: f.Size, VirtualSize: f.VirtualSize, SHA256: f.SHA256, SHA512: f.SHA512, Cached: true}
}

// fileKey identifies a local file's content without reading it: a change of
// path, size, mtime, ctime or inode means it must be hashed again. ctime is
// included because builds that pin mtimes (SOURCE_DATE_EPOCH) may rewrite a
// file in place with the same size and mtime; ctime cannot be set back.
type fileKey struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
	CTime int64  `json:"ctime_ns"`
	Inode uint64 `json:"inode"`
	Dev   uint64 `json:"dev"`
}

func statKey(path string, st os.FileInfo) fileKey {
	k := fileKey{Path: path, Size: st.Size(), MTime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		k.Inode, k.Dev = sys.Ino, uint64(sys.Dev)
		k.CTime = sys.Ctim.Nano()
	}
	return k
}

func (k fileKey) indexPath(dir string) string {
	b, _ := json.Marshal(k)
	h := sha256.Sum256(b)
	return filepath.Join(dir, "files", hex.EncodeToString(h[:])+".json")
}

type fileIndex struct {
	Key    fileKey `json:"key"`
	SHA256 string  `json:"sha256"`
}

// Fetch returns the verified, inspected image for src, from the cache when
// possible. When the expected digest is known (Checksum or SumsURL) or a
// file source is unchanged since it was last ingested, a cache hit reads
// nothing but small index files. Otherwise the source is streamed once into
// the cache while computing both digests; the expected digest is checked,
// then the format is inspected (Inspect, Info.Check, and `qemu-img check`
// for qcow2) before the file is published under its SHA-256. Concurrent
// calls for the same image share one download.
//
// Conversion: when src.ConvertTo names a format other than src.Format, the
// vendor's file is fetched and verified exactly as above (same source,
// checksum, SUMS and signature rules, same cache), then Fetch returns its
// conversion to ConvertTo (`qemu-img convert`, sparse for raw), from the
// cache when an earlier call converted the same vendor file to the same
// format, converting otherwise. The returned Image's own fields then describe
// the converted file, the one to boot and to publish (its SHA512 is the
// os_hash_value Glance computes for it), and Vendor the verified vendor file
// (its SHA512 is the vendor's source_hash). The converted file passes the
// same inspection as a fetched one, is content-addressed by its own SHA-256,
// counts against MaxCacheBytes with the blocks it occupies, and is evicted
// like any other image; the conversion runs under ctx (killed, its temp file
// removed, when ctx ends). Converting the same vendor file to raw always
// gives the same bytes; a qcow2 written by another qemu-img version may
// differ, so a caller comparing with digests recorded elsewhere (a publisher
// checking a worker's result) compares SHA512. Without ConvertTo, or with
// ConvertTo equal to Format, Vendor is nil.
//
// progress, if not nil, is called from Fetch's goroutine with bytes done and
// the total (-1 when unknown) of the vendor file's download; it must return
// quickly.
//
// Errors: *SourceError (bad job), *ChecksumMismatchError, *UnsafeImageError
// (the image is at fault), *FetchError (infrastructure; a full disk wraps
// syscall.ENOSPC), or the context's error.
//
// The returned image is held (no Store evicts it) until Release is called.
func (s *Store) Fetch(ctx context.Context, src Source, progress func(done, total int64)) (*Image, error) {
	req, err := s.resolveSource(ctx, src)
	if err != nil {
		return nil, err
	}
	if req.converts() {
		return s.holdFetched(src.URL, func() (*Image, error) { return s.fetchConverted(ctx, req, progress) })
	}
	return s.holdFetched(src.URL, func() (*Image, error) { return s.fetchResolved(ctx, req, progress) })
}

// holdFetched gets an image from the cache (fetching it if need be) and holds
// it; once more when another process evicted it between lookup and hold.
func (s *Store) holdFetched(url string, get func() (*Image, error)) (*Image, error) {
	for attempt := 0; ; attempt++ {
		img, err := get()
		if err != nil {
			return nil, err
		}
		held, err := s.hold(img)
		if err == nil {
			return held, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt > 0 {
			return nil, &FetchError{URL: url, Retryable: true, Err: fmt.Errorf("hold cached image: %w", err)}
		}
		// Evicted between lookup and hold (by another worker process): once more.
	}
}

// request is a source resolved: where it is, the digest it must have, and
// for a file source without one, its stat key.
type request struct {
	src  Source
	loc  location
	want *digest
	key  fileKey
}

// converts reports whether the caller asked for another format than the vendor's.
func (r request) converts() bool { return r.src.ConvertTo != "" && r.src.ConvertTo != r.src.Format }

// flightKey names the work for this source in Store.flights; what says which work.
func (r request) flightKey(what string) string {
	if r.want != nil {
		return "sum:" + r.want.String() + "|" + what
	}
	return "loc:" + r.loc.String() + "|" + what
}

// resolveSource checks src's formats, resolves its location and reads the
// digest it must have.
func (s *Store) resolveSource(ctx context.Context, src Source) (request, error) {
	if src.Format != FormatQCOW2 && src.Format != FormatRaw {
		return request{}, &SourceError{Field: FieldFormat, Err: fmt.Errorf("format %q: want qcow2 or raw", src.Format)}
	}
	if src.ConvertTo != "" && src.ConvertTo != FormatQCOW2 && src.ConvertTo != FormatRaw {
		return request{}, &SourceError{Field: FieldConvertTo, Err: fmt.Errorf("format %q: want qcow2 or raw", src.ConvertTo)}
	}
	loc, err := resolve(src.URL, s.roots, FieldSource)
	if err != nil {
		return request{}, err
	}
	want, err := s.expected(ctx, src, loc)
	if err != nil {
		return request{}, err
	}
	req := request{src: src, loc: loc, want: want}
	if loc.Path != "" {
		st, err := os.Stat(loc.Path)
		if err != nil {
			return request{}, &SourceError{Field: FieldSource, Err: err}
		}
		req.key = statKey(loc.Path, st)
	}
	return req, nil
}

// checkCached applies the virtual-size cap to a cache hit: the cap may have
// been lowered since the image was inspected.
func (s *Store) checkCached(file string, img *Image) error {
	if img.VirtualSize > s.maxVirtualSize {
		return unsafeErr(file, ViolationVirtualSize, "virtual size %d bytes exceeds the cap of %d bytes", img.VirtualSize, s.maxVirtualSize)
	}
	return nil
}

// fetchResolved returns the vendor's image for req, unheld: from the cache,
// or ingested.
func (s *Store) fetchResolved(ctx context.Context, req request, progress func(done, total int64)) (*Image, error) {
	src := req.src
	lookup := func() *Image { return s.cached(req.want, req.key, src.Format) }
	if img := lookup(); img != nil {
		if err := s.checkCached(src.URL, img); err != nil {
			return nil, err
		}
		s.log.Debug("image cache hit", "source", src.URL, "path", img.Path)
		return img, nil
	}
	return s.shared(ctx, req.flightKey(src.Format), lookup, func() (*Image, error) {
		return s.ingest(ctx, src, req.loc, req.want, req.key, progress)
	})
}

// shared runs fn once for all concurrent callers in this process that name
// the same key: the first leads, the others wait and get the leader's image
// marked Cached. When the leader's context ended, a waiter takes the image
// from the cache (lookup) or tries again, maybe as the leader.
func (s *Store) shared(ctx context.Context, key string, lookup func() *Image, fn func() (*Image, error)) (*Image, error) {
	for {
		s.mu.Lock()
		f, waiting := s.flights[key]
		if !waiting {
			f = &flight{done: make(chan struct{})}
			s.flights[key] = f
		}
		s.mu.Unlock()

		if !waiting {
			s.lead(f, key, fn)
			return f.img, f.err
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		if f.err == nil {
			img := *f.img
			img.Cached = true
			return &img, nil
		}
		if !errors.Is(f.err, context.Canceled) && !errors.Is(f.err, context.DeadlineExceeded) {
			return nil, f.err
		}
		// The leader's job was cancelled; try again, maybe as the leader.
		if img := lookup(); img != nil {
			return img, nil
		}
	}
}

// lead runs fn as the flight's leader and releases the waiters on every
// path, a panic included.
func (s *Store) lead(f *flight, key string, fn func() (*Image, error)) {
	f.err = errors.New("image ingest did not finish")
	defer func() {
		s.mu.Lock()
		delete(s.flights, key)
		s.mu.Unlock()
		close(f.done)
	}()
	f.img, f.err = fn()
}

func (s *Store) cached(want *digest, key fileKey, format string) *Image {
	if want != nil {
		return s.lookup(*want, format)
	}
	sum, ok := s.indexed(key)
	if !ok {
		return nil
	}
	return s.lookup(digest{Algo: "sha256", Hex: sum}, format)
}

// indexed returns the SHA-256 recorded for an unchanged file source.
func (s *Store) indexed(key fileKey) (string, bool) {
	if key.Path == "" {
		return "", false
	}
	data, err := os.ReadFile(key.indexPath(s.dir))
	if err != nil {
		return "", false
	}
	var idx fileIndex
	if json.Unmarshal(data, &idx) != nil || idx.Key != key {
		return "", false
	}
	return idx.SHA256, true
}

// expected returns the digest the job expects, from Checksum or the SUMS
// file, or nil when neither is given (allowed for file sources only). A digest
// never comes from an unauthenticated list: see signaturePolicy.
func (s *Store) expected(ctx context.Context, src Source, loc location) (*digest, error) {
	if src.Checksum != "" {
		d, err := parseChecksum(src.Checksum)
		if err != nil {
			return nil, &SourceError{Field: FieldChecksum, Err: err}
		}
		return &d, nil
	}
	if src.SumsURL == "" {
		if loc.HTTP != "" {
			return nil, &SourceError{Field: FieldChecksum, Err: errors.New("required for http(s) sources (or give a SUMS file URL)")}
		}
		if src.SumsSignature != "" {
			return nil, &SourceError{Field: FieldSumsSig, Err: errors.New("only meaningful with image.sums_url")}
		}
		return nil, nil
	}
	sloc, err := resolve(src.SumsURL, s.roots, FieldSumsURL)
	if err != nil {
		return nil, err
	}
	if err := s.signaturePolicy(src, sloc); err != nil {
		return nil, err
	}
	data, err := s.fetchSmall(ctx, sloc, FieldSumsURL, sumsLimit)
	if err != nil {
		return nil, err
	}
	if data, err = s.verifySums(ctx, src, sloc, data); err != nil {
		return nil, err
	}
	name := src.SumsName
	if name == "" {
		name = loc.Name
	}
	d, ok, err := lookupSums(data, name)
	if err != nil {
		return nil, &SourceError{Field: FieldSumsURL, Err: fmt.Errorf("%s: %w", sloc, err)}
	}
	if !ok {
		return nil, &SourceError{Field: FieldSumsName, Err: fmt.Errorf("%q not listed in %s", name, sloc)}
	}
	return &d, nil
}

// signaturePolicy refuses, before anything is downloaded, a job whose SUMS
// file this worker could not authenticate: plain http:// without a keyring to
// check a signature against, or a signature given to a worker without one.
// (An http:// image is then only ever checked against an authenticated digest:
// the job's own, or one from an https, local or signature-verified list.)
func (s *Store) signaturePolicy(src Source, sloc location) error {
	if s.keyring != nil {
		return nil
	}
	switch {
	case src.SumsSignature != "":
		return &SourceError{Field: FieldSumsSig, Err: errors.New("this worker has no OpenPGP keyring to check it against (start it with --keyring)")}
	case strings.HasPrefix(sloc.HTTP, "http://"):
		return &SourceError{Field: FieldSumsURL, Err: fmt.Errorf("%s: a checksum list over plain http proves nothing without a signature this worker can verify (use https, pin image.checksum, or a worker with --keyring)", sloc)}
	}
	return nil
}

// clearSignedHeader starts a clear-signed document.
var clearSignedHeader = []byte("-----BEGIN PGP SIGNED MESSAGE-----")

// verifySums checks the SUMS file's signature when the worker has a keyring and
// returns the text to look digests up in (a clear-signed file's signed body).
func (s *Store) verifySums(ctx context.Context, src Source, sloc location, data []byte) ([]byte, error) {
	clear := bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), clearSignedHeader)
	if s.keyring == nil {
		// Nothing to verify against: a clear-signed file's body is read as is.
		return data, nil
	}
	var (
		signer string
		err    error
	)
	switch {
	case src.SumsSignature != "":
		gloc, rerr := resolve(src.SumsSignature, s.roots, FieldSumsSig)
		if rerr != nil {
			return nil, rerr
		}
		sig, ferr := s.fetchSmall(ctx, gloc, FieldSumsSig, sigLimit)
		if ferr != nil {
			return nil, ferr
		}
		signer, err = s.keyring.VerifyDetached(data, sig)
	case clear:
		data, signer, err = s.keyring.VerifyClearSigned(data)
	default:
		return nil, &SourceError{Field: FieldSumsSig, Err: fmt.Errorf("required: this worker accepts checksum lists only signed by a key in %s; %s is not clear-signed and the job names no detached signature", s.keyring.Name(), sloc)}
	}
	if err != nil {
		return nil, &SignatureError{File: src.SumsURL, Err: err}
	}
	s.log.Info("checksum list signature verified", "sums", sloc.String(), "signer", signer)
	return data, nil
}

// openFile opens a resolved file source and re-checks, on the open
// descriptor, that it is still a regular file under the roots (the path may
// have been swapped since resolve).
func (s *Store) openFile(loc location, field string) (*os.File, error) {
	f, err := os.Open(loc.Path)
	if err != nil {
		return nil, &SourceError{Field: field, Err: err}
	}
	real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err == nil && !underRoots(real, s.roots) {
		f.Close()
		return nil, &SourceError{Field: field, Err: fmt.Errorf("%q now resolves to %q, outside the allowed file roots", loc.Path, real)}
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, &SourceError{Field: field, Err: fmt.Errorf("%q is not a regular file", loc.Path)}
	}
	return f, nil
}

// ingest streams the source into a temp file, verifies, inspects and
// publishes it. The temp file is removed on every failure path.
func (s *Store) ingest(ctx context.Context, src Source, loc location, want *digest, key fileKey, progress func(done, total int64)) (*Image, error) {
	start := time.Now()
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "ingest-*.part")
	if err != nil {
		return nil, &FetchError{URL: src.URL, Retryable: true, Err: err}
	}
	published := false
	defer func() {
		tmp.Close()
		if !published {
			os.Remove(tmp.Name())
		}
	}()

	sum256, sum512, n, err := s.receive(ctx, src, loc, want, key, tmp, progress)
	if err != nil {
		return nil, err
	}
	hashed := time.Since(start)
	info, err := s.inspectFile(ctx, tmp, n, src.Format, tmp.Name())
	if err != nil {
		return nil, inspectFailure(err, src.URL, src.URL, "inspect")
	}

	f := facts{Inspector: inspectorVersion, Format: src.Format, Size: n, VirtualSize: info.VirtualSize, SHA256: sum256, SHA512: sum512}
	if err := s.makeRoom(n); err != nil {
		return nil, &FetchError{URL: src.URL, Retryable: true, Err: err}
	}
	img, err := s.publish(tmp, f)
	if err != nil {
		return nil, &FetchError{URL: src.URL, Retryable: true, Err: err}
	}
	published = true
	if key.Path != "" && unchanged(key) {
		if err := s.writeJSON(key.indexPath(s.dir), fileIndex{Key: key, SHA256: sum256}); err != nil {
			s.log.Warn("image file index not written", "err", err)
		}
	}
	s.log.Info("image ingested", "source", src.URL, "path", img.Path, "bytes", n,
		"hash_seconds", hashed.Seconds(), "total_seconds", time.Since(start).Seconds())
	return img, nil
}

// receive streams the source at loc into tmp and vouches for the bytes it
// hashed: a local file (key) did not change while it was read, and they have the
// wanted digest, if any.
func (s *Store) receive(ctx context.Context, src Source, loc location, want *digest, key fileKey, tmp *os.File, progress func(done, total int64)) (sum256, sum512 string, n int64, err error) {
	if loc.HTTP != "" {
		sum256, sum512, n, err = s.download(ctx, loc.HTTP, src.URL, tmp, progress)
	} else {
		sum256, sum512, n, err = s.copyFile(ctx, loc, src.URL, tmp, progress)
	}
	if err != nil {
		return "", "", 0, err
	}
	if key.Path != "" && !unchanged(key) {
		// The bytes hashed may mix two versions of the file.
		return "", "", 0, &FetchError{URL: src.URL, Retryable: true, Err: fmt.Errorf("%s changed while it was read", loc.Path)}
	}
	if want != nil {
		if got := want.pick(sum256, sum512); got != want.Hex {
			return "", "", 0, &ChecksumMismatchError{File: src.URL, Algo: want.Algo, Want: want.Hex, Got: got}
		}
	}
	return sum256, sum512, n, nil
}

// inspectFile inspects the file f (n bytes, at name) as format and checks that it
// is safe to boot: within the store's limits, and a qcow2 passes qemu-img check
// when the store runs it.
func (s *Store) inspectFile(ctx context.Context, f *os.File, n int64, format, name string) (Info, error) {
	info, err := Inspect(f, n)
	if err == nil {
		err = info.Check(format, s.maxVirtualSize)
	}
	if err == nil && format == FormatQCOW2 && s.qemuCheck && s.qemuImg != "" {
		err = s.qemuCheckImage(ctx, name)
	}
	return info, err
}

// inspectFailure classifies a failed inspection of url's bytes: the image's
// fault (*UnsafeImageError, then naming file) or a retryable error saying what
// was inspected.
func inspectFailure(err error, url, file, what string) error {
	var ue *UnsafeImageError
	if errors.As(err, &ue) {
		ue.File = file
		return ue
	}
	return &FetchError{URL: url, Retryable: true, Err: fmt.Errorf("%s: %w", what, err)}
}

// unchanged reports whether the file still matches the key taken before it
// was read; a file modified while being read must not be indexed.
func unchanged(k fileKey) bool {
	st, err := os.Stat(k.Path)
	return err == nil && statKey(k.Path, st) == k
}

// copyFile streams a local file source into tmp through the pipeline.
func (s *Store) copyFile(ctx context.Context, loc location, file string, tmp *os.File, progress func(done, total int64)) (string, string, int64, error) {
	f, err := s.openFile(loc, FieldSource)
	if err != nil {
		return "", "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", "", 0, &SourceError{Field: FieldSource, Err: err}
	}
	total := st.Size()
	if total > s.maxSize {
		return "", "", 0, unsafeErr(file, ViolationTooLarge, "file is %d bytes, above the cap of %d bytes", total, s.maxSize)
	}
	p := newPipeline(tmp)
	rerr := p.readFrom(ctx, f, s.maxSize, func(done int64) {
		if progress != nil {
			progress(done, total)
		}
	})
	sum256, sum512, n, ferr := p.finish()
	var we *writeError
	switch {
	case errors.Is(rerr, errTooLarge):
		return "", "", 0, unsafeErr(file, ViolationTooLarge, "file exceeds the cap of %d bytes", s.maxSize)
	case rerr != nil && ctx.Err() != nil:
		return "", "", 0, rerr
	case errors.As(rerr, &we):
		return "", "", 0, &FetchError{URL: file, Retryable: true, Err: rerr}
	case rerr != nil:
		return "", "", 0, &FetchError{URL: file, Retryable: true, Err: fmt.Errorf("read %s: %w", loc.Path, rerr)}
	case ferr != nil:
		return "", "", 0, &FetchError{URL: file, Retryable: true, Err: ferr}
	}
	return sum256, sum512, n, nil
}

// publish syncs tmp, makes it read-only and renames it into place, then
// writes its facts under both digests. An existing identical entry (another
// process won the race) is kept.
func (s *Store) publish(tmp *os.File, f facts) (*Image, error) {
	dst := s.imagePath(f.SHA256, f.Format)
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := tmp.Chmod(0o444); err != nil {
		return nil, err
	}
	if st, err := os.Stat(dst); err != nil || st.Size() != f.Size {
		if err := os.Rename(tmp.Name(), dst); err != nil {
			return nil, err
		}
	} else {
		os.Remove(tmp.Name())
	}
	if err := s.writeJSON(s.factsPath("sha512", f.SHA512, f.Format), f); err != nil {
		return nil, err
	}
	if err := s.writeJSON(s.factsPath("sha256", f.SHA256, f.Format), f); err != nil {
		return nil, err
	}
	return &Image{Path: dst, Format: f.Format, Size: f.Size, VirtualSize: f.VirtualSize, SHA256: f.SHA256, SHA512: f.SHA512}, nil
}

// writeJSON writes v atomically (temp file + rename), mode 0444.
func (s *Store) writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "meta-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o444)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Dir returns the cache root.
func (s *Store) Dir() string { return s.dir }
