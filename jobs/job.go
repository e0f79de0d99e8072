// Package jobs defines what imagevet is asked to do and what it answers: the versioned
// documents (Job, Result, the watcher's ReleaseRecord, the publisher's Published and
// PublicationRecord, Progress), their strict decoding and validation, JUnit, and the
// error classes that decide a verdict. Package queue carries them over NATS.
package jobs

import (
	"fmt"
	"time"
)

// Version is the document version this build reads and writes.
const Version = 1

// Check names, in the order a job runs them.
const (
	CheckImage     = "image"      // fetch, checksum and format safety of the disk image
	CheckBoot      = "boot"       // the serial console shows no fatal boot failure
	CheckSSH       = "ssh"        // login with the job key against the pinned host key
	CheckHostname  = "hostname"   // the guest took the hostname from the seed
	CheckMetadata  = "metadata"   // the guest reaches the metadata service
	CheckCloudInit = "cloud-init" // cloud-init finished cleanly from the requested datasource
	CheckIgnition  = "ignition"   // Ignition completed and made the users and files of its config
	CheckCommands  = "commands"   // the job's own commands gave the expected output
)

// AllChecks lists every check a job can require, in run order. A job runs the
// cloud-init check or the ignition check, as its guest.provisioning says. The
// offline inspection's checks (CheckIdentity, CheckHygiene) run beside the boot and are judged
// last; skipping them turns the inspection off.
var AllChecks = []string{CheckImage, CheckBoot, CheckSSH, CheckHostname, CheckMetadata, CheckCloudInit, CheckIgnition, CheckCommands, CheckIdentity, CheckHygiene}

// Image formats a job may claim.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// Firmware kinds.
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// Host key policies.
const (
	HostKeyPinned = "pinned"
	HostKeyAny    = "any"
)

// Machine types.
const (
	MachinePC  = "pc"
	MachineQ35 = "q35"
)

// Datasources the seed can speak.
const (
	DatasourceNoCloud     = "nocloud"
	DatasourceConfigDrive = "configdrive"
	// DatasourceMetadata attaches no seed disk: the guest reads its user data from the
	// metadata service only (Ignition images).
	DatasourceMetadata = "metadata"
)

// Provisioning: what in the image reads the seed's user data on first boot.
const (
	ProvisioningCloudInit = "cloud-init"
	ProvisioningIgnition  = "ignition"
)

// DefaultIgnitionUser is the login user of Ignition jobs that name none (Flatcar's).
const DefaultIgnitionUser = "core"

// Job is one request to vet one image. Its ID is the idempotency key: a job submitted
// twice is run once.
type Job struct {
	Version  int         `json:"version"`
	ID       string      `json:"id"`
	Image    ImageSpec   `json:"image"`
	Machine  MachineSpec `json:"machine,omitzero"`
	Guest    GuestSpec   `json:"guest"`
	Checks   CheckSpec   `json:"checks,omitzero"`
	Timeouts Timeouts    `json:"timeouts,omitzero"`
	// CloudConfig is extra cloud-config (YAML) merged into the seed's user-data.
	CloudConfig string `json:"cloud_config,omitempty"`
	// IgnitionConfig is the job's own Ignition config (spec 3.x JSON, as a string)
	// merged into the seed's for guest.provisioning "ignition"; the worker's login
	// user keys and hostname win (see cloudinit/ignition).
	IgnitionConfig string      `json:"ignition_config,omitempty"`
	Commands       []Command   `json:"commands,omitempty"`
	Publish        Publication `json:"publish,omitzero"`
	// Regression is how far the release may fall behind the family's previous
	// vetted release (publish.family) before the result warns.
	Regression Regression `json:"regression,omitzero"`
}

