package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Facts describes one image file as the cache recorded it when it was
// verified and inspected.
type Facts struct {
	Format      string // "qcow2" or "raw"
	Size        int64  // file size in bytes (a sparse raw's apparent size)
	VirtualSize int64  // disk size the guest sees
	SHA256      string // lower-case hex
	SHA512      string // lower-case hex
}

func (f facts) public() Facts {
	return Facts{Format: f.Format, Size: f.Size, VirtualSize: f.VirtualSize, SHA256: f.SHA256, SHA512: f.SHA512}
}

// converterVersion is recorded with every conversion; raising it (a change of
// qemu-img options) makes older conversions cache misses.
const converterVersion = 1

// Limits for one `qemu-img convert`: the job's context bounds it; these only
// stop a runaway process of a job without a deadline.
const (
	convertTimeout         = 2 * time.Hour
	convertCPUSecondsBase  = 60
	convertCPUSecondsPerGB = 10
	// convertAddressSpace: a conversion runs up to 64 I/O threads, each with
	// its stack, where `qemu-img info`-like runs need one; the image was
	// inspected before, so its tables are within qemu's own limits.
	convertAddressSpace = 4 << 30
	// fullDiskMargin: a failed conversion that leaves less than this free
	// under the cache ran out of space.
	fullDiskMargin = 4 << 20
)

// conversion is the JSON record under converted/: the vendor file, the
// target format, and the converted image's SHA-256 (its own entry in the
// cache). Written last, after the converted image's facts.
type conversion struct {
	Converter int    `json:"converter"`
	Vendor    facts  `json:"vendor"`
	Target    string `json:"target"`
	SHA256    string `json:"sha256"`
}

func (s *Store) conversionPath(d digest, format, target string) string {
	return filepath.Join(s.dir, "converted", d.Algo, d.Hex+"."+format+"."+target+".json")
}

// lookupConversion returns the cached conversion of the vendor file with
// digest d and format to target, or nil.
func (s *Store) lookupConversion(d digest, format, target string) *Image {
	data, err := os.ReadFile(s.conversionPath(d, format, target))
	if err != nil {
		return nil
	}
	var c conversion
	if json.Unmarshal(data, &c) != nil || c.Converter != converterVersion || c.Target != target || c.Vendor.Format != format {
		return nil
	}
	if d.pick(c.Vendor.SHA256, c.Vendor.SHA512) != d.Hex {
		return nil
	}
	img := s.lookup(digest{Algo: "sha256", Hex: c.SHA256}, target)
	if img == nil {
		return nil
	}
	v := c.Vendor.public()
	img.Vendor = &v
	return img
}

// cachedConversion finds req's conversion by the expected digest, or for a
// file source without one by its stat key.
func (s *Store) cachedConversion(req request) *Image {
	if req.want != nil {
		return s.lookupConversion(*req.want, req.src.Format, req.src.ConvertTo)
	}
	sum, ok := s.indexed(req.key)
	if !ok {
		return nil
	}
	return s.lookupConversion(digest{Algo: "sha256", Hex: sum}, req.src.Format, req.src.ConvertTo)
}

// fetchConverted returns req's vendor file converted to req.src.ConvertTo,
// unheld: from the cache, or fetched (held while it is converted) and
// converted. Concurrent calls for one conversion share it.
func (s *Store) fetchConverted(ctx context.Context, req request, progress func(done, total int64)) (*Image, error) {
	src := req.src
	lookup := func() *Image { return s.cachedConversion(req) }
	if img := lookup(); img != nil {
		if err := s.checkCached(src.URL, img); err != nil {
			return nil, err
		}
		s.log.Debug("converted image cache hit", "source", src.URL, "format", src.ConvertTo, "path", img.Path)
		return img, nil
	}
	return s.shared(ctx, req.flightKey(src.Format+">"+src.ConvertTo), lookup, func() (*Image, error) {
		vendor, err := s.holdFetched(src.URL, func() (*Image, error) { return s.fetchResolved(ctx, req, progress) })
		if err != nil {
			return nil, err
		}
		defer vendor.Release()
		// Another process may have converted it meanwhile.
		if img := s.lookupConversion(digest{Algo: "sha256", Hex: vendor.SHA256}, src.Format, src.ConvertTo); img != nil {
			img.Cached = vendor.Cached
			return img, nil
		}
		return s.convert(ctx, src.URL, vendor, src.ConvertTo)
	})
}

