// Package owner ties an imagevet process's machines and job directories to the
// process itself: each run or worker holds an exclusive lock on its own file in
// STATE-DIR/owners for as long as it lives, and records that file as the owner of
// every machine it boots. The kernel releases the lock when the process dies, however
// it dies, so a sweep can tell orphans (owner lock free or gone) from machines of a
// live neighbour (`imagevet run` beside a worker, two workers on one host) and never
// touches the latter.
package owner

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Lock is the live process's claim. Its methods are safe for concurrent use.
type Lock struct {
	f    *os.File
	id   string
	path string
}

// Dir is where the owner lock files of a state directory live.
func Dir(stateDir string) string { return filepath.Join(stateDir, "owners") }

// Acquire creates and locks a new owner file for this process under stateDir,
// named after name (a worker id) and a random suffix, so any number of processes
// with the same name coexist.
func Acquire(stateDir, name string) (*Lock, error) {
	dir := Dir(stateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("owner lock: %w", err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("owner lock: %w", err)
	}
	id := name + "-" + hex.EncodeToString(b[:])
	path := filepath.Join(dir, id+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("owner lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("owner lock %s: %w", path, err)
	}
	_, _ = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return &Lock{f: f, id: id, path: path}, nil
}

// ID is the owner id (the lock file's name without ".lock"): unique per process.
func (l *Lock) ID() string { return l.id }

// Path is the lock file, recorded as the owner of machines.
func (l *Lock) Path() string { return l.path }

// Release gives the claim up and removes the file; the caller must have destroyed
// its machines first.
func (l *Lock) Release() error {
	err := os.Remove(l.path)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Orphaned reports whether the owner recorded as lockPath is gone: its file is in
// stateDir's owner directory (owners elsewhere are another state directory's to
// judge) and no live process holds its lock. An empty lockPath (a machine made
// before owners were recorded) is never judged orphaned.
func Orphaned(stateDir, lockPath string) bool {
	if lockPath == "" || filepath.Dir(lockPath) != Dir(stateDir) || !strings.HasSuffix(lockPath, ".lock") {
		return false
	}
	f, err := os.OpenFile(lockPath, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false // cannot tell: leave it
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err != nil {
		return false // held: its process is alive
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}

// Path returns the lock path of owner id under stateDir.
func Path(stateDir, id string) string { return filepath.Join(Dir(stateDir), id+".lock") }

// Prune removes the lock files of dead owners under stateDir and returns their ids;
// run it after their machines and directories are gone.
func Prune(stateDir string) []string {
	paths, _ := filepath.Glob(filepath.Join(Dir(stateDir), "*.lock"))
	var ids []string
	for _, p := range paths {
		if Orphaned(stateDir, p) && os.Remove(p) == nil {
			ids = append(ids, strings.TrimSuffix(filepath.Base(p), ".lock"))
		}
	}
	return ids
}
