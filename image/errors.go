package image

import (
	"fmt"

	"github.com/imagevet/imagevet/jobs"
)

// Violation names the rule an unsafe image broke, so callers and tests can
// tell rejections apart without matching on message text.
type Violation string

// The rules Inspect, Info.Check and Store.Fetch enforce.
const (
	ViolationEmpty           Violation = "empty"            // zero-byte file
	ViolationFormatMismatch  Violation = "format-mismatch"  // detected format differs from the claimed one
	ViolationMultipleFormats Violation = "multiple-formats" // headers of two formats in one file
	ViolationBackingFile     Violation = "backing-file"     // qcow2 refers to a backing file
	ViolationDataFile        Violation = "data-file"        // qcow2 keeps its data in an external file
	ViolationUnknownFeature  Violation = "unknown-feature"  // qcow2 incompatible feature bits we do not know
	ViolationEncrypted       Violation = "encrypted"        // encrypted qcow2 (needs a secret to boot)
	ViolationCorrupt         Violation = "corrupt"          // qcow2 corrupt bit set, or qemu-img check found corruption
	ViolationBadHeader       Violation = "bad-header"       // header fields out of range or inconsistent
	ViolationTruncated       Violation = "truncated"        // header or tables reach beyond the end of the file
	ViolationVirtualSize     Violation = "virtual-size"     // virtual size above the configured cap
	ViolationTooLarge        Violation = "too-large"        // file itself above the configured cap
	ViolationPartitionTable  Violation = "partition-table"  // raw disk with an invalid or missing MBR/GPT
)

// UnsafeImageError means the image itself is at fault: it must not be booted
// and the verdict is fail. It is never worth retrying.
type UnsafeImageError struct {
	File   string    // the image as the job named it (URL or path)
	Rule   Violation // which rule was broken
	Reason string    // one line for humans, e.g. "qcow2 has a backing file \"/etc/passwd\""
}

func (e *UnsafeImageError) Error() string {
	if e.File == "" {
		return "image rejected: " + e.Reason
	}
	return fmt.Sprintf("image %s rejected: %s", e.File, e.Reason)
}

// ChecksumMismatchError means the downloaded bytes do not match the expected
// digest: the job or the vendor's SUMS file is at fault (verdict error, not
// retried).
type ChecksumMismatchError struct {
	File string // the image as the job named it
	Algo string // "sha256" or "sha512"
	Want string // expected hex digest
	Got  string // computed hex digest
}

func (e *ChecksumMismatchError) Error() string {
	return fmt.Sprintf("image %s: %s mismatch: want %s, got %s", e.File, e.Algo, e.Want, e.Got)
}

// SourceError means the job's image source is bad, missing or forbidden
// (verdict error, not retried). Field is the job field path at fault, e.g.
// "image.source" or "image.checksum".
type SourceError struct {
	Field string
	Err   error
}

func (e *SourceError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the underlying cause.
func (e *SourceError) Unwrap() error { return e.Err }

// FetchError is a download or infrastructure problem (network, server 5xx,
// local disk). Retryable says whether running the job again later may
// succeed.
type FetchError struct {
	URL       string
	Retryable bool
	Err       error
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("fetch %s: %v", e.URL, e.Err)
}

// Unwrap returns the underlying cause.
func (e *FetchError) Unwrap() error { return e.Err }

func unsafeErr(file string, rule Violation, format string, args ...any) *UnsafeImageError {
	return &UnsafeImageError{File: file, Rule: rule, Reason: fmt.Sprintf(format, args...)}
}

// sourceErr is a *SourceError naming the job field field.
func sourceErr(field, format string, args ...any) error {
	return &SourceError{Field: field, Err: fmt.Errorf(format, args...)}
}

// SignatureError means the SUMS file's OpenPGP signature did not verify
// against the worker's keyring (bad signature, a key not in the keyring, or
// signature data that does not parse): its checksums prove nothing, and the
// verdict is fail, not retried. Err wraps keyring.ErrBadSignature,
// keyring.ErrUnknownKey or keyring.ErrMalformed.
type SignatureError struct {
	File string // the SUMS file as the job named it
	Err  error
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("checksum list %s: %v", e.File, e.Err)
}

// Unwrap returns the keyring's error.
func (e *SignatureError) Unwrap() error { return e.Err }

// ErrorClass: an unsafe image is the image's fault.
func (e *UnsafeImageError) ErrorClass() (jobs.Class, bool) { return jobs.ClassImage, false }

// ErrorClass: a checksum mismatch is the job's (or its vendor list's) fault.
func (e *ChecksumMismatchError) ErrorClass() (jobs.Class, bool) { return jobs.ClassJob, false }

// ErrorClass: a bad source is the job's fault.
func (e *SourceError) ErrorClass() (jobs.Class, bool) { return jobs.ClassJob, false }

// ErrorClass: a failed fetch is the infrastructure's, retryable as marked, unless
// what it wraps knows better.
func (e *FetchError) ErrorClass() (jobs.Class, bool) {
	if c, retry, ok := jobs.ClassOf(e.Err); ok {
		return c, retry
	}
	return jobs.ClassInfra, e.Retryable
}

// ErrorClass: a checksum list whose signature does not verify fails the image.
func (e *SignatureError) ErrorClass() (jobs.Class, bool) { return jobs.ClassImage, false }
