package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imagevet/imagevet/cloudinit"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/image"
	"github.com/imagevet/imagevet/worker/vm"
)

// Class says who is to blame for an error, which decides the verdict and whether the
// job is tried again.
type Class int

// Error classes.
const (
	// ClassInfra is the worker's or host's fault (libvirtd down, disk full, download
	// failed, shutdown): verdict error, retried with backoff.
	ClassInfra Class = iota
	// ClassImage is the image's fault: verdict fail, never retried.
	ClassImage
	// ClassJob is the submitter's fault (invalid job, missing file, wrong checksum):
	// verdict error, never retried.
	ClassJob
)

func (c Class) String() string {
	switch c {
	case ClassImage:
		return "image"
	case ClassJob:
		return "job"
	default:
		return "infrastructure"
	}
}

// ImageFault marks an error the image is to blame for, with the check it failed.
type ImageFault struct {
	Check  string
	Reason string
}

func (e *ImageFault) Error() string { return e.Check + ": " + e.Reason }

// JobFault marks an error the job is to blame for.
type JobFault struct{ Err error }

func (e *JobFault) Error() string { return e.Err.Error() }
func (e *JobFault) Unwrap() error { return e.Err }

// TimeoutError is a stage that ran out of time before it could decide. It is
// the infrastructure's lot (retryable): a stage that judges the image (ssh,
// cloud-init, commands) records its own failure instead when its time runs out.
type TimeoutError struct {
	// Stage is what ran out of time: "fetch", "prepare", "boot", or "job" for the
	// job's total timeout as a cancel cause.
	Stage string
	// Limit is the timeout that ran out; Total says it was the job's total one.
	Limit time.Duration
	Total bool
	// Err is what the stage returned when it stopped, if anything.
	Err error
}

func (e *TimeoutError) Error() string {
	which := e.Stage + " timeout"
	if e.Total {
		which = "total timeout"
	}
	if e.Stage == "job" {
		return fmt.Sprintf("the job's total timeout of %s ran out", e.Limit)
	}
	return fmt.Sprintf("%s did not finish within the job's %s of %s", e.Stage, which, e.Limit)
}

// Unwrap returns what the stage returned.
func (e *TimeoutError) Unwrap() error { return e.Err }

// errConsoleFatal stops a guest's work when its console showed a fatal line; the
// verdict itself is the console's match, not this cause.
var errConsoleFatal = errors.New("fatal console line")

// errShutdown is the cancel cause when the worker stops while a job runs.
var errShutdown = errors.New("worker shutting down")

// Classify maps any error from a job's lifecycle to its class and whether running the
// job again may help. It is the one place that decides; callers never look at
// error text.
func Classify(err error) (Class, bool) {
	var (
		fault    *ImageFault
		timeout  *TimeoutError
		jobFault *JobFault
		invalid  *jobs.InvalidError
		unsafe   *image.UnsafeImageError
		badSig   *image.SignatureError
		mismatch *image.ChecksumMismatchError
		source   *image.SourceError
		fetch    *image.FetchError
		vmErr    *vm.Error
	)
	switch {
	case err == nil:
		return ClassInfra, false
	case errors.As(err, &timeout):
		// Before ImageFault: a stage's error may wrap whatever the context's
		// cause was when it stopped.
		return ClassInfra, true
	case errors.As(err, &fault), errors.As(err, &unsafe), errors.As(err, &badSig):
		return ClassImage, false
	case errors.As(err, &jobFault), errors.As(err, &invalid), errors.As(err, &mismatch),
		errors.As(err, &source), errors.Is(err, cloudinit.ErrInvalid):
		return ClassJob, false
	case errors.As(err, &fetch):
		return ClassInfra, fetch.Retryable
	case errors.As(err, &vmErr):
		return ClassInfra, vmErr.Retryable
	case errors.Is(err, errShutdown), errors.Is(err, context.Canceled):
		return ClassInfra, true
	default:
		// Unknown errors come from the host (disk, permissions, a dead daemon):
		// worth one more try on the same or another worker.
		return ClassInfra, true
	}
}

// verdictOf turns a class into the verdict it implies.
func verdictOf(c Class) jobs.Verdict {
	if c == ClassImage {
		return jobs.VerdictFail
	}
	return jobs.VerdictError
}

// describe renders err as the one-line reason a result carries.
func describe(err error) string {
	var unsafe *image.UnsafeImageError
	if errors.As(err, &unsafe) {
		return fmt.Sprintf("unsafe image %s (%s): %s", unsafe.File, unsafe.Rule, unsafe.Reason)
	}
	return oneLine(err.Error())
}
