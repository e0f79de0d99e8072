// Package inspect looks inside an image offline, before it boots, with
// libguestfs: what the image is (distribution, version, architecture, kernels,
// packages) and what readers registered in its table (fs.go) find in its file
// systems. It drives one guestfish process, and so one appliance, per image:
// each appliance launch costs tens of seconds under TCG. The image is opened
// read-only; nothing is written to it.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/watch/feed"
)

// Config is how an inspection runs.
type Config struct {
	// TCG runs the appliance without KVM (where the worker's guests run under TCG).
	TCG bool
	// MemoryMiB is the appliance's memory (LIBGUESTFS_MEMSIZE); 0: libguestfs's default.
	MemoryMiB int
	// Nice runs guestfish and its appliance at lower CPU and idle I/O priority,
	// so a boot beside it keeps its share.
	Nice bool
	// Guestfish is the guestfish binary; "": guestfish from PATH.
	Guestfish string
	// Log receives the session's steps; nil: discarded.
	Log *slog.Logger
}

// NoOSError is an image in which libguestfs recognises no operating system.
type NoOSError struct{ Filesystems int }

func (e *NoOSError) Error() string {
	return fmt.Sprintf("libguestfs recognises no operating system in the image (%d file systems)", e.Filesystems)
}

// Inspect inspects the image file at path (format "qcow2", "raw" or "": let
// qemu guess) within ctx and always returns an Inspection: when the image
// cannot be read, or ctx ends first, its Error says why and the facts found
// until then stay. An image without a recognised OS has Error set from a
// *NoOSError and its file systems listed.
func Inspect(ctx context.Context, file, format string, cfg Config) *jobs.Inspection {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	ins := &jobs.Inspection{}
	err := inspect(ctx, file, format, cfg, ins, log)
	ins.Took = jobs.Duration(time.Since(start))
	if err != nil {
		ins.Error, ins.Fault = err.Error(), faultOf(err)
	}
	log.Info("inspection finished", "file", file, "distro", ins.Distro, "version", ins.Version, "arch", ins.Arch,
		"packages", len(ins.Packages), "took", time.Since(start).Round(time.Millisecond), "err", err)
	return ins
}

// faultOf says whose an inspection's error is: a session that could not start,
// died or ran out of time, or an appliance that could not launch, is the
// worker's; what libguestfs answered about the file (no OS, a file system it
// could not read) is the image's.
func faultOf(err error) string {
	var se *SessionError
	var ce *CommandError
	switch {
	case errors.As(err, &se):
		return jobs.FaultWorker
	case errors.As(err, &ce) && ce.Command == "run":
		return jobs.FaultWorker
	}
	return jobs.FaultImage
}

func inspect(ctx context.Context, file, format string, cfg Config, ins *jobs.Inspection, log *slog.Logger) error {
	s, err := startSession(ctx, cfg, file, format)
	if err != nil {
		return err
	}
	defer s.close(10 * time.Second)
	if _, err := s.run(ctx, "run"); err != nil {
		return err
	}
	log.Debug("inspection appliance up", "file", file)
	return inspectIn(ctx, s, ins, log)
}

