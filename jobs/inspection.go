package jobs

import (
	"fmt"
	"strings"
	"time"
)

// Check names of the offline inspection (package inspect): what the image is and
// what a tenant's server would inherit from it.
const (
	CheckIdentity = "identity" // the inspected distribution, version and architecture are the job's
	CheckHygiene  = "hygiene"  // nothing left in the image that every tenant's server would inherit unsafely
)

// Inspection is what the offline look inside the vetted file (before any boot)
// found: who the image is, what it holds, and the raw evidence the hygiene rules
// judge. Error is set, and the facts empty, when the image could not be read.
type Inspection struct {
	// OS is libguestfs's type (linux, windows…); Distro its distribution id
	// (debian, ubuntu, fedora, rhel, centos, rocky, almalinux, flatcar…); Version
	// major[.minor] as the image says; Arch its architecture (x86_64, aarch64…).
	OS       string `json:"os,omitempty"`
	Distro   string `json:"distro,omitempty"`
	Version  string `json:"version,omitempty"`
	Product  string `json:"product,omitempty"`  // the image's own name of itself
	Codename string `json:"codename,omitempty"` // the release's name (bookworm, trixie…), when it has one
	// VersionID is os-release's VERSION_ID: the version as the distribution
	// writes it ("12", "24.04"), what Glance's os_version holds.
	VersionID     string `json:"version_id,omitempty"`
	Arch          string `json:"arch,omitempty"`
	PackageFormat string `json:"package_format,omitempty"` // deb, rpm…
	Hostname      string `json:"hostname,omitempty"`
	// AdminUser is the default user the image's cloud-init configuration names.
	AdminUser   string       `json:"admin_user,omitempty"`
	Filesystems []Filesystem `json:"filesystems,omitempty"`
	Kernels     []string     `json:"kernels,omitempty"` // versions, newest first
	Packages    []Package    `json:"packages,omitempty"`
	// Evidence is what the hygiene rules read; Findings is their judgement.
	Evidence *HygieneEvidence `json:"evidence,omitempty"`
	Findings []Finding        `json:"findings,omitempty"`
	// Changes compares the image with the family's previous vetted release.
	Changes *Changes `json:"changes,omitempty"`
	// Took is how long the inspection ran; Error why it could not finish.
	Took  Duration `json:"took,omitempty"`
	Error string   `json:"error,omitempty"`
	// Fault says whose the Error is: FaultImage (libguestfs read the file and
	// found no operating system, or a file system it could not read) or
	// FaultWorker (the appliance could not start, died, or ran out of time: the
	// image was not judged, and its checks end in error, not skip).
	Fault string `json:"fault,omitempty"`
}

// Whose an Inspection's Error is.
const (
	FaultImage  = "image"
	FaultWorker = "worker"
)

// Unfinished reports whether the inspection could not look inside the image
// for a reason of the worker's, so what it would have judged is unknown.
func (in *Inspection) Unfinished() bool {
	return in != nil && in.Error != "" && in.Fault == FaultWorker
}

// Filesystem is one file system the inspection found.
type Filesystem struct {
	Device     string `json:"device"`
	Type       string `json:"type"`
	Mountpoint string `json:"mountpoint,omitempty"`
	Label      string `json:"label,omitempty"`
	UUID       string `json:"uuid,omitempty"`
}

// Package is one installed package of the image's package manager.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
}

// HygieneEvidence is what the inspection read for the hygiene rules: each list
// holds the image paths concerned (absolute, inside the image).
type HygieneEvidence struct {
	// HostKeys are the SSH host public keys the image carries.
	HostKeys []HostKeyFile `json:"host_keys,omitempty"`
	// MachineID is /etc/machine-id's content ("" when empty or absent,
	// "uninitialized" as systemd writes it for first boot).
	MachineID string `json:"machine_id,omitempty"`
	// PasswordAccounts are accounts whose /etc/shadow entry holds a usable hash;
	// EmptyPasswords those whose password field is empty (a login without any
	// password, where anything allows it): these are in PasswordAccounts too.
	PasswordAccounts []string `json:"password_accounts,omitempty"`
	EmptyPasswords   []string `json:"empty_passwords,omitempty"`
	// KeepsHostKeysAt is where the image's own cloud-init configuration says
	// ssh_deletekeys: false (the file that decides, the last one cloud-init
	// merges): a first boot whose user data does not say otherwise keeps the
	// image's host keys. imagevet's seed sets ssh_deletekeys, so its boot cannot
	// show this; only the image's configuration can.
	KeepsHostKeysAt string `json:"keeps_host_keys_at,omitempty"`
	// SSHPasswordAuth is sshd's effective PasswordAuthentication ("yes", "no").
	SSHPasswordAuth string `json:"ssh_password_auth,omitempty"`
	// SSHPasswordAuthAt is where the configuration sets it ("/etc/ssh/sshd_config.d/50-x.conf:3");
	// empty when sshd's built-in default (yes) applies.
	SSHPasswordAuthAt string `json:"ssh_password_auth_at,omitempty"`
	// SSHPermitRootLogin is sshd's effective PermitRootLogin.
	SSHPermitRootLogin string   `json:"ssh_permit_root_login,omitempty"`
	AuthorizedKeys     []string `json:"authorized_keys,omitempty"`
	CloudInitState     []string `json:"cloud_init_state,omitempty"` // /var/lib/cloud/instances/…
	Histories          []string `json:"histories,omitempty"`
	DHCPLeases         []string `json:"dhcp_leases,omitempty"`
	NetRules           []string `json:"net_rules,omitempty"`
	WorldWritableEtc   []string `json:"world_writable_etc,omitempty"`
	PrivateKeys        []string `json:"private_keys,omitempty"`
}

