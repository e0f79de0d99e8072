package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"
)

// Class says who is to blame for an error (see jobs.Class).
type Class = jobs.Class

// Error classes.
const (
	ClassInfra = jobs.ClassInfra
	ClassImage = jobs.ClassImage
	ClassJob   = jobs.ClassJob
)

// ImageFault marks an error the image is to blame for, with the check it failed.
type ImageFault struct {
	Check  string
	Reason string
}

func (e *ImageFault) Error() string { return e.Check + ": " + e.Reason }

// ErrorClass: the image's fault.
func (e *ImageFault) ErrorClass() (Class, bool) { return ClassImage, false }

// JobFault marks an error the job is to blame for.
type JobFault struct{ Err error }

func (e *JobFault) Error() string { return e.Err.Error() }
func (e *JobFault) Unwrap() error { return e.Err }

// ErrorClass: the job's fault, whatever it wraps.
func (e *JobFault) ErrorClass() (Class, bool) { return ClassJob, false }

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

// ErrorClass: a stage that ran out of time could not decide, whatever it was
// doing when it stopped: the infrastructure's lot, worth another try.
func (e *TimeoutError) ErrorClass() (Class, bool) { return ClassInfra, true }

// errConsoleFatal stops a guest's work when its console showed a fatal line; the
// verdict itself is the console's match, not this cause.
var errConsoleFatal = errors.New("fatal console line")

// Classify maps any error from a job's lifecycle to its class and whether running the
// job again may help. Errors say their own class (jobs.Classed); what does not is
// the host's (disk, permissions, a dead daemon, shutdown): worth one more try on
// the same or another worker. Callers never look at error text.
func Classify(err error) (Class, bool) {
	if err == nil {
		return ClassInfra, false
	}
	if c, retry, ok := jobs.ClassOf(err); ok {
		return c, retry
	}
	return ClassInfra, true
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
	return jobs.FirstLine(err.Error(), 300)
}
