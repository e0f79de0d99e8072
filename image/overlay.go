package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// Limits for every qemu-img run: address space, CPU seconds and wall time.
const (
	qemuImgMemory        = 1 << 30
	overlayCPUSeconds    = 10
	overlayTimeout       = 10 * time.Second
	checkCPUSeconds      = 120
	checkTimeout         = 3 * time.Minute
	qemuCheckCorrupt     = 2 // qemu-img check exit code: corruptions found
	qemuCheckLeaksOnly   = 3 // leaked clusters only: harmless for a read-only base
	qemuCheckUnsupported = 63
)

// Overlay creates a qcow2 overlay at path backed by base, with both formats
// explicit (`qemu-img create -u -f qcow2 -F <fmt> -b <base> <path> <size>`),
// under prlimit and a 10 s deadline, so a job
// writes only the overlay and the cached base is never written. An existing
// file at path is replaced. The parent directory must exist.
func (s *Store) Overlay(ctx context.Context, base *Image, path string) error {
	if s.qemuImg == "" {
		return &FetchError{URL: path, Retryable: false, Err: errors.New("qemu-img not found")}
	}
	if base == nil || !filepath.IsAbs(base.Path) {
		return fmt.Errorf("overlay %s: base image path must be absolute", path)
	}
	if base.Format != FormatQCOW2 && base.Format != FormatRaw {
		return fmt.Errorf("overlay %s: base format %q: want qcow2 or raw", path, base.Format)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	// The base was verified and inspected when it entered the cache, so
	// qemu-img need not open it (-u, with the size given): that halves the
	// time. Still make sure it is there.
	if st, err := os.Stat(base.Path); err != nil || !st.Mode().IsRegular() {
		return &FetchError{URL: base.Path, Retryable: true, Err: fmt.Errorf("base image missing from the cache: %v", err)}
	}
	_, err = s.runQemuImg(ctx, overlayTimeout, overlayCPUSeconds,
		"create", "-q", "-u", "-f", FormatQCOW2, "-F", base.Format, "-b", base.Path,
		abs, strconv.FormatInt(base.VirtualSize, 10))
	if err != nil {
		os.Remove(abs)
		return &FetchError{URL: abs, Retryable: true, Err: fmt.Errorf("create overlay: %w", err)}
	}
	return nil
}

// qemuCheckImage runs `qemu-img check` on an already inspected qcow2 file.
// Corruption is an *UnsafeImageError; leaked clusters are accepted.
func (s *Store) qemuCheckImage(ctx context.Context, path string) error {
	out, err := s.runQemuImg(ctx, checkTimeout, checkCPUSeconds,
		"check", "-f", FormatQCOW2, "--force-share", path)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && (ee.ExitCode() == qemuCheckLeaksOnly || ee.ExitCode() == qemuCheckUnsupported):
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == qemuCheckCorrupt:
		return unsafeErr("", ViolationCorrupt, "qemu-img check found corruption: %s", jobs.FirstLine(string(out), 0))
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return unsafeErr("", ViolationCorrupt, "qemu-img check could not check the image: %s", jobs.FirstLine(string(out), 0))
	default:
		return fmt.Errorf("qemu-img check: %w", err)
	}
}

// runQemuImg runs qemu-img under prlimit (address space and CPU time) and a
// deadline, returning combined output. The error is an *exec.ExitError for a
// non-zero exit, with the first output line added to its message by callers.
func (s *Store) runQemuImg(ctx context.Context, timeout time.Duration, cpuSeconds int, args ...string) ([]byte, error) {
	return s.runQemuImgAS(ctx, timeout, cpuSeconds, qemuImgMemory, args...)
}

// runQemuImgAS is runQemuImg with an address-space limit of its own.
func (s *Store) runQemuImgAS(ctx context.Context, timeout time.Duration, cpuSeconds int, addressSpace int64, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := []string{
		"--as=" + strconv.FormatInt(addressSpace, 10),
		"--cpu=" + strconv.Itoa(cpuSeconds),
		"--", s.qemuImg,
	}
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, "prlimit", argv...)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// One malloc arena per thread would reserve 64 MiB of address space for each
	// of qemu's I/O threads.
	cmd.Env = append(os.Environ(), "LC_ALL=C", "MALLOC_ARENA_MAX=2")
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		return out.Bytes(), fmt.Errorf("qemu-img %s: %w", args[0], ctx.Err())
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.Bytes(), &qemuImgError{ExitError: ee, msg: jobs.FirstLine(out.String(), 0)}
		}
		return out.Bytes(), err
	}
	return out.Bytes(), nil
}

// qemuImgError is a failed qemu-img run with its first output line.
type qemuImgError struct {
	*exec.ExitError
	msg string
}

func (e *qemuImgError) Error() string { return e.ExitError.Error() + ": " + e.msg }
func (e *qemuImgError) Unwrap() error { return e.ExitError }
