package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ErrCacheFull means a new image does not fit under the cache cap even after
// evicting every image no job holds: retry once running jobs have finished.
var ErrCacheFull = errors.New("image cache full")

// Release lets the cache evict the image again. It is idempotent and safe on
// an image that was never held.
func (img *Image) Release() {
	if img != nil && img.hold != nil {
		img.hold.Close()
		img.hold = nil
	}
}

// hold opens img's file with a shared lock, so makeRoom in any process skips
// it, and marks it used now for the least-recently-used order. A file evicted
// since it was looked up gives fs.ErrNotExist.
func (s *Store) hold(img *Image) (*Image, error) {
	f, err := os.Open(img.Path)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, err
	}
	// Evicted while we waited for the lock: the facts are gone.
	facts := s.factsPath("sha256", img.SHA256, img.Format)
	now := time.Now()
	if err := os.Chtimes(facts, now, now); err != nil {
		f.Close()
		return nil, err
	}
	held := *img
	held.hold = f
	return &held, nil
}

// cached is one entry of the cache as makeRoom sees it.
type cachedEntry struct {
	facts    string // sha256 facts file; its mtime is the last use
	image    string
	sha512   string // sha512 facts file
	size     int64  // blocks it occupies (see diskUsage)
	lastUsed time.Time
}

// entries lists the complete entries in the cache.
func (s *Store) entries() ([]cachedEntry, error) {
	paths, err := filepath.Glob(filepath.Join(s.dir, "sha256", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []cachedEntry
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".json") // <hex>.<format>
		sum, format, ok := strings.Cut(name, ".")
		if !ok {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		img := s.lookup(digest{Algo: "sha256", Hex: sum}, format)
		if img == nil {
			continue
		}
		size := img.Size
		if ist, err := os.Stat(img.Path); err == nil {
			size = diskUsage(ist)
		}
		out = append(out, cachedEntry{facts: p, image: img.Path, sha512: s.factsPath("sha512", img.SHA512, format),
			size: size, lastUsed: st.ModTime()})
	}
	return out, nil
}

// makeRoom evicts images no job holds, least recently used first, until an
// image of need bytes fits under the cap. A cache-wide lock file serialises
// eviction between processes sharing the directory.
func (s *Store) makeRoom(need int64) error {
	if s.maxCache <= 0 {
		return nil
	}
	if need > s.maxCache {
		return fmt.Errorf("%w: the image is %d bytes, the cache cap (--cache-max) %d", ErrCacheFull, need, s.maxCache)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lock, err := os.OpenFile(filepath.Join(s.dir, "evict.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	ents, err := s.entries()
	if err != nil {
		return err
	}
	var total int64
	for _, e := range ents {
		total += e.size
	}
	slices.SortFunc(ents, func(a, b cachedEntry) int { return a.lastUsed.Compare(b.lastUsed) })
	held := int64(0)
	for _, e := range ents {
		if total+need <= s.maxCache {
			break
		}
		evicted, err := s.evict(e)
		if err != nil {
			return err
		}
		if evicted {
			total -= e.size
			s.log.Info("image evicted", "path", e.image, "bytes", e.size, "last_used", e.lastUsed)
		} else {
			held += e.size
		}
	}
	if total+need > s.maxCache {
		return fmt.Errorf("%w: %d bytes needed, %d of the %d-byte cap (--cache-max) held by running jobs", ErrCacheFull, need, held, s.maxCache)
	}
	return nil
}

// evict removes one entry unless a job holds it (a shared lock on the image):
// facts first, so a lookup never finds facts without the image.
func (s *Store) evict(e cachedEntry) (bool, error) {
	f, err := os.Open(e.image)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, err
	}
	for _, p := range []string{e.facts, e.sha512, e.image} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	}
	return true, nil
}