// convert writes vendor (held by the caller) converted to target into a
// temp file with `qemu-img convert`, hashes and inspects it as any fetched
// image, and publishes it with its conversion record. It releases vendor
// once the converted file is hashed, so making room for it may evict the
// vendor file. The temp file is removed on every failure path.
func (s *Store) convert(ctx context.Context, file string, vendor *Image, target string) (*Image, error) {
	start := time.Now()
	if s.qemuImg == "" {
		return nil, &FetchError{URL: file, Retryable: false, Err: errors.New("converting to " + target + ": qemu-img not found")}
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "convert-*.part")
	if err != nil {
		return nil, &FetchError{URL: file, Retryable: true, Err: err}
	}
	name := tmp.Name()
	tmp.Close()
	published := false
	var out *os.File
	defer func() {
		if out != nil {
			out.Close()
		}
		if !published {
			os.Remove(name)
		}
	}()

	if err := s.runConvert(ctx, file, vendor, target, name); err != nil {
		return nil, err
	}
	converted := time.Since(start)

	out, err = os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, &FetchError{URL: file, Retryable: true, Err: err}
	}
	st, err := out.Stat()
	if err != nil {
		return nil, &FetchError{URL: file, Retryable: true, Err: err}
	}
	n := st.Size()
	if n > s.maxSize {
		return nil, unsafeErr(file, ViolationTooLarge, "converted to %s it is %d bytes, above the cap of %d bytes", target, n, s.maxSize)
	}
	sum256, sum512, err := hashConverted(ctx, file, out, n)
	if err != nil {
		return nil, err
	}
	vendorFacts := facts{Inspector: inspectorVersion, Format: vendor.Format, Size: vendor.Size, VirtualSize: vendor.VirtualSize, SHA256: vendor.SHA256, SHA512: vendor.SHA512}
	vendor.Release()

	info, err := s.checkConverted(ctx, file, target, name, out, n, vendorFacts.VirtualSize)
	if err != nil {
		return nil, err
	}

	f := facts{Inspector: inspectorVersion, Format: target, Size: n, VirtualSize: info.VirtualSize, SHA256: sum256, SHA512: sum512}
	if err := s.makeRoom(diskUsage(st)); err != nil {
		return nil, &FetchError{URL: file, Retryable: true, Err: err}
	}
	img, err := s.publish(out, f)
	if err != nil {
		return nil, &FetchError{URL: file, Retryable: true, Err: err}
	}
	published = true
	rec := conversion{Converter: converterVersion, Vendor: vendorFacts, Target: target, SHA256: sum256}
	for _, d := range []digest{{Algo: "sha256", Hex: vendorFacts.SHA256}, {Algo: "sha512", Hex: vendorFacts.SHA512}} {
		if err := s.writeJSON(s.conversionPath(d, vendorFacts.Format, target), rec); err != nil {
			return nil, &FetchError{URL: file, Retryable: true, Err: fmt.Errorf("record conversion: %w", err)}
		}
	}
	v := vendorFacts.public()
	img.Vendor = &v
	s.log.Info("image converted", "source", file, "from", vendorFacts.Format, "to", target, "path", img.Path,
		"bytes", n, "allocated", diskUsage(st), "convert_seconds", converted.Seconds(), "total_seconds", time.Since(start).Seconds())
	return img, nil
}

// runConvert has qemu-img write vendor converted to target into name. A failure
// is retryable (a full disk says so), unless ctx ended.
func (s *Store) runConvert(ctx context.Context, file string, vendor *Image, target, name string) error {
	cpu := convertCPUSecondsBase + convertCPUSecondsPerGB*int(vendor.VirtualSize>>30)
	// -f and -O explicit: qemu-img never probes; -U: a running job may boot
	// the vendor file; raw output is sparse (zero runs of 4 KiB and more are
	// holes, qemu-img's default -S).
	_, err := s.runQemuImgAS(ctx, convertTimeout, cpu, convertAddressSpace,
		"convert", "-q", "-U", "-f", vendor.Format, "-O", target, vendor.Path, name)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("convert %s to %s: %w", file, target, err)
		}
		if s.diskFull() {
			err = fmt.Errorf("%w (%w: the image cache's file system is full)", err, syscall.ENOSPC)
		}
		return &FetchError{URL: file, Retryable: true, Err: fmt.Errorf("convert to %s: %w", target, err)}
	}
	return nil
}