// inspectIn is the inspection in a session whose appliance runs.
func inspectIn(ctx context.Context, s *session, ins *jobs.Inspection, log *slog.Logger) error {
	out, err := s.run(ctx, "inspect-os")
	if err != nil {
		return err
	}
	roots := lines(out)
	if len(roots) == 0 {
		return noOS(ctx, s, ins)
	}
	root := roots[0]
	if err := facts(ctx, s, root, ins); err != nil {
		return err
	}
	mounted, err := mount(ctx, s, root)
	if err != nil {
		return err
	}
	var errs []error
	if len(mounted) < len(ins.Filesystems) {
		log.Debug("inspection mounted part of the file systems", "mounted", mounted)
	}
	if out, err := s.run(ctx, "inspect-list-applications2", quote(root)); err != nil {
		errs = append(errs, fmt.Errorf("packages: %w", err))
	} else {
		ins.Packages = parseApplications(out)
	}
	fsys := guestFS{s}
	for _, r := range readers {
		if err := r.read(ctx, fsys, ins); err != nil {
			var se *SessionError
			if errors.As(err, &se) {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", r.name, err))
		}
	}
	return errors.Join(errs...)
}

// noOS lists the file systems of an image without a recognised OS.
func noOS(ctx context.Context, s *session, ins *jobs.Inspection) error {
	out, err := s.run(ctx, "list-filesystems")
	if err != nil {
		return err
	}
	for _, l := range lines(out) {
		dev, typ, _ := strings.Cut(l, ": ")
		ins.Filesystems = append(ins.Filesystems, jobs.Filesystem{Device: dev, Type: typ})
	}
	return &NoOSError{Filesystems: len(ins.Filesystems)}
}

// facts reads what libguestfs's inspection says about the OS at root.
func facts(ctx context.Context, s *session, root string, ins *jobs.Inspection) error {
	one := func(cmd string) (string, error) {
		out, err := s.run(ctx, cmd, quote(root))
		return strings.TrimSpace(string(out)), err
	}
	var major, minor string
	for _, f := range []struct {
		cmd string
		dst *string
	}{
		{"inspect-get-type", &ins.OS},
		{"inspect-get-distro", &ins.Distro},
		{"inspect-get-major-version", &major},
		{"inspect-get-minor-version", &minor},
		{"inspect-get-product-name", &ins.Product},
		{"inspect-get-arch", &ins.Arch},
		{"inspect-get-package-format", &ins.PackageFormat},
		{"inspect-get-hostname", &ins.Hostname},
	} {
		v, err := one(f.cmd)
		if err != nil {
			return err
		}
		if v != "unknown" {
			*f.dst = v
		}
	}
	ins.Version = major
	if minor != "" && minor != "0" {
		ins.Version += "." + minor
	}
	out, err := s.run(ctx, "inspect-get-mountpoints", quote(root))
	if err != nil {
		return err
	}
	mps := parseMountpoints(out)
	out, err = s.run(ctx, "inspect-get-filesystems", quote(root))
	if err != nil {
		return err
	}
	for _, dev := range lines(out) {
		f := jobs.Filesystem{Device: dev}
		for _, mp := range mps {
			if mp[1] == dev {
				f.Mountpoint = mp[0]
			}
		}
		for _, p := range []struct {
			cmd string
			dst *string
		}{{"vfs-type", &f.Type}, {"vfs-label", &f.Label}, {"vfs-uuid", &f.UUID}} {
			// A file system without a label or UUID is no error of the image.
			if out, err := s.run(ctx, p.cmd, quote(dev)); err == nil {
				*p.dst = strings.TrimSpace(string(out))
			} else if se := (*SessionError)(nil); errors.As(err, &se) {
				return err
			}
		}
		ins.Filesystems = append(ins.Filesystems, f)
	}
	return nil
}

// mount mounts root's file systems read-only where its OS mounts them; one that
// does not mount (a swap, an EFI partition the appliance cannot read) is left
// out, but the root must mount.
func mount(ctx context.Context, s *session, root string) ([]string, error) {
	out, err := s.run(ctx, "inspect-get-mountpoints", quote(root))
	if err != nil {
		return nil, err
	}
	var mounted []string
	for _, mp := range parseMountpoints(out) {
		if _, err := s.run(ctx, "mount-ro", quote(mp[1]), quote(mp[0])); err != nil {
			var se *SessionError
			if mp[0] == "/" || errors.As(err, &se) {
				return nil, err
			}
			continue
		}
		mounted = append(mounted, mp[0])
	}
	return mounted, nil
}

// readOSRelease takes the image's own name of itself and its codename from
// /etc/os-release.
func readOSRelease(ctx context.Context, fsys FS, ins *jobs.Inspection) error {
	b, err := fsys.ReadFile(ctx, "/etc/os-release", 64<<10)
	if err != nil {
		b, err = fsys.ReadFile(ctx, "/usr/lib/os-release", 64<<10)
	}
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return err
	}
	m := parseOSRelease(b)
	if v := m["PRETTY_NAME"]; v != "" {
		ins.Product = v
	}
	ins.Codename = m["VERSION_CODENAME"]
	ins.VersionID = m["VERSION_ID"]
	return nil
}

// readAdminUser takes the default user of the image's cloud-init
// configuration (system_info.default_user.name): cloud.cfg, then the files of
// cloud.cfg.d in order, the last that names one winning.
func readAdminUser(ctx context.Context, fsys FS, ins *jobs.Inspection) error {
	files := []string{"/etc/cloud/cloud.cfg"}
	more, err := fsys.Glob(ctx, "/etc/cloud/cloud.cfg.d/*.cfg")
	if err != nil {
		return err
	}
	slices.Sort(more)
	for _, f := range append(files, more...) {
		b, err := fsys.ReadFile(ctx, f, 1<<20)
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		var cfg struct {
			SystemInfo struct {
				DefaultUser struct {
					Name string `yaml:"name"`
				} `yaml:"default_user"`
			} `yaml:"system_info"`
		}
		// A file cloud-init itself would refuse names no user.
		if yaml.Unmarshal(b, &cfg) == nil && cfg.SystemInfo.DefaultUser.Name != "" {
			ins.AdminUser = cfg.SystemInfo.DefaultUser.Name
		}
	}
	return nil
}

// readKernels lists the kernels installed under /boot, newest first.
func readKernels(ctx context.Context, fsys FS, ins *jobs.Inspection) error {
	paths, err := fsys.Glob(ctx, "/boot/vmlinuz-*")
	if err != nil {
		return err
	}
	ins.Kernels = nil
	for _, p := range paths {
		ins.Kernels = append(ins.Kernels, strings.TrimPrefix(path.Base(p), "vmlinuz-"))
	}
	slices.SortFunc(ins.Kernels, func(a, b string) int { return feed.CompareVersions(b, a) })
	return nil
}
