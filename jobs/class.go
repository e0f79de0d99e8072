package jobs

import "errors"

// Class says who is to blame for an error that ended a job, which decides the
// verdict and whether the job is tried again.
type Class int

// Error classes.
const (
	// ClassInfra is the worker's or host's fault (libvirtd down, disk full, download
	// failed, shutdown): verdict error, retried when the error says it may help.
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

// Classed is an error that knows its class and whether running the job again may
// help. An error that wraps others and knows better than what it wraps (a stage
// that ran out of time) says so itself; one that only carries context (a failed
// download) defers to a classed error inside it (see ClassOf).
type Classed interface {
	error
	ErrorClass() (c Class, retryable bool)
}

// ClassOf returns the class of the outermost error in err's tree that knows its
// class; ok is false when none does.
func ClassOf(err error) (c Class, retryable, ok bool) {
	var classed Classed
	if errors.As(err, &classed) {
		c, retryable = classed.ErrorClass()
		return c, retryable, true
	}
	return ClassInfra, false, false
}

// ErrorClass: an invalid document is the submitter's fault.
func (e *InvalidError) ErrorClass() (Class, bool) { return ClassJob, false }
