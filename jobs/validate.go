package jobs

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/imagevet/imagevet/cloudinit/ignition"
)

var (
	idPattern       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	hostnameLabel   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	checksumPattern = regexp.MustCompile(`^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$`)
	userPattern     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	propertyKey     = regexp.MustCompile(`^[A-Za-z0-9_:.-]{1,255}$`)
	familyKey       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// The values of the job's enumerated fields, in the order errors and the JSON
// Schema list them.
var (
	imageFormats       = []string{FormatQCOW2, FormatRaw}
	firmwares          = []string{FirmwareBIOS, FirmwareUEFI}
	machineTypes       = []string{MachinePC, MachineQ35}
	datasources        = []string{DatasourceNoCloud, DatasourceConfigDrive, DatasourceMetadata}
	provisionings      = []string{ProvisioningCloudInit, ProvisioningIgnition}
	hostKeyPolicies    = []string{HostKeyPinned, HostKeyAny}
	visibilities       = []string{"public", "community", "shared", "private"}
	diskFormats        = []string{FormatRaw, FormatQCOW2}
	olderTreatments    = []string{OlderCommunity, OlderHidden}
	replaceFrequencies = []string{"daily", "weekly", "monthly", "quarterly", "yearly", "never"}
)

// familyKeyRule says what familyKey accepts: family keys and cloud names.
const familyKeyRule = "1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"

// Limits on what one job may ask for.
const (
	MaxVCPUs     = 64
	MaxMemoryMiB = 256 * 1024
	MaxCommands  = 64
)

// Validate checks every field and reports all problems at once, each naming its path.
func (j Job) Validate() error {
	var p problems
	if j.Version != Version {
		p.add("version", "must be %d (got %d)", Version, j.Version)
	}
	switch {
	case j.ID == "":
		p.add("id", "required")
	case !idPattern.MatchString(j.ID):
		p.add("id", "%q: use 1-128 letters, digits, '-' or '_', starting with a letter or digit", j.ID)
	}
	j.Image.validate(&p)
	j.Machine.validate(&p)
	j.Guest.validate(&p)
	j.validateProvisioning(&p)
	j.Checks.validate(&p)
	j.Timeouts.validate(&p)
	if len(j.CloudConfig) > 256*1024 {
		p.add("cloud_config", "larger than 256 KiB")
	}
	if len(j.Commands) > MaxCommands {
		p.add("commands", "at most %d commands", MaxCommands)
	}
	for i, c := range j.Commands {
		c.validate(&p, fmt.Sprintf("commands[%d]", i))
	}
	j.Publish.validate(&p)
	j.Regression.validate(&p)
	return p.err("job")
}

// validate checks that every check named is known, and that a skipped one may be
// skipped and is not also required; then the hygiene levels.
func (c CheckSpec) validate(p *problems) {
	for i, name := range c.Required {
		if !slices.Contains(AllChecks, name) {
			p.add(fmt.Sprintf("checks.required[%d]", i), "unknown check %q (known: %s)", name, strings.Join(AllChecks, ", "))
		}
	}
	for i, name := range c.Skip {
		switch {
		case !slices.Contains(AllChecks, name):
			p.add(fmt.Sprintf("checks.skip[%d]", i), "unknown check %q (known: %s)", name, strings.Join(AllChecks, ", "))
		case name == CheckImage || name == CheckBoot || name == CheckSSH:
			p.add(fmt.Sprintf("checks.skip[%d]", i), "%q cannot be skipped: every other check depends on it", name)
		case slices.Contains(c.Required, name):
			p.add(fmt.Sprintf("checks.skip[%d]", i), "%q is also in checks.required", name)
		}
	}
	c.Hygiene.validate(p, "checks.hygiene")
}

// validate checks one command, at path (commands[i]).
func (c Command) validate(p *problems, path string) {
	if strings.TrimSpace(c.Run) == "" {
		p.add(path+".run", "required")
	}
	if c.ExpectExit != nil && (*c.ExpectExit < 0 || *c.ExpectExit > 255) {
		p.add(path+".expect_exit", "must be 0-255")
	}
	if re, ok := regexpOf(c.ExpectOutput); ok {
		if _, err := regexp.Compile(re); err != nil {
			p.add(path+".expect_output", "bad regular expression: %v", err)
		}
	}
}

func (s ImageSpec) validate(p *problems) {
	switch {
	case s.Source == "":
		p.add("image.source", "required")
	default:
		validateSource(p, "image.source", s.Source)
	}
	if s.Format == "" {
		p.add("image.format", "required (qcow2 or raw)")
	}
	p.oneOf("image.format", s.Format, imageFormats...)
	switch {
	case s.Checksum != "" && s.SumsURL != "":
		p.add("image.checksum", "give checksum or sums_url, not both")
	case s.Checksum == "" && s.SumsURL == "":
		p.add("image.checksum", "required: a \"sha256:<hex>\"/\"sha512:<hex>\" digest, or sums_url naming a vendor SUMS file")
	case s.Checksum != "" && !checksumPattern.MatchString(s.Checksum):
		p.add("image.checksum", "must be \"sha256:\" + 64 or \"sha512:\" + 128 lowercase hex digits")
	case s.SumsURL != "":
		validateSource(p, "image.sums_url", s.SumsURL)
	}
	if s.SumsName != "" && s.SumsURL == "" {
		p.add("image.sums_name", "only meaningful with image.sums_url")
	}
	if s.SumsSignature != "" {
		if s.SumsURL == "" {
			p.add("image.sums_signature", "only meaningful with image.sums_url")
		} else {
			validateSource(p, "image.sums_signature", s.SumsSignature)
		}
	}
	if strings.ContainsAny(s.SumsName, "/\\ \t\n") {
		p.add("image.sums_name", "a file name, without slashes or spaces")
	}
}

func validateSource(p *problems, path, src string) {
	if strings.Contains(src, "://") {
		u, err := url.Parse(src)
		if err != nil {
			p.add(path, "not a URL: %v", err)
			return
		}
		switch u.Scheme {
		case "https", "http":
			if u.Host == "" {
				p.add(path, "URL has no host")
			}
			if u.User != nil {
				p.add(path, "credentials in URLs are not accepted")
			}
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				p.add(path, "file URL must be file:///absolute/path")
			}
		default:
			p.add(path, "scheme %q not supported (https, http, file)", u.Scheme)
		}
		return
	}
	if strings.ContainsRune(src, 0) {
		p.add(path, "contains a NUL byte")
	}
}

