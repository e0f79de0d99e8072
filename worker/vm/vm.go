// Package vm defines how imagevet boots and tears down the machine a job runs
// in: a Hypervisor turns a Spec into a running Machine, and every Machine can be
// destroyed idempotently. Implementations live in sub-packages (libvirt for
// real guests, fake for unit tests of the worker).
package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/imagevet/imagevet/jobs"
)

// Firmware values for Spec.Firmware.
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// Acceleration values for Spec.Accel and Hypervisor.Accel.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Machine types for Spec.Machine.
const (
	MachinePC  = "pc"  // i440fx: IDE CD-ROM, what OpenStack gives BIOS guests by default
	MachineQ35 = "q35" // ICH9: SATA CD-ROM, PCIe
)

// Seed bus values for Spec.SeedBus.
const (
	SeedCDROM = "cdrom"
	SeedDisk  = "disk"
)

// Spec describes one machine to boot. Paths are absolute; the files belong to
// the caller, who deletes them after Destroy.
type Spec struct {
	Name       string // domain name; callers use DomainName(prefix, worker, job)
	Worker     string // worker id, recorded in the machine's metadata
	Job        string // job id, recorded in the machine's metadata
	Owner      string // the owning process's lock (see worker/owner), recorded in the machine's metadata
	Disk       string // qcow2 overlay path (abs)
	Seed       string // seed ISO path (abs); empty = no seed
	SeedBus    string // SeedCDROM (default: IDE CD-ROM on pc, SATA on q35) or SeedDisk (virtio disk)
	Firmware   string // FirmwareBIOS (default) or FirmwareUEFI
	Machine    string // MachinePC or MachineQ35; default pc for bios, q35 for uefi
	Accel      string // AccelAuto (default), AccelKVM or AccelTCG
	VCPUs      int
	MemoryMiB  int
	MAC        string // guest NIC MAC (ConfigDrive network_data uses it)
	ConsoleLog string // serial console log file (abs), written live while the guest runs
	NVRAM      string // uefi only: per-machine vars file (abs), created from the OVMF template if missing
	// MetadataAddr is a loopback TCP host:port ("127.0.0.1:PORT") that qemu
	// connects to once, as a chardev, and through which it forwards every
	// guest TCP connection to 169.254.169.254:80, one after another on that
	// one stream (metadata.Server.StreamAddr serves it). Empty means no
	// metadata forward. No host process is started per guest connection.
	MetadataAddr string
}

// Validate reports the first problem that makes s unbootable regardless of the
// host, wrapped in ErrInvalidSpec. It does not touch the file system.
func (s Spec) Validate() error {
	switch {
	case s.Name == "" || len(s.Name) > MaxNameLen || strings.ContainsAny(s.Name, "/\x00"):
		return invalidSpec("name %q: want 1-%d characters without '/'", s.Name, MaxNameLen)
	case !filepath.IsAbs(s.Disk):
		return invalidSpec("disk %q: want an absolute path", s.Disk)
	case s.Seed != "" && !filepath.IsAbs(s.Seed):
		return invalidSpec("seed %q: want an absolute path", s.Seed)
	case !filepath.IsAbs(s.ConsoleLog):
		return invalidSpec("console log %q: want an absolute path", s.ConsoleLog)
	case s.VCPUs < 1 || s.VCPUs > 64:
		return invalidSpec("vcpus %d: want 1-64", s.VCPUs)
	case s.MemoryMiB < 64 || s.MemoryMiB > 1<<20:
		return invalidSpec("memory %d MiB: want 64 MiB-1 TiB", s.MemoryMiB)
	}
	if err := s.validateChoices(); err != nil {
		return err
	}
	return s.validateNetwork()
}

// invalidSpec is an ErrInvalidSpec saying what is wrong.
func invalidSpec(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}

// validateChoices checks the settings that name one of a few choices: seed bus,
// firmware (UEFI with its vars path), machine type, accelerator.
func (s Spec) validateChoices() error {
	switch s.SeedBus {
	case "", SeedCDROM, SeedDisk:
	default:
		return invalidSpec("seed bus %q: want %q or %q", s.SeedBus, SeedCDROM, SeedDisk)
	}
	switch s.Firmware {
	case "", FirmwareBIOS:
	case FirmwareUEFI:
		if !filepath.IsAbs(s.NVRAM) {
			return invalidSpec("nvram %q: uefi needs an absolute per-machine vars path", s.NVRAM)
		}
	default:
		return invalidSpec("firmware %q: want %q or %q", s.Firmware, FirmwareBIOS, FirmwareUEFI)
	}
	switch s.Machine {
	case "", MachinePC, MachineQ35:
	default:
		return invalidSpec("machine %q: want %q or %q", s.Machine, MachinePC, MachineQ35)
	}
	switch s.Accel {
	case "", AccelAuto, AccelKVM, AccelTCG:
	default:
		return invalidSpec("accel %q: want %q, %q or %q", s.Accel, AccelAuto, AccelKVM, AccelTCG)
	}
	return nil
}

