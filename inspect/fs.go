package inspect

import (
	"context"
	"errors"
	"io/fs"

	"github.com/imagevet/imagevet/jobs"
)

// FS reads inside an image's file systems, mounted as the image's OS would
// (read-only). One FS belongs to one inspection; its methods are not safe for
// concurrent use.
type FS interface {
	// ReadFile returns at most max bytes of path; an error wrapping
	// fs.ErrNotExist when absent.
	ReadFile(ctx context.Context, path string, max int64) ([]byte, error)
	// Glob returns the paths matching pattern (shell glob, as guestfish
	// glob-expand), directories without a trailing slash.
	Glob(ctx context.Context, pattern string) ([]string, error)
	// Find lists every entry under dir (recursively, dir itself excluded) with
	// its mode and size (symbolic links are not followed).
	Find(ctx context.Context, dir string) ([]File, error)
}

// File is one entry Find listed: its absolute path in the image, mode and size.
type File struct {
	Path string
	Mode fs.FileMode
	Size int64
}

// Reader reads more from an inspected image into ins, in the inspection's one
// appliance session, after the facts. An error is recorded on ins.Error beside
// the other readers' and does not stop them.
type Reader func(ctx context.Context, fsys FS, ins *jobs.Inspection) error

// readers is the table of what an inspection reads once the image's file
// systems are mounted, in order; each row names itself in errors.
var readers = []struct {
	name string
	read Reader
}{
	{"os-release", readOSRelease},
	{"admin user", readAdminUser},
	{"kernels", readKernels},
	{"hygiene evidence", readHygieneEvidence},
}

// isNotExist reports whether err says a path is absent.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
