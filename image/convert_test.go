package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagevet/imagevet/internal/testenv"
)

// fileDigests returns the sha256 and sha512 of a file, read as a stream.
func fileDigests(t testing.TB, path string) (string, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h256, h512 := sha256.New(), sha512.New()
	if _, err := io.Copy(io.MultiWriter(h256, h512), f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h256.Sum(nil)), hex.EncodeToString(h512.Sum(nil))
}

// allocated is the space a file occupies on disk.
func allocated(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}

// sparseDisk writes a raw disk of size bytes into dir: an MBR and dataLen
// random bytes at 1 MiB, zeros after them (holes in the file).
func sparseDisk(t testing.TB, dir, name string, size int64, dataLen int, seed uint64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := mbrDisk(int(size), [3]uint32{0x80, 0x83, 2048})[:1<<20]
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(randomBytes(dataLen, seed)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// vendorQCOW2 makes a qcow2 of a 64 MiB disk holding 4 MiB of data, with
// qemu-img, in root; it returns its name and sha512.
func vendorQCOW2(t testing.TB, root string) (string, string) {
	t.Helper()
	needQemuImg(t)
	src := sparseDisk(t, t.TempDir(), "src.raw", 64<<20, 4<<20, 11)
	run(t, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", src, filepath.Join(root, "vendor.qcow2"))
	_, sum512 := fileDigests(t, filepath.Join(root, "vendor.qcow2"))
	return "vendor.qcow2", sum512
}

// A qcow2 asked for as raw: the returned image is the raw conversion, byte
// for byte what `qemu-img convert -O raw` writes, sparse, with the vendor's
// verified file as Vendor; a second fetch (also by the other digest, also
// after the vendor file left the cache) converts nothing.
func TestFetchConvertsQCOW2ToRaw(t *testing.T) {
	root := t.TempDir()
	name, vendor512 := vendorQCOW2(t, root)
	vendor256, _ := fileDigests(t, filepath.Join(root, name))
	want := filepath.Join(t.TempDir(), "want.raw")
	run(t, "qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", filepath.Join(root, name), want)
	want256, want512 := fileDigests(t, want)

	s := newStore(t, root)
	ctx := context.Background()
	src := Source{URL: name, Format: FormatQCOW2, Checksum: "sha256:" + vendor256, ConvertTo: FormatRaw}
	img, err := s.Fetch(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Format != FormatRaw || img.SHA512 != want512 || img.SHA256 != want256 || img.Size != 64<<20 || img.VirtualSize != 64<<20 || img.Cached {
		t.Fatalf("converted image %+v, want raw of 64 MiB with sha512 %s", img, want512)
	}
	if got256, got512 := fileDigests(t, img.Path); got256 != want256 || got512 != want512 {
		t.Fatalf("the file in the cache has sha512 %s, its facts say %s", got512, want512)
	}
	if a := allocated(t, img.Path); a > 8<<20 {
		t.Fatalf("converted raw occupies %d bytes of its 64 MiB: not sparse", a)
	}
	vst, _ := os.Stat(filepath.Join(root, name))
	if img.Vendor == nil || *img.Vendor != (Facts{Format: FormatQCOW2, Size: vst.Size(), VirtualSize: 64 << 20, SHA256: vendor256, SHA512: vendor512}) {
		t.Fatalf("vendor facts %+v, want the qcow2's (sha512 %s)", img.Vendor, vendor512)
	}
	if st, err := os.Stat(img.Path); err != nil || st.Mode().Perm() != 0o444 || filepath.Dir(img.Path) != filepath.Join(s.Dir(), "sha256") {
		t.Fatalf("converted image at %s: %v %v, want read-only in the cache", img.Path, st.Mode(), err)
	}
	img.Release()
	assertNoTemp(t, s)

	// A store that cannot convert (no qemu-img) still serves it: from the
	// cache, by either vendor digest, with or without the vendor file cached.
	noConv, err := NewStore(StoreConfig{Dir: s.Dir(), FileRoots: []string{root}, QemuImg: "/nonexistent/qemu-img"})
	if err != nil {
		t.Fatal(err)
	}
	for _, check := range []string{"sha256:" + vendor256, "sha512:" + vendor512} {
		again, err := noConv.Fetch(ctx, Source{URL: name, Format: FormatQCOW2, Checksum: check, ConvertTo: FormatRaw}, nil)
		if err != nil {
			t.Fatalf("%s: %v", check, err)
		}
		if !again.Cached || again.Path != img.Path || again.SHA512 != want512 || again.Vendor == nil || again.Vendor.SHA512 != vendor512 {
			t.Fatalf("%s: second fetch %+v, want the cached conversion", check, again)
		}
		again.Release()
	}
	if err := os.Remove(filepath.Join(s.Dir(), "sha256", vendor256+".qcow2")); err != nil {
		t.Fatal(err)
	}
	again, err := noConv.Fetch(ctx, src, nil)
	if err != nil || again.Path != img.Path {
		t.Fatalf("after the vendor file left the cache: %+v %v", again, err)
	}
	again.Release()

	// The same vendor file without ConvertTo (or ConvertTo = its format) is the vendor's.
	for _, to := range []string{"", FormatQCOW2} {
		own, err := s.Fetch(ctx, Source{URL: name, Format: FormatQCOW2, Checksum: "sha512:" + vendor512, ConvertTo: to}, nil)
		if err != nil || own.Format != FormatQCOW2 || own.SHA512 != vendor512 || own.Vendor != nil {
			t.Fatalf("ConvertTo %q: %+v %v, want the vendor's qcow2", to, own, err)
		}
		own.Release()
	}
}

// A raw vendor file asked for as qcow2 is what `qemu-img convert -O qcow2`
// writes, and passes `qemu-img check`. A file source without a checksum is
// found again by its stat key.
func TestFetchConvertsRawToQCOW2(t *testing.T) {
	needQemuImg(t)
	root := t.TempDir()
	sparseDisk(t, root, "vendor.raw", 32<<20, 2<<20, 5)
	want := filepath.Join(t.TempDir(), "want.qcow2")
	run(t, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", filepath.Join(root, "vendor.raw"), want)
	_, want512 := fileDigests(t, want)
	_, vendor512 := fileDigests(t, filepath.Join(root, "vendor.raw"))

	s := newStore(t, root)
	src := Source{URL: "vendor.raw", Format: FormatRaw, ConvertTo: FormatQCOW2}
	img, err := s.Fetch(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	if img.Format != FormatQCOW2 || img.SHA512 != want512 || img.VirtualSize != 32<<20 || img.Vendor == nil || img.Vendor.SHA512 != vendor512 || img.Vendor.Format != FormatRaw {
		t.Fatalf("converted %+v vendor %+v, want qcow2 with sha512 %s", img, img.Vendor, want512)
	}
	run(t, "qemu-img", "check", "-q", "-f", "qcow2", img.Path)
	again, err := s.Fetch(context.Background(), src, nil)
	if err != nil || !again.Cached || again.Path != img.Path {
		t.Fatalf("second fetch: %+v %v, want the cached conversion", again, err)
	}
	again.Release()
}

// A conversion must pass the same inspection as a fetched image: an empty
// qcow2 (valid as qcow2) converts to a raw disk without a boot sector, which
// is refused and not published.
func TestFetchConvertedImageInspected(t *testing.T) {
	needQemuImg(t)
	root := t.TempDir()
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(root, "empty.qcow2"), "16M")
	s := newStore(t, root)
	_, err := s.Fetch(context.Background(), Source{URL: "empty.qcow2", Format: FormatQCOW2, ConvertTo: FormatRaw}, nil)
	ue := wantRule(t, err, ViolationPartitionTable)
	if !strings.Contains(ue.File, "converted to raw") {
		t.Fatalf("error names %q, want the file and its conversion", ue.File)
	}
	assertNoTemp(t, s)
	if left, _ := filepath.Glob(filepath.Join(s.Dir(), "sha256", "*.raw*")); len(left) != 0 {
		t.Fatalf("unsafe conversion published: %v", left)
	}

	_, err = s.Fetch(context.Background(), Source{URL: "empty.qcow2", Format: FormatQCOW2, ConvertTo: "vmdk"}, nil)
	var se *SourceError
	if !errors.As(err, &se) || se.Field != FieldConvertTo {
		t.Fatalf("ConvertTo vmdk: %v, want a SourceError naming %s", err, FieldConvertTo)
	}
}

// wrappedStore returns a store over root whose qemu-img is a shell script that
// runs onConvert (shell lines) before a convert, then the real qemu-img.
func wrappedStore(t *testing.T, root, onConvert string) *Store {
	t.Helper()
	real := needQemuImg(t)
	script := "#!/bin/sh\nif [ \"$1\" = convert ]; then\n  " + onConvert + "\nfi\nexec " + real + " \"$@\"\n"
	wrapper := writeFile(t, t.TempDir(), "qemu-img", []byte(script))
	if err := os.Chmod(wrapper, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(StoreConfig{Dir: filepath.Join(t.TempDir(), "cache"), FileRoots: []string{root}, QemuImg: wrapper})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Cancelling a fetch while qemu-img converts kills qemu-img and removes its
// temp file. The qemu-img here is a script that writes part of the output and
// sleeps, standing in for a long conversion.
func TestFetchConvertCancelled(t *testing.T) {
	root := t.TempDir()
	name, _ := vendorQCOW2(t, root)
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := wrappedStore(t, root, "for out; do :; done\n  echo partial > \"$out\"\n  echo $$ > "+pidFile+"\n  exec sleep 60")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Fetch(ctx, Source{URL: name, Format: FormatQCOW2, ConvertTo: FormatRaw}, nil)
		errc <- err
	}()
	var pid int
	for deadline := time.Now().Add(20 * time.Second); pid == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("qemu-img convert never started")
		}
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if left, _ := filepath.Glob(filepath.Join(s.Dir(), "tmp", "convert-*")); len(left) != 1 {
		t.Fatalf("temp files while converting: %v, want one", left)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled conversion: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Fetch did not return after cancel")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("qemu-img (pid %d) still there after cancel: %v", pid, err)
	}
	assertNoTemp(t, s)
}

// The converted file counts against the cache cap with the blocks it
// occupies: a sparse 64 MiB raw holding 4 MiB fits a 12 MiB cap, after
// evicting the least recently used image no job holds.
func TestFetchConvertCountsAgainstCacheMax(t *testing.T) {
	root := t.TempDir()
	name, _ := vendorQCOW2(t, root)
	writeFile(t, root, "old.raw", rawImage(5<<20, 3))
	s := cacheStore(t, filepath.Join(t.TempDir(), "cache"), root, 12<<20)
	ctx := context.Background()
	old, err := s.Fetch(ctx, Source{URL: "old.raw", Format: FormatRaw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	old.Release()
	time.Sleep(10 * time.Millisecond) // old is the least recently used
	img, err := s.Fetch(ctx, Source{URL: name, Format: FormatQCOW2, ConvertTo: FormatRaw}, nil)
	if err != nil {
		t.Fatalf("a sparse conversion within the cap: %v", err)
	}
	if exists(old.Path) {
		t.Fatal("old.raw not evicted to make room for the conversion (5 + 4.3 + 4 MiB > 12 MiB)")
	}
	if !exists(img.Path) || !exists(filepath.Join(s.Dir(), "sha256", img.Vendor.SHA256+".qcow2")) {
		t.Fatal("the conversion or its vendor file is missing")
	}

	// Held, the conversion is not evicted: a new image that needs its room fails retryably.
	writeFile(t, root, "big.raw", rawImage(9<<20, 4))
	_, err = s.Fetch(ctx, Source{URL: "big.raw", Format: FormatRaw}, nil)
	var fe *FetchError
	if !errors.As(err, &fe) || !fe.Retryable || !errors.Is(err, ErrCacheFull) || !exists(img.Path) {
		t.Fatalf("room taken from a held conversion: %v (still there: %v)", err, exists(img.Path))
	}
	img.Release()
	assertNoTemp(t, s)
}

// A conversion that fills the cache's disk (a 6 MiB tmpfs this test mounts,
// a compressed qcow2 of 16 MiB of non-zero data) fails with the retryable
// error a full disk gives a download, and leaves no partial file.
func TestFetchConvertDiskFull(t *testing.T) {
	needQemuImg(t)
	mnt := testenv.Tmpfs(t, 6<<20)
	root := t.TempDir()
	raw := mbrDisk(16<<20, [3]uint32{0x80, 0x83, 2048})
	for i := 1 << 20; i < len(raw); i++ {
		raw[i] = byte(i % 251)
	}
	src := filepath.Join(t.TempDir(), "src.raw")
	if err := os.WriteFile(src, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", src, filepath.Join(root, "packed.qcow2"))
	s := cacheStore(t, filepath.Join(mnt, "cache"), root, 0)
	_, err := s.Fetch(context.Background(), Source{URL: "packed.qcow2", Format: FormatQCOW2, ConvertTo: FormatRaw}, nil)
	var fe *FetchError
	if !errors.As(err, &fe) || !fe.Retryable || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("full disk: %v, want a retryable error wrapping ENOSPC", err)
	}
	t.Logf("full disk: %v", err)
	assertNoTemp(t, s)
	if left, _ := filepath.Glob(filepath.Join(mnt, "cache", "sha256", "*.raw*")); len(left) != 0 {
		t.Fatalf("published after a full disk: %v", left)
	}
}

// sparseReader gives exactly the file's bytes, holes (at the start, between
// data, at the end) as zeros, whatever the read sizes.
func TestSparseReader(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 9<<20 + 123
	for _, off := range []int64{3 << 20, 5<<20 + 7} {
		if _, err := f.WriteAt(randomBytes(1<<20+5, uint64(off)), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if a := allocated(t, p); a >= size/2 {
		t.Fatalf("test file occupies %d of %d bytes: not sparse here", a, size)
	}
	for _, bufSize := range []int{4096, 1<<20 + 1, 8 << 20} {
		r := &sparseReader{f: f, size: size}
		var got []byte
		buf := make([]byte, bufSize)
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(got) != size || !bytes.Equal(got, want) {
			t.Fatalf("buffer %d: read %d bytes, equal %v", bufSize, len(got), bytes.Equal(got, want))
		}
	}
}

// Jobs of one vendor file and target format that start together share one
// conversion: qemu-img convert runs once (counted by a wrapper around the real
// qemu-img), one caller gets it fresh, the others as cached, all the same file
// with the vendor's facts.
func TestFetchConcurrentConversionsShareOne(t *testing.T) {
	root := t.TempDir()
	name, vendor512 := vendorQCOW2(t, root)
	count := filepath.Join(t.TempDir(), "converts")
	s := wrappedStore(t, root, "echo x >> "+count+"\n  sleep 0.3")
	const jobs = 4
	imgs, errs := make([]*Image, jobs), make([]error, jobs)
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Go(func() {
			imgs[i], errs[i] = s.Fetch(context.Background(), Source{URL: name, Format: FormatQCOW2, Checksum: "sha512:" + vendor512, ConvertTo: FormatRaw}, nil)
		})
	}
	wg.Wait()
	fresh := 0
	for i := range jobs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if imgs[i].Path != imgs[0].Path || imgs[i].Format != FormatRaw || imgs[i].Vendor == nil || imgs[i].Vendor.SHA512 != vendor512 {
			t.Fatalf("job %d got %+v, job 0 %+v", i, imgs[i], imgs[0])
		}
		if !imgs[i].Cached {
			fresh++
		}
		imgs[i].Release()
	}
	runs, _ := os.ReadFile(count)
	if n := strings.Count(string(runs), "x"); n != 1 || fresh != 1 {
		t.Fatalf("qemu-img convert ran %d times, %d fresh results; want one of each", n, fresh)
	}
}
