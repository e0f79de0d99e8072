package jobs

import (
	"encoding/json"
	"time"
)

// Verdict is the answer for one job.
type Verdict string

// Verdicts. See ARCHITECTURE.md: pass is publishable, fail is the image's fault, error
// is not (a bad job, or infrastructure; Retryable tells which).
const (
	VerdictPass  Verdict = "pass"
	VerdictFail  Verdict = "fail"
	VerdictError Verdict = "error"
)

// CheckStatus is the outcome of one check.
type CheckStatus string

// Check outcomes. A check that could not be judged because of the worker or the job
// (not the image) is an error.
const (
	StatusPass  CheckStatus = "pass"
	StatusFail  CheckStatus = "fail"
	StatusSkip  CheckStatus = "skip"
	StatusError CheckStatus = "error"
)

// Result is the verdict on one job with everything needed to trust it or find out why
// an image failed.
type Result struct {
	Version int     `json:"version"`
	JobID   string  `json:"job_id"`
	Verdict Verdict `json:"verdict"`
	// Retryable marks an error verdict caused by infrastructure: the job may be run again.
	Retryable bool `json:"retryable,omitempty"`
	// FailedCheck and Reason say, in one line, why the verdict is not pass.
	FailedCheck string        `json:"failed_check,omitempty"`
	Reason      string        `json:"reason,omitempty"`
	Checks      []CheckResult `json:"checks"`
	// Warnings are what a publisher should know although the image passed, e.g.
	// that it ignored the seeded host keys and was trusted from its console.
	Warnings   []string    `json:"warnings,omitempty"`
	Stages     []Stage     `json:"stages"`
	ImageFacts *ImageFacts `json:"image_facts,omitempty"`
	// Inspection is the offline look inside the vetted file, when it ran.
	Inspection *Inspection `json:"inspection,omitempty"`
	// ConsoleTail is the end of the serial console log.
	ConsoleTail string `json:"console_tail,omitempty"`
	// ConsoleLog is where the worker kept the whole console log, when it kept it.
	ConsoleLog string `json:"console_log,omitempty"`
	Worker     string `json:"worker"`
	Attempt    int    `json:"attempt"`
	Accel      string `json:"accel,omitempty"`
	Machine    string `json:"machine,omitempty"` // libvirt domain name
	// VettedWith is the virtual hardware the verdict holds for: a publisher tells
	// the cloud to boot the image the same way (hw_firmware_type, hw_machine_type,
	// hw_disk_bus).
	VettedWith *VettedMachine `json:"vetted_with,omitempty"`
	StartedAt  time.Time      `json:"started_at"`
	FinishedAt time.Time      `json:"finished_at"`
	Publish    Publication    `json:"publish,omitzero"`
	// Kept is set when the worker left the failed machine running for debugging.
	Kept *KeptMachine `json:"kept,omitempty"`
	// ConsoleMarks are the console lines that told the story of the boot: the first
	// line of each boot milestone and the fatal line, if any, in console order.
	ConsoleMarks []ConsoleMark `json:"console_marks,omitempty"`
}

// Console mark kinds.
const (
	MarkMilestone = "milestone"
	MarkFatal     = "fatal"
)

// ConsoleMark is one console line the worker's console table matched, with when it
// was read: what a timeline of the boot is drawn from.
type ConsoleMark struct {
	// Kind is MarkMilestone or MarkFatal.
	Kind string `json:"kind"`
	// Name is the console check's name (kernel, login-prompt, kernel-panic…).
	Name   string `json:"name"`
	Reason string `json:"reason"`
	// Line is the console line as cleaned by the watcher.
	Line string    `json:"line"`
	At   time.Time `json:"at"`
}

// VettedMachine is the virtual hardware an image was booted on, in Nova's terms.
type VettedMachine struct {
	Firmware  string `json:"firmware"`     // bios or uefi (hw_firmware_type)
	Type      string `json:"machine_type"` // pc or q35 (hw_machine_type)
	DiskBus   string `json:"disk_bus"`     // the root disk's bus (hw_disk_bus)
	MemoryMiB int    `json:"memory_mib"`
	// User is the login user the checks used (the SCS image_original_user).
	User string `json:"user"`
}