// validateNetwork checks the guest NIC's MAC and the metadata service's address.
func (s Spec) validateNetwork() error {
	if s.MAC != "" {
		hw, err := net.ParseMAC(s.MAC)
		if err != nil || len(hw) != 6 {
			return invalidSpec("mac %q: want a 48-bit MAC like 52:54:00:12:34:56", s.MAC)
		}
		if hw[0]&1 != 0 {
			return invalidSpec("mac %q: multicast bit set", s.MAC)
		}
	}
	if s.MetadataAddr != "" {
		ap, err := netip.ParseAddrPort(s.MetadataAddr)
		if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() || ap.Port() == 0 {
			return invalidSpec("metadata address %q: want a loopback IPv4 host:port like 127.0.0.1:8775", s.MetadataAddr)
		}
	}
	return nil
}

// MachineType returns the machine type s boots with: Machine if set, else pc
// for BIOS (matching OpenStack's default, whose images may only have drivers
// for an IDE CD-ROM) and q35 for UEFI.
func (s Spec) MachineType() string {
	switch {
	case s.Machine != "":
		return s.Machine
	case s.Firmware == FirmwareUEFI:
		return MachineQ35
	default:
		return MachinePC
	}
}

// Hypervisor boots machines and cleans up after them. Implementations are safe
// for concurrent use and bound every call by ctx and their own deadlines.
type Hypervisor interface {
	// Boot defines and starts a transient machine; on error nothing is left
	// running.
	Boot(ctx context.Context, spec Spec) (Machine, error)
	// SweepOrphans destroys every machine whose name starts with prefix and
	// whose recorded owner orphaned reports gone; machines of live owners, and
	// machines recording no owner, are left alone. It reports how many it
	// destroyed.
	SweepOrphans(ctx context.Context, prefix string, orphaned func(owner string) bool) (int, error)
	// Accel reports what requested ("auto", "kvm", "tcg") resolves to on
	// this host: "kvm" or "tcg". Requesting "kvm" where it is unusable fails.
	Accel(ctx context.Context, requested string) (string, error)
}

// Machine is one booted guest. Its methods are safe for concurrent use.
type Machine interface {
	// Name is the hypervisor's name for the machine (Spec.Name).
	Name() string
	// SSHAddr is the host address forwarded to the guest's port 22,
	// "127.0.0.1:PORT".
	SSHAddr() string
	// ConsoleLog is the path of the serial console log (Spec.ConsoleLog).
	ConsoleLog() string
	// Running reports whether the guest is still up; a machine that no
	// longer exists is not running and is not an error.
	Running(ctx context.Context) (bool, error)
	// Destroy stops and removes the machine: idempotent, safe after a failed
	// Boot, not-found is success. The machine's files stay; they are the
	// caller's to delete.
	Destroy(ctx context.Context) error
}

// Sentinel errors, matched with errors.Is. They are wrapped in *Error.
var (
	// ErrInvalidSpec: the spec can never boot (bad value, missing file,
	// rejected definition). Not retryable.
	ErrInvalidSpec = errors.New("invalid machine spec")
	// ErrUnavailable: the hypervisor could not be reached or dropped the
	// connection. Retryable.
	ErrUnavailable = errors.New("hypervisor unavailable")
	// ErrTimeout: a hypervisor call did not answer within its deadline.
	// Retryable.
	ErrTimeout = errors.New("hypervisor call timed out")
	// ErrExists: a machine with the same name is already running (a
	// concurrent attempt of the same job). Retryable.
	ErrExists = errors.New("machine already exists")
	// ErrUnsupported: the host cannot provide what the spec asks for (no
	// KVM, no OVMF firmware). Retryable on another host.
	ErrUnsupported = errors.New("not supported on this host")
	// ErrVanished: a running machine stopped without the guest asking for it
	// (destroyed from outside, emulator killed). Retryable.
	ErrVanished = errors.New("machine vanished")
)

// Error is the error type every Hypervisor and Machine method returns. It says
// which operation failed, on which machine, and whether trying again later (or
// elsewhere) may succeed: Retryable errors are infrastructure trouble, the rest
// are caused by the spec.
type Error struct {
	Op        string // "boot", "destroy", "sweep", "accel", "running", "connect"
	Machine   string // machine name, if any
	Retryable bool
	Err       error
}

func (e *Error) Error() string {
	if e.Machine != "" {
		return fmt.Sprintf("vm %s %s: %v", e.Op, e.Machine, e.Err)
	}
	return fmt.Sprintf("vm %s: %v", e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsRetryable reports whether err is (or wraps) a *Error marked retryable.
func IsRetryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable
	}
	return false
}

// QemuSearchable reports why the hypervisor's unprivileged qemu user (not the
// owner of the files) could not traverse dir and every directory above it, or
// nil: each must be world-searchable.
func QemuSearchable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s is mode %v: the qemu user needs it world-searchable (0755 or 0711)", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// ErrorClass: a hypervisor error is the infrastructure's, retryable as marked,
// unless what it wraps knows better.
func (e *Error) ErrorClass() (jobs.Class, bool) {
	if c, retry, ok := jobs.ClassOf(e.Err); ok {
		return c, retry
	}
	return jobs.ClassInfra, e.Retryable
}