// ImageSpec says where the candidate image is and what it must be.
type ImageSpec struct {
	// Source is an https:// or http:// URL, a file:// URL, or a path under the
	// worker's allowed image root (relative paths resolve against it). An
	// http:// source needs its digest authenticated: Checksum in the job, or a
	// SUMS file whose signature the worker verified.
	Source string `json:"source"`
	// Format is the claimed disk format; the detected format must match it.
	Format string `json:"format"`
	// Checksum is the expected digest, "sha256:<hex>" or "sha512:<hex>".
	Checksum string `json:"checksum,omitempty"`
	// SumsURL names a vendor SHA256SUMS/SHA512SUMS file to take the digest from,
	// with the same rules as Source; SumsName is the entry to look up (default: the
	// base name of Source).
	SumsURL  string `json:"sums_url,omitempty"`
	SumsName string `json:"sums_name,omitempty"`
	// SumsSignature is a detached OpenPGP signature of the SUMS file (.gpg,
	// .sign, .asc; armored or binary), same rules as Source. A clear-signed
	// SUMS file needs none. A worker with a keyring (--keyring) accepts a SUMS
	// file only signed by a key in it; one without refuses a job that gives
	// SumsSignature, since it cannot check it.
	SumsSignature string `json:"sums_signature,omitempty"`
}

// MachineSpec sizes the virtual machine the image boots in.
type MachineSpec struct {
	Firmware string `json:"firmware,omitempty"` // bios (default) or uefi
	// Type is the QEMU machine type, as Nova's hw_machine_type: pc (i440fx, the
	// default for both firmwares, seed on an IDE CD-ROM that every cloud kernel can
	// read) or q35 (seed on SATA, which some cloud kernels lack a driver for).
	Type      string `json:"type,omitempty"`
	VCPUs     int    `json:"vcpus,omitempty"`
	MemoryMiB int    `json:"memory_mib,omitempty"`
}

// GuestSpec describes how imagevet talks to the booted image.
type GuestSpec struct {
	// User is the image's default login user (debian, ubuntu, cloud-user, core…);
	// required for cloud-init images, "core" by default for Ignition ones.
	User string `json:"user,omitempty"`
	// Provisioning is what the image provisions itself with on first boot:
	// "cloud-init" (default: #cloud-config user data) or "ignition" (an Ignition
	// config creating User with the job key, for Flatcar-style images).
	Provisioning string `json:"provisioning,omitempty"`
	// Datasource selects the seed: nocloud (cidata ISO, the default for cloud-init),
	// configdrive (config-2, the default for Ignition) or metadata (no seed disk: the
	// metadata service only; Ignition images).
	Datasource string `json:"datasource,omitempty"`
	// Hostname the seed asks for; default "vet-" plus the job id.
	Hostname string `json:"hostname,omitempty"`
	// HostKey is how the guest's SSH host key is trusted: "pinned" (default) accepts
	// the host key the seed gave the guest in ssh_keys, or else a key the guest
	// printed (as a key or a fingerprint) on its serial console, which only the
	// guest writes; the latter passes with a warning that the image ignored the
	// seeded host keys. "any" accepts whatever key the guest presents and records
	// its fingerprint, for images that make their own host keys and print nothing.
	HostKey string `json:"host_key,omitempty"`
}

// CheckSpec chooses which checks decide the verdict. Checks not required still run
// and are reported, but their failure does not fail the image; skipped ones do not
// run at all. With no Required list every check is required, and the cloud-init
// check is skipped with a reason on images that have no cloud-init; naming
// cloud-init in Required makes its absence a failure. Hygiene sets the hygiene
// rules' levels (fail, warn or off) by rule name; the catalog's family settings
// arrive here too.
type CheckSpec struct {
	Required []string      `json:"required,omitempty"`
	Skip     []string      `json:"skip,omitempty"`
	Hygiene  HygieneLevels `json:"hygiene,omitempty"`
}

// Timeouts bound each stage. They are what a stage may take on a KVM host; a worker
// that must emulate (TCG) multiplies the boot, cloud-init, command and after-boot
// timeouts by its TCG factor.
type Timeouts struct {
	Fetch     Duration `json:"fetch,omitzero"`      // download, hash and inspect
	Boot      Duration `json:"boot,omitzero"`       // domain start until SSH answers
	CloudInit Duration `json:"cloud_init,omitzero"` // SSH up until cloud-init is done
	Command   Duration `json:"command,omitzero"`    // each in-guest command
	Total     Duration `json:"total,omitzero"`      // the whole job, fetch included
	// AfterBoot is how long SSH may still fail once the console shows the guest
	// finished booting (login prompt, cloud-init finished, another init's end of
	// boot) before the job fails with that evidence. Port 22 silent once systemd
	// reached its multi-user target or cloud-init finished (every unit of the boot,
	// an SSH server among them, has started) gets a quarter of it. A provisioning
	// stage (Ignition, cloud-init's init stage) that the console shows stalled may
	// stay quiet as long before its check fails.
	AfterBoot Duration `json:"after_boot,omitzero"`
}