// HostKeyFile is one SSH host public key file found in the image.
type HostKeyFile struct {
	Path string `json:"path"`
	Type string `json:"type"` // ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa…
	// Fingerprint is OpenSSH's SHA256:… form.
	Fingerprint string `json:"fingerprint"`
}

// Hygiene rule levels a family or job sets per rule.
const (
	LevelFail = "fail"
	LevelWarn = "warn"
	LevelOff  = "off"
)

// Finding is one thing the hygiene rules found: the rule, its level, the file
// it concerns and what it means for a tenant.
type Finding struct {
	Rule   string `json:"rule"`
	Level  string `json:"level"` // LevelFail or LevelWarn
	Path   string `json:"path,omitempty"`
	Detail string `json:"detail"`
}

// Changes is how a release differs from the family's previous vetted release.
type Changes struct {
	// Previous names the release compared with: its job id, version and when it
	// was vetted.
	PreviousJob     string    `json:"previous_job"`
	PreviousVersion string    `json:"previous_version,omitempty"`
	PreviousAt      time.Time `json:"previous_at"`
	Added           []Package `json:"added,omitempty"`
	Removed         []Package `json:"removed,omitempty"`
	Upgraded        []Upgrade `json:"upgraded,omitempty"` // also downgrades
	KernelBefore    string    `json:"kernel_before,omitempty"`
	KernelAfter     string    `json:"kernel_after,omitempty"`
	// Sizes and times before → after; zero when one side did not record it.
	SizeBefore        int64    `json:"size_before,omitempty"`
	SizeAfter         int64    `json:"size_after,omitempty"`
	VirtualSizeBefore int64    `json:"virtual_size_before,omitempty"`
	VirtualSizeAfter  int64    `json:"virtual_size_after,omitempty"`
	BootBefore        Duration `json:"boot_before,omitempty"`
	BootAfter         Duration `json:"boot_after,omitempty"`
	VerdictBefore     Duration `json:"verdict_before,omitempty"`
	VerdictAfter      Duration `json:"verdict_after,omitempty"`
	// Regressions are the changes beyond the family's thresholds, one line each;
	// each is also a warning on the result. Regressed names what they measure
	// (MeasureSize, MeasureVirtualSize, MeasureBoot), in the same order.
	Regressions []string `json:"regressions,omitempty"`
	Regressed   []string `json:"regressed,omitempty"`
}

// Upgrade is one package whose version changed.
type Upgrade struct {
	Name   string `json:"name"`
	Arch   string `json:"arch,omitempty"`
	Before string `json:"before"`
	After  string `json:"after"`
	// Downgrade is set when After is older than Before (Debian's version order).
	Downgrade bool `json:"downgrade,omitempty"`
}

// Summary says in one line what the inspection found: "debian 12.15 (bookworm)
// x86_64, kernel 6.1.0-28-cloud-amd64, 224 packages, took 25.1s", or why it
// could not tell.
func (in *Inspection) Summary() string {
	took := "took " + in.Took.D().Round(100*time.Millisecond).String()
	if in.Distro == "" {
		why := in.Error
		if why == "" {
			why = "no operating system recognised"
		}
		return "could not tell what the image is: " + why + " (" + took + ")"
	}
	parts := []string{in.Distro}
	if in.Version != "" {
		parts[0] += " " + in.Version
	}
	if in.Codename != "" {
		parts[0] += " (" + in.Codename + ")"
	}
	if in.Arch != "" {
		parts[0] += " " + in.Arch
	}
	if len(in.Kernels) > 0 {
		parts = append(parts, "kernel "+in.Kernels[0])
	}
	if len(in.Packages) > 0 {
		parts = append(parts, fmt.Sprintf("%d %s packages", len(in.Packages), in.PackageFormat))
	}
	parts = append(parts, took)
	if in.Error != "" {
		parts = append(parts, "incomplete: "+in.Error)
	}
	return strings.Join(parts, ", ")
}
