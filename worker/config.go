package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/keyring"
	"github.com/imagevet/imagevet/worker/vm"
)

// Config is everything a worker needs to vet jobs on this host. The command fills
// it from the settings table (flags, IMAGEVET_* variables, the configuration
// file; cmd/imagevet/settings.go), validates it once at start and passes it
// explicitly.
type Config struct {
	// WorkerID names this worker in domain names, results and logs (default: hostname).
	WorkerID string
	// StateDir holds the image cache and per-job directories. libvirt's qemu user must
	// be able to traverse it.
	StateDir string
	// LibvirtURI is the libvirt connection (only local qemu:///system or
	// qemu:///session sockets).
	LibvirtURI string
	// Accel is auto, kvm or tcg.
	Accel string
	// TCGFactor multiplies a job's boot, cloud-init and command timeouts when the
	// guest is emulated.
	TCGFactor float64
	// ImageRoots are the directories file sources may come from; relative sources
	// resolve against the first.
	ImageRoots []string
	// DomainPrefix starts every domain name this worker creates; the startup sweep
	// removes domains with this prefix and worker id.
	DomainPrefix string
	// CacheMax caps the image cache in bytes: least recently used images no
	// job holds are evicted to make room.
	CacheMax int64
	// Keyring is an OpenPGP keyring file (armored or binary); when set, every
	// checksum list (image.sums_url) must be signed by a key in it.
	Keyring string
	// MaxTimeouts are the operator's maxima for a job's timeouts (before the
	// TCG factor): a job asking for more is rejected naming the field and the
	// maximum; a default above a maximum is lowered to it.
	MaxTimeouts jobs.Timeouts
	// Inspect looks inside each job's image offline with libguestfs, beside the
	// boot (package inspect): the identity check and the facts on the result.
	Inspect bool
	// InspectTimeout bounds one inspection on a KVM host (scaled by TCGFactor
	// under TCG).
	InspectTimeout time.Duration
	// KeepFailed leaves a failed job's machine running for debugging.
	KeepFailed bool
	// ConsoleTailLines is how many console lines a result carries.
	ConsoleTailLines int
	// CleanupTimeout bounds cleanup after a job, even a cancelled one.
	CleanupTimeout time.Duration
	// Owner is this process's owner lock file (worker/owner), recorded in every
	// machine it boots and naming its job directory; set at start, not a flag.
	Owner string
}

// DefaultInspectTimeout is the default bound of one inspection on a KVM host:
// under TCG (times the TCG factor) Debian 12's took 3 min at load average 17–21 on
// 2 cores, 37 s on a quiet host (BENCHMARKS.md).
const DefaultInspectTimeout = 2 * time.Minute

// DefaultCacheMax is the default image cache cap.
const DefaultCacheMax = 20 << 30

// Default operator maxima for job timeouts.
const (
	DefaultMaxFetch     = 2 * time.Hour
	DefaultMaxBoot      = 30 * time.Minute
	DefaultMaxCloudInit = time.Hour
	DefaultMaxCommand   = time.Hour
	DefaultMaxTotal     = 4 * time.Hour
)

// DefaultConfig returns the defaults, before the settings table applies its values.
func DefaultConfig() Config {
	return Config{
		WorkerID:         jobs.DefaultWorkerID(),
		StateDir:         "/var/lib/imagevet",
		LibvirtURI:       "qemu:///system",
		Accel:            "auto",
		TCGFactor:        3,
		DomainPrefix:     "imagevet-",
		ConsoleTailLines: 60,
		CleanupTimeout:   30 * time.Second,
		CacheMax:         DefaultCacheMax,
		Inspect:          true,
		InspectTimeout:   DefaultInspectTimeout,
		MaxTimeouts: jobs.Timeouts{
			Fetch:     jobs.Duration(DefaultMaxFetch),
			Boot:      jobs.Duration(DefaultMaxBoot),
			CloudInit: jobs.Duration(DefaultMaxCloudInit),
			Command:   jobs.Duration(DefaultMaxCommand),
			Total:     jobs.Duration(DefaultMaxTotal),
		},
	}
}

// Validate checks the configuration and fills in derived defaults.
func (c *Config) Validate() error {
	var errs []error
	if err := jobs.ValidWorkerID(c.WorkerID); err != nil {
		errs = append(errs, fmt.Errorf("worker-id: %w", err))
	}
	switch c.Accel {
	case "auto", "kvm", "tcg":
	default:
		errs = append(errs, fmt.Errorf("accel: %q must be auto, kvm or tcg", c.Accel))
	}
	if c.TCGFactor < 1 || c.TCGFactor > 100 {
		errs = append(errs, fmt.Errorf("tcg-factor: %g must be between 1 and 100", c.TCGFactor))
	}
	for _, m := range []struct {
		flag string
		d    jobs.Duration
	}{
		{"max-fetch", c.MaxTimeouts.Fetch}, {"max-boot", c.MaxTimeouts.Boot}, {"max-cloud-init", c.MaxTimeouts.CloudInit},
		{"max-command", c.MaxTimeouts.Command}, {"max-total", c.MaxTimeouts.Total},
	} {
		if m.d < jobs.Duration(time.Second) {
			errs = append(errs, fmt.Errorf("%s: %s must be at least 1s (it would refuse every job)", m.flag, m.d.D()))
		}
	}
	if !filepath.IsAbs(c.StateDir) {
		errs = append(errs, fmt.Errorf("state-dir: %q must be an absolute path", c.StateDir))
	}
	if !strings.HasPrefix(c.LibvirtURI, "qemu:///") {
		errs = append(errs, fmt.Errorf("libvirt-uri: %q: only local qemu:/// URIs are supported", c.LibvirtURI))
	}
	for i, r := range c.ImageRoots {
		abs, err := filepath.Abs(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("image-root: %q: %w", r, err))
			continue
		}
		c.ImageRoots[i] = abs
	}
	if c.CacheMax < 1<<20 {
		errs = append(errs, fmt.Errorf("cache-max: %d bytes: at least 1M (one image must fit)", c.CacheMax))
	}
	if c.Keyring != "" {
		if _, err := keyring.Load(c.Keyring); err != nil {
			errs = append(errs, fmt.Errorf("keyring: %w", err))
		}
	}
	if c.DomainPrefix == "" {
		errs = append(errs, errors.New("domain-prefix: must not be empty (the startup sweep would match every domain)"))
	}
	if c.ConsoleTailLines < 1 {
		errs = append(errs, fmt.Errorf("console tail lines: %d must be at least 1", c.ConsoleTailLines))
	}
	if c.Inspect && c.InspectTimeout < time.Second {
		errs = append(errs, fmt.Errorf("inspect-timeout: %s must be at least 1s", c.InspectTimeout))
	}
	if c.CleanupTimeout < time.Second {
		errs = append(errs, fmt.Errorf("cleanup timeout: %s must be at least 1s", c.CleanupTimeout))
	}
	return errors.Join(errs...)
}

// ParseBytes reads a size like "20G", "512M", "1048576" (binary units K, M, G,
// T; an optional trailing "i" or "B" is accepted: "20GiB").
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "B"), "i")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("not a size like 20G or 512M: %q", s)
	}
	return v * mult, nil
}

// FormatBytes writes n in the largest binary unit that divides it exactly.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Prepare readies the host side of the configuration: the state directory, which
// libvirt's qemu user must be able to traverse. Call it once at start, after
// Validate.
func (c *Config) Prepare() error {
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	abs, err := filepath.Abs(c.StateDir)
	if err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	if err := vm.QemuSearchable(abs); err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	return nil
}