// Command is an extra command run in the guest as the login user.
type Command struct {
	Run string `json:"run"`
	// ExpectExit is the wanted exit status (default 0).
	ExpectExit *int `json:"expect_exit,omitempty"`
	// ExpectOutput must occur in stdout: a substring, or a regular expression
	// when written between slashes ("/^Linux /").
	ExpectOutput string `json:"expect_output,omitempty"`
}

// Publication is what the publisher needs once the image passes.
type Publication struct {
	// Name is the image name; the latest verdict per name is what publishers read.
	// For a family it is the stable name users pick ("Debian 12 Bookworm"); the
	// publisher adds the Latest suffix and renames older releases.
	Name       string `json:"name,omitempty"`
	Visibility string `json:"visibility,omitempty"` // public, community, shared or private
	// Properties are Glance image properties (os_distro, os_version, hw_firmware_type…).
	Properties map[string]string `json:"properties,omitempty"`
	// Family is the image family this release belongs to (a catalog key such as
	// "debian-12"); the publisher rotates images within one family.
	Family string `json:"family,omitempty"`
	// Release is the vendor's version or build id of this image ("20261120-1234").
	Release string `json:"release,omitempty"`
	// ReleasedAt is when the vendor released it, when the feed says.
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	// Glance asks for the image to be uploaded to Glance once it passes; without it a
	// verdict stops at the status KV.
	Glance bool `json:"glance,omitempty"`
	// Rotation is the family's policy for the releases a new one replaces.
	Rotation *Rotation `json:"rotation,omitempty"`
	// DiskFormat is the disk_format the image is published as: "raw" (what a
	// Ceph-backed cloud clones instead of converting per server) or "qcow2"; empty
	// publishes the vendor's format. The worker converts before it boots, so the
	// published bytes are the booted ones.
	DiskFormat string `json:"disk_format,omitempty"`
	// Clouds names the clouds or regions (publisher cloud names) the image goes to;
	// empty means every cloud the publisher is configured with.
	Clouds []string `json:"clouds,omitempty"`
}

// ReservedProperties are Glance's own image fields: a job's publish.properties may
// not set them, since the publisher decides them from the vetted bytes.
var ReservedProperties = []string{
	"checksum", "container_format", "created_at", "direct_url", "disk_format", "file",
	"id", "locations", "min_disk", "min_ram", "name", "os_hash_algo", "os_hash_value",
	"os_hidden", "owner", "protected", "schema", "self", "size", "status", "tags",
	"updated_at", "virtual_size", "visibility",
}

// Older-release treatments a Rotation may ask for.
const (
	OlderCommunity = "community" // visibility community: usable by id, not listed
	OlderHidden    = "hidden"    // os_hidden: listed only when asked for
)

// Rotation is a family's policy for its older releases once a new one is published:
// the new one takes the Latest name, the one it replaces keeps a dated name and turns
// Older; releases beyond Keep are deactivated, and deleted only when nothing uses them.
type Rotation struct {
	// Keep is how many older releases stay usable beside Latest (0 keeps none).
	Keep int `json:"keep"`
	// Older is what a replaced release becomes: community (default) or hidden.
	Older string `json:"older,omitempty"`
	// DeleteUnused allows deleting releases beyond Keep once no server and no volume
	// uses them; without it they stay deactivated.
	DeleteUnused bool `json:"delete_unused,omitempty"`
	// ReplaceFrequency is the SCS replace_frequency of the family (daily, weekly,
	// monthly, quarterly, yearly, never).
	ReplaceFrequency string `json:"replace_frequency,omitempty"`
	// UUIDValidity is the SCS uuid_validity ("last-3", "forever", "none", a date).
	UUIDValidity string `json:"uuid_validity,omitempty"`
}