// DiskBusVirtio is the bus the worker attaches the image's disk on (worker/vm/libvirt
// builds every domain with its root disk on virtio).
const DiskBusVirtio = "virtio"

// KeptMachine tells how to reach a machine left running after a failed job.
type KeptMachine struct {
	Domain     string `json:"domain"`
	SSHCommand string `json:"ssh_command"`
	ConsoleLog string `json:"console_log"`
}

// CheckResult is one check's outcome.
type CheckResult struct {
	Name     string      `json:"name"`
	Status   CheckStatus `json:"status"`
	Required bool        `json:"required"`
	Reason   string      `json:"reason,omitempty"` // one line
	Detail   string      `json:"detail,omitempty"` // command output, log excerpts
	Duration Duration    `json:"duration"`
}

// Stage is one timed step of the job lifecycle (fetch, seed, boot, ssh, checks, cleanup).
type Stage struct {
	Name     string    `json:"name"`
	Start    time.Time `json:"start"`
	Duration Duration  `json:"duration"`
	Error    string    `json:"error,omitempty"`
}

// ImageFacts describe the vetted image file as published.
type ImageFacts struct {
	Size        int64  `json:"size"`
	VirtualSize int64  `json:"virtual_size"`
	Format      string `json:"format"`
	SHA256      string `json:"sha256"`
	// OSHashAlgo and OSHashValue are Glance's os_hash_algo/os_hash_value (sha512),
	// which seed pipelines also publish as source_hash.
	OSHashAlgo  string `json:"os_hash_algo"`
	OSHashValue string `json:"os_hash_value"`
	// Source is the job's image.source, as vetted: where a publisher fetches the
	// exact bytes again (and verifies them against SHA256/OSHashValue) when it has no
	// copy of its own.
	Source string `json:"source,omitempty"`
	// VendorDigest is the digest the vendor published for the image ("sha512:<hex>"),
	// when the job named one.
	VendorDigest string `json:"vendor_digest,omitempty"`
	// Vendor is the vendor's file as fetched and verified, when the published file
	// is a conversion of it (publish.disk_format differs from the vendor's format);
	// nil when the published file is the vendor's own.
	Vendor *VendorFile `json:"vendor,omitempty"`
}

// VendorFile describes the vendor's original image file.
type VendorFile struct {
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	SHA512 string `json:"sha512"`
}

// SourceHash is the sha512 of the vendor's original file: the source_hash property a
// user compares with what the vendor shipped.
func (f ImageFacts) SourceHash() string {
	if f.Vendor != nil {
		return f.Vendor.SHA512
	}
	return f.OSHashValue
}

// Check returns the named check's result, or nil.
func (r *Result) Check(name string) *CheckResult {
	for i := range r.Checks {
		if r.Checks[i].Name == name {
			return &r.Checks[i]
		}
	}
	return nil
}

// NotRunPrefix begins the reason of a check that did not run because the job
// stopped before it.
const NotRunPrefix = "not run: "

// ListNotRun adds to r every check of job (job.RunsChecks) that r does not list yet,
// as skipped: "skipped by the job" for those the job skips, NotRunPrefix and why for
// the others. A result lists every check its job has, whether it ran or not.
func (r *Result) ListNotRun(job Job, why string) {
	for _, name := range job.RunsChecks() {
		if r.Check(name) != nil {
			continue
		}
		reason := NotRunPrefix + why
		if job.Checks.IsSkipped(name) {
			reason = "skipped by the job"
		}
		r.Checks = append(r.Checks, CheckResult{Name: name, Status: StatusSkip, Required: job.Checks.IsRequired(name), Reason: reason})
	}
}

// MarshalResult encodes a result as indented JSON.
func MarshalResult(r Result) ([]byte, error) { return json.MarshalIndent(r, "", "  ") }