// hashConverted hashes the converted file out (n bytes), syncing it meanwhile.
func hashConverted(ctx context.Context, file string, out *os.File, n int64) (sum256, sum512 string, err error) {
	// Sync while hashing: the write-back of what qemu-img wrote overlaps the
	// hashing's CPU, and publish's own sync finds little left.
	synced := make(chan error, 1)
	go func() { synced <- out.Sync() }()
	p := newPipeline(nil)
	rerr := p.readFrom(ctx, &sparseReader{f: out, size: n}, 0, nil)
	sum256, sum512, _, ferr := p.finish()
	if err := <-synced; err != nil && rerr == nil && ferr == nil {
		ferr = err
	}
	switch {
	case rerr != nil && ctx.Err() != nil:
		return "", "", rerr
	case rerr != nil:
		return "", "", &FetchError{URL: file, Retryable: true, Err: fmt.Errorf("read converted image: %w", rerr)}
	case ferr != nil:
		return "", "", &FetchError{URL: file, Retryable: true, Err: ferr}
	}
	return sum256, sum512, nil
}

// checkConverted inspects the converted file out (n bytes, at name) as any
// fetched image, and checks it keeps the vendor's virtual size; an unsafe
// result names the vendor's file and the conversion.
func (s *Store) checkConverted(ctx context.Context, file, target, name string, out *os.File, n, vendorVirtual int64) (Info, error) {
	info, err := s.inspectFile(ctx, out, n, target, name)
	if err == nil && info.VirtualSize < vendorVirtual {
		err = fmt.Errorf("converted image has %d virtual bytes, the vendor's %d", info.VirtualSize, vendorVirtual)
	}
	if err != nil {
		return info, inspectFailure(err, file, file+" (converted to "+target+")", "inspect converted image")
	}
	return info, nil
}

// diskFull reports whether the cache's file system has (almost) no space
// left: how a failed qemu-img run is told to be a full disk without reading
// its message.
func (s *Store) diskFull() bool {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Join(s.dir, "tmp"), &fs); err != nil {
		return false
	}
	return fs.Bavail*uint64(fs.Bsize) < fullDiskMargin
}

// diskUsage is the space a cached file occupies: its allocated blocks, never
// more than its size (a sparse raw occupies less than its size).
func diskUsage(st os.FileInfo) int64 {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys.Blocks == 0 {
		return st.Size()
	}
	return min(st.Size(), sys.Blocks*512)
}

// Whence values of lseek(2) that find the data and the holes of a sparse file.
const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// sparseReader reads a file of size bytes from the start, giving a hole's
// zeros without reading it: the kernel would zero a page-cache page for every
// page of a hole (most of a sparse raw disk) only to copy it out.
type sparseReader struct {
	f    *os.File
	size int64
	off  int64
	data int64 // [off, end) is data when data == off, a hole when data > off
	end  int64
}

func (r *sparseReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.off >= r.end {
		if err := r.region(); err != nil {
			return 0, err
		}
	}
	n := int(min(int64(len(p)), r.end-r.off))
	if r.data > r.off {
		clear(p[:n])
	} else {
		var err error
		if n, err = r.f.ReadAt(p[:n], r.off); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return n, err
		}
	}
	r.off += int64(n)
	return n, nil
}

// region finds the data or hole that starts at r.off. A file system without
// SEEK_DATA makes the rest of the file one data region.
func (r *sparseReader) region() error {
	data, err := r.f.Seek(r.off, seekData)
	switch {
	case errors.Is(err, syscall.ENXIO): // no data after off: a hole to the end
		r.data, r.end = r.size, r.size
		return nil
	case err != nil:
		r.data, r.end = r.off, r.size
		return nil
	case data > r.off:
		r.data, r.end = data, min(data, r.size)
		return nil
	}
	hole, err := r.f.Seek(r.off, seekHole)
	if err != nil || hole <= r.off {
		hole = r.size
	}
	r.data, r.end = r.off, min(hole, r.size)
	return nil
}
