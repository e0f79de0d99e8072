// Package guest holds the checks run inside a booted guest over SSH: metadata
// reachability, cloud-init completion and what it applied, the hostname, and the
// job's own commands. Each check talks to the guest through a Runner, so it
// unit-tests with a scripted fake; the SSH implementation is sshprobe.Client.
//
// The console scanner, the SSH prober and the metadata service live in the
// sub-packages console, sshprobe and metadata.
package guest

import (
	"context"
	"strings"
	"time"

	"github.com/imagevet/imagevet/worker/guest/sshprobe"
)

// CommandResult is what one guest command produced.
type CommandResult = sshprobe.CommandResult

// Runner runs one shell command line in the guest as the login user.
//
// Contract: Run returns a nil error when the command ran to completion, whatever
// its exit status; an error means it could not run or finish (no connection,
// ctx ended) and wraps the cause. Run must return promptly when ctx ends.
type Runner interface {
	Run(ctx context.Context, cmd string) (CommandResult, error)
}

// Status is a check's outcome.
type Status string

// Check outcomes: error means the check could not judge the image (the guest
// connection broke, the job was invalid), not that the image failed.
const (
	StatusPass  Status = "pass"
	StatusFail  Status = "fail"
	StatusSkip  Status = "skip"
	StatusError Status = "error"
)

// Check names, the same as the job's check names.
const (
	NameHostname  = "hostname"
	NameMetadata  = "metadata"
	NameCloudInit = "cloud-init"
	NameCommands  = "commands"
)

// CheckResult is one check's outcome.
type CheckResult struct {
	Name   string
	Status Status
	// Reason says why in one line; Detail holds outputs and log excerpts.
	Reason   string
	Detail   string
	Duration time.Duration
	// Err is the underlying error of a StatusError result, for classification.
	Err error
}

// shellQuote quotes s as one POSIX shell word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shScript makes a command line running script under /bin/sh, whatever the
// login shell is.
func shScript(script string) string { return "sh -c " + shellQuote(script) }

// sections splits output made of "@@name" marker lines into named sections.
func sections(out string) map[string]string {
	m := map[string]string{}
	var name string
	var b strings.Builder
	flush := func() {
		if name != "" {
			m[name] = strings.TrimRight(b.String(), "\n")
		}
		b.Reset()
	}
	for _, line := range strings.SplitAfter(out, "\n") {
		trimmed := strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(trimmed, "@@") && !strings.Contains(trimmed, " ") {
			flush()
			name = strings.TrimPrefix(trimmed, "@@")
			continue
		}
		b.WriteString(line)
	}
	flush()
	return m
}