func (m MachineSpec) validate(p *problems) {
	p.oneOf("machine.firmware", m.Firmware, firmwares...)
	p.oneOf("machine.type", m.Type, machineTypes...)
	if m.VCPUs < 0 || m.VCPUs > MaxVCPUs {
		p.add("machine.vcpus", "must be 1-%d", MaxVCPUs)
	}
	if m.MemoryMiB != 0 && (m.MemoryMiB < 128 || m.MemoryMiB > MaxMemoryMiB) {
		p.add("machine.memory_mib", "must be 128-%d", MaxMemoryMiB)
	}
}

func (g GuestSpec) validate(p *problems) {
	switch {
	case g.User == "" && g.Provisioning == ProvisioningIgnition:
		// core by default
	case g.User == "":
		p.add("guest.user", "required: the image's default login user (debian, ubuntu, cloud-user…)")
	case !userPattern.MatchString(g.User):
		p.add("guest.user", "%q is not a valid login name", g.User)
	}
	p.oneOf("guest.datasource", g.Datasource, datasources...)
	p.oneOf("guest.provisioning", g.Provisioning, provisionings...)
	p.oneOf("guest.host_key", g.HostKey, hostKeyPolicies...)
	if g.Hostname != "" {
		if msg := HostnameProblem(g.Hostname); msg != "" {
			p.add("guest.hostname", "%s", msg)
		}
	}
}

