package worker

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is everything a worker needs to vet jobs on this host. It is filled from
// flags with IMAGEVET_* environment fallbacks, validated once at start and passed
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

// DefaultConfig returns the defaults, before flags and environment.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		WorkerID:         sanitizeID(host),
		StateDir:         "/var/lib/imagevet",
		LibvirtURI:       "qemu:///system",
		Accel:            "auto",
		TCGFactor:        3,
		DomainPrefix:     "imagevet-",
		ConsoleTailLines: 60,
		CleanupTimeout:   30 * time.Second,
	}
}

// RegisterFlags adds the worker flags to fs, each defaulting to its IMAGEVET_*
// environment variable when set.
func (c *Config) RegisterFlags(fs *flag.FlagSet, getenv func(string) string) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.WorkerID, "worker-id", env("IMAGEVET_WORKER_ID", c.WorkerID), "worker id in domain names and results (IMAGEVET_WORKER_ID)")
	fs.StringVar(&c.StateDir, "state-dir", env("IMAGEVET_STATE_DIR", c.StateDir), "image cache and per-job files (IMAGEVET_STATE_DIR)")
	fs.StringVar(&c.LibvirtURI, "libvirt-uri", env("IMAGEVET_LIBVIRT_URI", c.LibvirtURI), "libvirt connection URI (IMAGEVET_LIBVIRT_URI)")
	fs.StringVar(&c.Accel, "accel", env("IMAGEVET_ACCEL", c.Accel), "auto, kvm or tcg (IMAGEVET_ACCEL)")
	factor := env("IMAGEVET_TCG_FACTOR", strconv.FormatFloat(c.TCGFactor, 'g', -1, 64))
	c.TCGFactor, _ = strconv.ParseFloat(factor, 64)
	fs.Func("tcg-factor", "multiply boot/cloud-init/command timeouts under TCG (IMAGEVET_TCG_FACTOR, default "+factor+")", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", s)
		}
		c.TCGFactor = v
		return nil
	})
	if v := getenv("IMAGEVET_IMAGE_ROOTS"); v != "" {
		c.ImageRoots = filepath.SplitList(v)
	}
	fs.Func("image-root", "directory file sources may come from; repeatable (IMAGEVET_IMAGE_ROOTS, colon-separated)", func(s string) error {
		c.ImageRoots = append(c.ImageRoots, s)
		return nil
	})
	fs.StringVar(&c.DomainPrefix, "domain-prefix", env("IMAGEVET_DOMAIN_PREFIX", c.DomainPrefix), "prefix of every domain this worker creates (IMAGEVET_DOMAIN_PREFIX)")
}

// Validate checks the configuration and fills in derived defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.WorkerID == "" || sanitizeID(c.WorkerID) != c.WorkerID {
		errs = append(errs, fmt.Errorf("worker-id: %q must be 1-32 lowercase letters, digits or '-'", c.WorkerID))
	}
	switch c.Accel {
	case "auto", "kvm", "tcg":
	default:
		errs = append(errs, fmt.Errorf("accel: %q must be auto, kvm or tcg", c.Accel))
	}
	if c.TCGFactor < 1 || c.TCGFactor > 100 {
		errs = append(errs, fmt.Errorf("tcg-factor: %g must be between 1 and 100", c.TCGFactor))
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
	if c.DomainPrefix == "" {
		errs = append(errs, errors.New("domain-prefix: must not be empty (the startup sweep would match every domain)"))
	}
	if c.ConsoleTailLines <= 0 {
		c.ConsoleTailLines = 60
	}
	if c.CleanupTimeout <= 0 {
		c.CleanupTimeout = 30 * time.Second
	}
	return errors.Join(errs...)
}

// sanitizeID lowercases s and keeps letters, digits and '-', at most 32 of them.
func sanitizeID(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if b.Len() >= 32 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		case r == '.' || r == '_':
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}
