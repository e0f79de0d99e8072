package cloudinit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/imagevet/imagevet/cloudinit/ignition"

	"github.com/imagevet/imagevet/jobs"
)

// Datasource selects the seed layout a guest's cloud-init is offered.
type Datasource string

const (
	// NoCloud is a `cidata` ISO with user-data, meta-data and network-config at its root.
	NoCloud Datasource = "nocloud"
	// ConfigDrive is a `config-2` ISO in OpenStack Nova's config-drive layout, for
	// images whose cloud-init only trusts the OpenStack datasource.
	ConfigDrive Datasource = "configdrive"
	// Metadata is no seed disk at all: the guest reads everything from the metadata
	// service (for Ignition images, whose OpenStack platform asks it for user_data).
	Metadata Datasource = "metadata"
)

// Provisioning is what in the image reads the seed's user data on first boot.
type Provisioning string

const (
	// CloudInit images read #cloud-config user data (the default).
	CloudInit Provisioning = "cloud-init"
	// Ignition images (Flatcar, Fedora CoreOS) read an Ignition config (spec 3.x JSON)
	// from the config drive or the metadata service.
	Ignition Provisioning = "ignition"
)

// DefaultIgnitionUser is the login user of an Ignition seed without one (Flatcar's).
const DefaultIgnitionUser = "core"

// ParseDatasource maps a job's datasource name to a Datasource ("" means NoCloud).
func ParseDatasource(s string) (Datasource, error) {
	switch d := Datasource(strings.ToLower(strings.TrimSpace(s))); d {
	case "", NoCloud:
		return NoCloud, nil
	case ConfigDrive, "config-drive", "config_drive", "openstack":
		return ConfigDrive, nil
	case Metadata:
		return Metadata, nil
	}
	return "", &FieldError{Field: "datasource", Err: fmt.Errorf("%q is not one of %q, %q, %q", s, NoCloud, ConfigDrive, Metadata)}
}

// Defaults for the Nova extras of a ConfigDrive seed (and the metadata server).
const (
	DefaultAvailabilityZone = "nova"
	// ConfigDriveVersion is the dated directory written next to openstack/latest; it is
	// the newest version cloud-init 22.x knows, so cloud-init selects it.
	ConfigDriveVersion = "2018-08-27"
	// MaxUserDataSize bounds a job's CloudConfig: 64 KiB, about what
	// Nova accepts as user data, so nothing vetted here is refused by the cloud.
	MaxUserDataSize = 64 << 10
)

// ErrInvalid is matched (errors.Is) by every *FieldError: the spec, that is the job,
// is at fault, and retrying will not help.
var ErrInvalid = errors.New("invalid seed spec")