// validateProvisioning checks what must agree with guest.provisioning: the
// datasource, the job's config for the image, and the provisioning check named.
func (j Job) validateProvisioning(p *problems) {
	ignitionJob := j.Guest.Provisioning == ProvisioningIgnition
	switch {
	case ignitionJob && j.Guest.Datasource == DatasourceNoCloud:
		p.add("guest.datasource", "Ignition reads configdrive or the metadata service (metadata), not nocloud")
	case !ignitionJob && j.Guest.Datasource == DatasourceMetadata:
		p.add("guest.datasource", "metadata (no seed disk) is for guest.provisioning ignition; cloud-init images get nocloud or configdrive")
	}
	if ignitionJob && j.CloudConfig != "" {
		p.add("cloud_config", "an Ignition image does not read cloud-config: give ignition_config")
	}
	if !ignitionJob && j.IgnitionConfig != "" {
		p.add("ignition_config", "only read by Ignition images: set guest.provisioning \"ignition\"")
	}
	if len(j.IgnitionConfig) > 256*1024 {
		p.add("ignition_config", "larger than 256 KiB")
	} else if ignitionJob {
		if _, err := ignition.Parse([]byte(j.IgnitionConfig)); err != nil {
			p.add("ignition_config", "%s", err)
		}
	}
	other := CheckIgnition
	if ignitionJob {
		other = CheckCloudInit
	}
	for i, c := range j.Checks.Required {
		if c == other {
			p.add(fmt.Sprintf("checks.required[%d]", i), "%q does not apply to guest.provisioning %q", c, j.Guest.ProvisioningOrDefault())
		}
	}
}

// ProvisioningOrDefault is the guest's provisioning, "cloud-init" when unset.
func (g GuestSpec) ProvisioningOrDefault() string {
	if g.Provisioning == "" {
		return ProvisioningCloudInit
	}
	return g.Provisioning
}

// HostnameProblem explains why name is not a valid RFC 1123 hostname, or returns "".
func HostnameProblem(name string) string {
	if len(name) > 253 {
		return fmt.Sprintf("%d characters; at most 253", len(name))
	}
	for _, label := range strings.Split(name, ".") {
		if !hostnameLabel.MatchString(label) {
			return fmt.Sprintf("%q: each dot-separated label must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'", name)
		}
	}
	return ""
}

func (t Timeouts) validate(p *problems) {
	check := func(path string, d Duration, min time.Duration) {
		if d != 0 && d.D() < min {
			p.add(path, "at least %s", min)
		}
	}
	check("timeouts.fetch", t.Fetch, time.Second)
	check("timeouts.boot", t.Boot, time.Second)
	check("timeouts.cloud_init", t.CloudInit, time.Second)
	check("timeouts.command", t.Command, time.Second)
	check("timeouts.total", t.Total, 10*time.Second)
	check("timeouts.after_boot", t.AfterBoot, time.Second)
	if t.Total != 0 && t.Boot != 0 && t.Total < t.Boot {
		p.add("timeouts.total", "shorter than timeouts.boot")
	}
}

// ValidJobID reports whether id is a well-formed job id, safe as a subject token.
func ValidJobID(id string) bool { return idPattern.MatchString(id) }

// ValidFamily reports whether family is a well-formed publish.family.
func ValidFamily(family string) bool { return familyKey.MatchString(family) }

