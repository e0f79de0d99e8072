package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/imagevet/imagevet/internal/testenv"
)

// rawImage is a valid raw disk of size bytes whose content depends on seed.
func rawImage(size int, seed uint64) []byte {
	b := mbrDisk(size, [3]uint32{0x80, 0x83, 2048})
	copy(b[1<<20:], randomBytes(size-(1<<20), seed))
	return b
}

func cacheStore(t *testing.T, dir, root string, maxCache int64) *Store {
	t.Helper()
	s, err := NewStore(StoreConfig{Dir: dir, FileRoots: []string{root}, MaxCacheBytes: maxCache, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// The cache stays under its cap by evicting the least recently used image no
// job holds; when everything left is held, a new image fails retryably.
func TestCacheEvictsLeastRecentlyUsedUnheld(t *testing.T) {
	root := t.TempDir()
	const size = 2 << 20
	for i, name := range []string{"a.raw", "b.raw", "c.raw", "d.raw"} {
		writeFile(t, root, name, rawImage(size, uint64(i+1)))
	}
	writeFile(t, root, "huge.raw", rawImage(3*size, 9))
	s := cacheStore(t, filepath.Join(t.TempDir(), "cache"), root, 2*size+size/2) // room for two
	ctx := context.Background()
	fetch := func(name string) (*Image, error) {
		return s.Fetch(ctx, Source{URL: name, Format: FormatRaw}, nil)
	}
	must := func(name string) *Image {
		t.Helper()
		img, err := fetch(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return img
	}

	a := must("a.raw")
	a.Release()
	time.Sleep(10 * time.Millisecond) // distinct last-use times
	b := must("b.raw")                // held, like a running job's base
	c := must("c.raw")                // needs room: evicts a, not the held b
	if exists(a.Path) || !exists(b.Path) || !exists(c.Path) {
		t.Fatalf("after c: a %v b %v c %v; want a evicted", exists(a.Path), exists(b.Path), exists(c.Path))
	}
	c.Release()
	a2 := must("a.raw") // back in: c is the only unheld image
	if a2.Cached || exists(c.Path) || !exists(b.Path) {
		t.Fatalf("after a again: cached %v, c %v, b %v", a2.Cached, exists(c.Path), exists(b.Path))
	}

	// a2 and b are held: d cannot fit.
	_, err := fetch("d.raw")
	var fe *FetchError
	if !errors.As(err, &fe) || !fe.Retryable || !errors.Is(err, ErrCacheFull) {
		t.Fatalf("d with everything held: %v, want a retryable ErrCacheFull", err)
	}
	if _, err := fetch("huge.raw"); !errors.Is(err, ErrCacheFull) {
		t.Fatalf("an image larger than the cap: %v", err)
	}
	assertNoTemp(t, s)

	// Once a job finishes, its image can go.
	b.Release()
	b.Release() // idempotent
	if d := must("d.raw"); exists(b.Path) || !exists(a2.Path) {
		t.Fatalf("after releasing b: b %v a %v d %v", exists(b.Path), exists(a2.Path), d.Path)
	}
	// A cache hit refreshes the last use: a (used last) stays, d goes.
	a3 := must("a.raw")
	if !a3.Cached {
		t.Fatal("a not served from the cache")
	}
}

// A cache on a full file system: the fetch fails with a retryable error that
// says so, leaves no partial file, and the next image that fits is served.
// The test mounts its own 8 MiB tmpfs (root only) and unmounts it after.
func TestFetchDiskFull(t *testing.T) {
	mnt := testenv.Tmpfs(t, 8<<20)
	root := t.TempDir()
	writeFile(t, root, "big.raw", rawImage(16<<20, 1))
	ti := newTestImage()
	writeFile(t, root, "small.qcow2", ti.data)
	s := cacheStore(t, filepath.Join(mnt, "cache"), root, 0)
	ctx := context.Background()

	_, err := s.Fetch(ctx, Source{URL: "big.raw", Format: FormatRaw}, nil)
	var fe *FetchError
	if !errors.As(err, &fe) || !fe.Retryable || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("full disk: %v, want a retryable error wrapping ENOSPC", err)
	}
	assertNoTemp(t, s)
	if left, _ := filepath.Glob(filepath.Join(mnt, "cache", "sha256", "*")); len(left) != 0 {
		t.Fatalf("published after a full disk: %v", left)
	}
	img, err := s.Fetch(ctx, Source{URL: "small.qcow2", Format: FormatQCOW2, Checksum: "sha256:" + ti.sha256}, nil)
	if err != nil {
		t.Fatalf("the next image after a full disk: %v", err)
	}
	img.Release()
}