// FieldError is a validation error about one Spec field. Field uses the job's
// snake_case name (e.g. "hostname", "cloud_config").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the underlying cause.
func (e *FieldError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// ErrorClass: an invalid seed spec is the job's fault.
func (e *FieldError) ErrorClass() (jobs.Class, bool) { return jobs.ClassJob, false }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Spec describes one job's seed. The zero values of the optional fields are replaced
// by sensible defaults when rendering; Validate reports every problem at once.
type Spec struct {
	// Datasource selects the layout; "" means NoCloud, or ConfigDrive for Ignition.
	Datasource Datasource
	// Provisioning says what reads the user data; "" means CloudInit.
	Provisioning Provisioning
	// User is the login user an Ignition config creates with the client keys; ""
	// means DefaultIgnitionUser. cloud-init seeds leave users to the image.
	User string
	// IgnitionConfig is an optional job Ignition config (spec 3.x JSON) merged with
	// ours; see the ignition package for the rule. Only for Ignition provisioning.
	IgnitionConfig []byte
	// InstanceID is 1..64 characters of [A-Za-z0-9._-]; it is also the ConfigDrive uuid.
	InstanceID string
	// Hostname is an RFC 1123 host name: lowercase a-z, 0-9 and '-', labels of 1..63
	// characters, 253 in all. A dotted name sets fqdn and its first label the hostname.
	Hostname string
	// Keys are the job's client and host keys (required).
	Keys *Keys
	// CloudConfig is an optional job cloud-config (a YAML mapping, with or without the
	// #cloud-config line) merged with ours; see the package doc for the rule.
	CloudConfig []byte

	// MAC is the guest NIC's MAC address; network-config and network_data.json match
	// it, so the worker must put the same address on the domain's interface. Empty
	// means DefaultMAC(InstanceID).
	MAC string
	// Name is the Nova instance name (ConfigDrive); empty means the first label of
	// Hostname.
	Name string
	// AvailabilityZone is the Nova availability zone; empty means DefaultAvailabilityZone.
	AvailabilityZone string
}

// DefaultMAC derives a stable, locally administered QEMU-range MAC (52:54:00:xx:xx:xx)
// from an instance id, so a job's seed and domain agree without coordination.
func DefaultMAC(instanceID string) string {
	sum := sha256.Sum256([]byte(instanceID))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", sum[0], sum[1], sum[2])
}

// MACAddress returns the effective guest MAC: Spec.MAC lowercased, or DefaultMAC.
func (s Spec) MACAddress() string {
	if s.MAC == "" {
		return DefaultMAC(s.InstanceID)
	}
	if hw, err := net.ParseMAC(s.MAC); err == nil {
		return hw.String()
	}
	return strings.ToLower(s.MAC)
}

func (s Spec) datasource() Datasource {
	switch {
	case s.Datasource != "":
		return s.Datasource
	case s.provisioning() == Ignition:
		return ConfigDrive
	}
	return NoCloud
}

func (s Spec) provisioning() Provisioning {
	if s.Provisioning == "" {
		return CloudInit
	}
	return s.Provisioning
}

func (s Spec) user() string {
	if s.User == "" {
		return DefaultIgnitionUser
	}
	return s.User
}

// HasSeed reports whether the spec makes a seed disk (every datasource but Metadata).
func (s Spec) HasSeed() bool { return s.datasource() != Metadata }

// Label returns the ISO volume label cloud-init looks for: "cidata" or "config-2".
func (s Spec) Label() string {
	if s.datasource() == ConfigDrive {
		return "config-2"
	}
	return "cidata"
}

func (s Spec) name() string {
	if s.Name != "" {
		return s.Name
	}
	short, _, _ := strings.Cut(s.Hostname, ".")
	return short
}

func (s Spec) availabilityZone() string {
	if s.AvailabilityZone != "" {
		return s.AvailabilityZone
	}
	return DefaultAvailabilityZone
}

// Validate checks every field and returns all problems joined; each is a *FieldError
// naming its field, and errors.Is(err, ErrInvalid) holds.
func (s Spec) Validate() error {
	_, err := s.check()
	return err
}

// check is Validate returning the parsed job cloud-config too, so renderers parse
// it once.
func (s Spec) check() (job *yaml.Node, err error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	switch s.Datasource {
	case "", NoCloud, ConfigDrive, Metadata:
	default:
		add(fieldErr("datasource", "%q is not one of %q, %q, %q", s.Datasource, NoCloud, ConfigDrive, Metadata))
	}
	add(s.checkProvisioning())
	add(ValidateInstanceID(s.InstanceID))
	add(ValidateHostname(s.Hostname))
	if s.Keys == nil {
		add(fieldErr("keys", "required"))
	}
	job, err = parseJobConfig(s.CloudConfig)
	add(err)
	if s.MAC != "" {
		hw, err := net.ParseMAC(s.MAC)
		switch {
		case err != nil:
			add(fieldErr("mac", "%q is not a MAC address", s.MAC))
		case len(hw) != 6:
			add(fieldErr("mac", "%q is not a 48-bit MAC address", s.MAC))
		case hw[0]&1 != 0:
			add(fieldErr("mac", "%q is a multicast address", s.MAC))
		}
	}
	add(validateText("name", s.Name, 255))
	add(validateText("availability_zone", s.AvailabilityZone, 255))
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return job, nil
}

// checkProvisioning checks what depends on the provisioning: which datasources and
// which job configs fit it.
func (s Spec) checkProvisioning() error {
	var errs []error
	switch s.provisioning() {
	case CloudInit:
		if len(s.IgnitionConfig) > 0 {
			errs = append(errs, fieldErr("ignition_config", "only read by Ignition images: set provisioning %q, or give cloud_config", Ignition))
		}
		if s.Datasource == Metadata {
			errs = append(errs, fieldErr("datasource", "%q (no seed disk) is for Ignition images; cloud-init images are given %q or %q", Metadata, NoCloud, ConfigDrive))
		}
	case Ignition:
		if s.Datasource == NoCloud {
			errs = append(errs, fieldErr("datasource", "Ignition's OpenStack platform reads %q or the metadata service (%q), not a NoCloud seed", ConfigDrive, Metadata))
		}
		if len(s.CloudConfig) > 0 {
			errs = append(errs, fieldErr("cloud_config", "an Ignition image does not read cloud-config: give ignition_config"))
		}
		if _, err := ignition.Parse(s.IgnitionConfig); err != nil {
			errs = append(errs, &FieldError{Field: "ignition_config", Err: err})
		}
		if !validUser(s.user()) {
			errs = append(errs, fieldErr("user", "%q is not a valid login name", s.User))
		}
	default:
		errs = append(errs, fieldErr("provisioning", "%q is not one of %q, %q", s.Provisioning, CloudInit, Ignition))
	}
	return errors.Join(errs...)
}

// validUser accepts the login names useradd does by default: [a-z_][a-z0-9_-]*, at
// most 32 characters.
func validUser(u string) bool {
	if u == "" || len(u) > 32 || !(u[0] == '_' || u[0] >= 'a' && u[0] <= 'z') {
		return false
	}
	for i := 1; i < len(u); i++ {
		if c := u[i]; !(isAlnum(c) || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validateText(field, v string, max int) error {
	switch {
	case len(v) > max:
		return fieldErr(field, "longer than %d bytes", max)
	case !utf8.ValidString(v):
		return fieldErr(field, "not valid UTF-8")
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fieldErr(field, "contains control characters")
	}
	return nil
}

// ValidateInstanceID checks an instance id: 1..64 characters of [A-Za-z0-9._-].
func ValidateInstanceID(id string) error {
	if id == "" {
		return fieldErr("instance_id", "required")
	}
	if len(id) > 64 {
		return fieldErr("instance_id", "%d characters, at most 64 allowed", len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(isAlnum(c) || c >= 'A' && c <= 'Z' || c == '.' || c == '_' || c == '-') {
			return fieldErr("instance_id", "%q: character %q at %d is not one of [A-Za-z0-9._-]", id, rune(c), i)
		}
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ValidateHostname checks an RFC 1123 host name as guests accept it: lowercase
// letters, digits and '-', labels of 1..63 characters not starting or ending with '-',
// at most 253 characters in all, no trailing dot.
func ValidateHostname(h string) error {
	if h == "" {
		return fieldErr("hostname", "required")
	}
	if len(h) > 253 {
		return fieldErr("hostname", "%d characters, at most 253 allowed", len(h))
	}
	for i, label := range strings.Split(h, ".") {
		switch {
		case label == "":
			return fieldErr("hostname", "%q: label %d is empty", h, i+1)
		case len(label) > 63:
			return fieldErr("hostname", "%q: label %q is %d characters, at most 63 allowed", h, label, len(label))
		case label[0] == '-' || label[len(label)-1] == '-':
			return fieldErr("hostname", "%q: label %q starts or ends with '-'", h, label)
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			switch {
			case isAlnum(c) || c == '-':
			case c >= 'A' && c <= 'Z':
				return fieldErr("hostname", "%q: must be lowercase", h)
			default:
				return fieldErr("hostname", "%q: character %q is not one of [a-z0-9-]", h, rune(c))
			}
		}
	}
	return nil
}