// Defaults applied by WithDefaults.
const (
	DefaultVCPUs     = 1
	DefaultMemoryMiB = 1024
	DefaultFetch     = 30 * time.Minute
	DefaultBoot      = 4 * time.Minute
	DefaultCloudInit = 5 * time.Minute
	DefaultCommand   = time.Minute
	DefaultTotal     = 30 * time.Minute
	DefaultAfterBoot = 20 * time.Second
)

// WithDefaults returns a copy of j with every unset optional field filled in.
func (j Job) WithDefaults() Job {
	if j.Version == 0 {
		j.Version = Version
	}
	if j.Machine.Firmware == "" {
		j.Machine.Firmware = FirmwareBIOS
	}
	if j.Machine.Type == "" {
		j.Machine.Type = MachinePC
	}
	if j.Machine.VCPUs == 0 {
		j.Machine.VCPUs = DefaultVCPUs
	}
	if j.Machine.MemoryMiB == 0 {
		j.Machine.MemoryMiB = DefaultMemoryMiB
	}
	if j.Guest.Provisioning == "" {
		j.Guest.Provisioning = ProvisioningCloudInit
	}
	if j.Guest.Provisioning == ProvisioningIgnition {
		if j.Guest.User == "" {
			j.Guest.User = DefaultIgnitionUser
		}
		if j.Guest.Datasource == "" {
			j.Guest.Datasource = DatasourceConfigDrive
		}
	}
	if j.Guest.Datasource == "" {
		j.Guest.Datasource = DatasourceNoCloud
	}
	if j.Guest.HostKey == "" {
		j.Guest.HostKey = HostKeyPinned
	}
	if j.Guest.Hostname == "" {
		j.Guest.Hostname = DefaultHostname(j.ID)
	}
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&j.Timeouts.Fetch, DefaultFetch)
	def(&j.Timeouts.Boot, DefaultBoot)
	def(&j.Timeouts.CloudInit, DefaultCloudInit)
	def(&j.Timeouts.Command, DefaultCommand)
	def(&j.Timeouts.Total, DefaultTotal)
	def(&j.Timeouts.AfterBoot, DefaultAfterBoot)
	if j.Publish.Name == "" {
		j.Publish.Name = j.ID
	}
	j.Regression = j.Regression.WithDefaults()
	return j
}

// DefaultHostname derives a valid RFC 1123 hostname from a job id.
func DefaultHostname(id string) string {
	b := []byte("vet-")
	for i := 0; i < len(id) && len(b) < 63; i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		default:
			b = append(b, '-')
		}
	}
	for len(b) > 4 && b[len(b)-1] == '-' {
		b = b[:len(b)-1]
	}
	return string(b)
}

// RunsChecks lists the checks the job has, in the order of AllChecks: every one
// but the provisioning check its guest.provisioning does not use (cloud-init or
// ignition), and commands only when it has some. Checks it skips are listed too.
func (j Job) RunsChecks() []string {
	var names []string
	for _, name := range AllChecks {
		switch {
		case name == CheckCloudInit && j.Guest.Provisioning == ProvisioningIgnition,
			name == CheckIgnition && j.Guest.Provisioning != ProvisioningIgnition,
			name == CheckCommands && len(j.Commands) == 0:
			continue
		}
		names = append(names, name)
	}
	return names
}

// IsRequired reports whether the named check decides the verdict.
func (c CheckSpec) IsRequired(name string) bool {
	if c.IsSkipped(name) {
		return false
	}
	if len(c.Required) == 0 {
		return true
	}
	for _, r := range c.Required {
		if r == name {
			return true
		}
	}
	return false
}

// IsSkipped reports whether the job asked not to run the named check.
func (c CheckSpec) IsSkipped(name string) bool {
	for _, s := range c.Skip {
		if s == name {
			return true
		}
	}
	return false
}

// ExplicitlyRequired reports whether the job named the check in its Required list
// (as opposed to requiring everything by default).
func (c CheckSpec) ExplicitlyRequired(name string) bool {
	for _, r := range c.Required {
		if r == name {
			return true
		}
	}
	return false
}

// Duration is a time.Duration written in JSON as a Go duration string ("90s", "5m").
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a Go duration string; negative durations are rejected.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration like \"90s\" or \"5m\": %q", b)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	*d = Duration(v)
	return nil
}