func (pub Publication) validate(p *problems) {
	p.oneOf("publish.visibility", pub.Visibility, visibilities...)
	if len(pub.Name) > 255 {
		p.add("publish.name", "at most 255 characters")
	}
	if pub.Family != "" && !familyKey.MatchString(pub.Family) {
		p.add("publish.family", "%q: "+familyKeyRule, pub.Family)
	}
	if len(pub.Release) > 128 {
		p.add("publish.release", "at most 128 characters")
	}
	if pub.Glance && pub.Family == "" {
		p.add("publish.family", "required when publish.glance is set: rotation works within a family")
	}
	if pub.Rotation != nil {
		pub.Rotation.validate(p)
	}
	p.oneOf("publish.disk_format", pub.DiskFormat, diskFormats...)
	for i, c := range pub.Clouds {
		if !familyKey.MatchString(c) {
			p.add(fmt.Sprintf("publish.clouds[%d]", i), "%q: "+familyKeyRule, c)
		}
	}
	validateProperties(p, pub.Properties)
}

func (r Rotation) validate(p *problems) {
	if r.Keep < 0 || r.Keep > 1000 {
		p.add("publish.rotation.keep", "%d: must be between 0 and 1000", r.Keep)
	}
	p.oneOf("publish.rotation.older", r.Older, olderTreatments...)
	p.oneOf("publish.rotation.replace_frequency", r.ReplaceFrequency, replaceFrequencies...)
	if len(r.UUIDValidity) > 64 {
		p.add("publish.rotation.uuid_validity", "at most 64 characters")
	}
}

// validateProperties checks publish.properties: names Glance leaves to its users,
// spelt as it accepts them, and values it can store.
func validateProperties(p *problems, props map[string]string) {
	for k, v := range props {
		if slices.Contains(ReservedProperties, k) {
			p.add("publish.properties."+k, "Glance's own field: the publisher sets it from the vetted image")
		}
		if !propertyKey.MatchString(k) {
			p.add("publish.properties."+k, "property names are 1-255 letters, digits, '_', ':', '.' or '-'")
		}
		if len(v) > 65535 {
			p.add("publish.properties."+k, "value longer than 65535 characters")
		}
	}
}

// regexpOf returns the pattern inside "/.../" and whether s is written that way.
func regexpOf(s string) (string, bool) {
	if len(s) >= 2 && strings.HasPrefix(s, "/") && strings.HasSuffix(s, "/") {
		return s[1 : len(s)-1], true
	}
	return "", false
}

// ExitWanted returns the exit status a command must end with.
func (c Command) ExitWanted() int {
	if c.ExpectExit == nil {
		return 0
	}
	return *c.ExpectExit
}

type problems []FieldError

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// oneOf adds a problem at path unless value is unset ("") or one of allowed.
func (p *problems) oneOf(path, value string, allowed ...string) {
	if value != "" && !slices.Contains(allowed, value) {
		p.add(path, "%q: must be %s", value, orList(allowed))
	}
}

// orList joins words as a sentence lists choices: "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func (p problems) err(doc string) error {
	if len(p) == 0 {
		return nil
	}
	return &InvalidError{Doc: doc, Problems: p}
}

// WithinMax applies an operator's timeout maxima to a job as written (before
// WithDefaults): a timeout the job sets above its maximum is an InvalidError
// naming the field and the maximum; a timeout the job leaves unset whose default
// is above the maximum is set to the maximum. A zero maximum bounds nothing.
func (j Job) WithinMax(max Timeouts) (Job, error) {
	var p problems
	limit := func(path string, d *Duration, def time.Duration, m Duration) {
		switch {
		case m == 0:
		case *d != 0 && *d > m:
			p.add(path, "%s exceeds this worker's maximum %s", d.D(), m.D())
		case *d == 0 && def > m.D():
			*d = m
		}
	}
	limit("timeouts.fetch", &j.Timeouts.Fetch, DefaultFetch, max.Fetch)
	limit("timeouts.boot", &j.Timeouts.Boot, DefaultBoot, max.Boot)
	limit("timeouts.cloud_init", &j.Timeouts.CloudInit, DefaultCloudInit, max.CloudInit)
	limit("timeouts.command", &j.Timeouts.Command, DefaultCommand, max.Command)
	limit("timeouts.total", &j.Timeouts.Total, DefaultTotal, max.Total)
	return j, p.err("job")
}
