package inspect

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/fixtures"
	"github.com/imagevet/imagevet/internal/testenv"
	"github.com/imagevet/imagevet/jobs"
)

// needGuestfish skips (fails under CI) a test that launches an appliance where
// the integration tests are not asked for or guestfish is missing.
func needGuestfish(t testing.TB, fixture string) string {
	t.Helper()
	if testing.Short() || os.Getenv("IMAGEVET_INTEGRATION") != "1" {
		t.Skip("launches a libguestfs appliance: set IMAGEVET_INTEGRATION=1, not in -short mode")
	}
	if _, err := exec.LookPath("guestfish"); err != nil {
		testenv.Missing(t, "guestfish (Debian's libguestfs-tools): %v", err)
	}
	p := fixtures.Path(fixture)
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "fixture %s (fixtures/build %s): %v", p, fixture, err)
	}
	return p
}

// One appliance on the tiny fixture: libguestfs recognises no OS in it (its
// root lives in an initramfs), which the inspection reports; the FS then reads
// its boot file system, mounted by hand.
func TestTinySession(t *testing.T) {
	file := needGuestfish(t, "tiny")
	t.Parallel() // each appliance is one TCG vCPU: two share the host's cores
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	s, err := startSession(ctx, Config{TCG: true, Nice: true}, file, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close(10 * time.Second)
	if _, err := s.run(ctx, "run"); err != nil {
		t.Fatal(err)
	}
	ins := &jobs.Inspection{}
	err = inspectIn(ctx, s, ins, slog.New(slog.DiscardHandler))
	var noOS *NoOSError
	if !errors.As(err, &noOS) || len(ins.Filesystems) != 1 || ins.Filesystems[0].Type != "ext4" {
		t.Fatalf("tiny: err %v, file systems %+v; want a NoOSError and one ext4", err, ins.Filesystems)
	}
	if _, err := s.run(ctx, "mount-ro", quote("/dev/sda1"), quote("/")); err != nil {
		t.Fatal(err)
	}
	var fsys FS = guestFS{s}

	want, err := os.ReadFile("../fixtures/tiny/grub.cfg")
	if err != nil {
		t.Fatal(err)
	}
	got, err := fsys.ReadFile(ctx, "/boot/grub/grub.cfg", 1<<20)
	if err != nil || string(got) != string(want) {
		t.Fatalf("ReadFile grub.cfg = %q, %v; want %q", got, err, want)
	}
	if got, err := fsys.ReadFile(ctx, "/boot/grub/grub.cfg", 5); err != nil || string(got) != string(want[:5]) {
		t.Fatalf("ReadFile grub.cfg max 5 = %q, %v", got, err)
	}
	if _, err := fsys.ReadFile(ctx, "/etc/no such \"file\"", 10); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile of an absent file: %v, want fs.ErrNotExist", err)
	}
	paths, err := fsys.Glob(ctx, "/boot/*")
	if err != nil || !slices.Equal(paths, []string{"/boot/grub", "/boot/initrd.img", "/boot/vmlinuz"}) {
		t.Fatalf("Glob /boot/* = %q, %v", paths, err)
	}
	if paths, err := fsys.Glob(ctx, "/nothing/*"); err != nil || len(paths) != 0 {
		t.Fatalf("Glob of nothing = %q, %v", paths, err)
	}
	files, err := fsys.Find(ctx, "/boot")
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]File{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	if f := byPath["/boot/grub"]; !f.Mode.IsDir() || f.Mode.Perm() != 0o755 {
		t.Errorf("Find: /boot/grub = %+v, want a 0755 directory", f)
	}
	if f := byPath["/boot/grub/grub.cfg"]; !f.Mode.IsRegular() || f.Mode.Perm() != 0o644 || f.Size != int64(len(want)) {
		t.Errorf("Find: grub.cfg = %+v, want a 0644 file of %d bytes", f, len(want))
	}
	if len(files) != 4 {
		t.Errorf("Find /boot listed %d entries, want 4: %+v", len(files), files)
	}
	// The session survived every failed command.
	if _, err := s.run(ctx, "echo", "alive"); err != nil {
		t.Fatal(err)
	}
}

// A cancelled inspection ends at once, guestfish and its qemu killed.
func TestInspectCancelled(t *testing.T) {
	file := needGuestfish(t, "tiny")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	start := time.Now()
	ins := Inspect(ctx, file, "qcow2", Config{TCG: true})
	if ins.Error == "" || time.Since(start) > 20*time.Second {
		t.Fatalf("cancelled inspection: error %q after %s", ins.Error, time.Since(start))
	}
}

// The debian13 fixture in a Debian 12 job: the inspection sees trixie and the
// identity check fails naming both sides.
func TestDebian13InDebian12Job(t *testing.T) {
	file := needGuestfish(t, "debian13")
	t.Parallel() // each appliance is one TCG vCPU: two share the host's cores
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	ins := Inspect(ctx, file, "qcow2", Config{TCG: true, MemoryMiB: 768})
	t.Logf("inspection took %s: %s %s (%s) %s, %d packages, kernels %v, admin user %q",
		ins.Took.D(), ins.Distro, ins.Version, ins.Codename, ins.Arch, len(ins.Packages), ins.Kernels, ins.AdminUser)
	if ins.Error != "" || ins.Distro != "debian" || !strings.HasPrefix(ins.Version, "13") || ins.Codename != "trixie" ||
		ins.Arch != "x86_64" || len(ins.Packages) < 100 || len(ins.Kernels) == 0 || len(ins.Filesystems) == 0 {
		t.Fatalf("inspection: %+v", *ins)
	}
	pub := jobs.Publication{Family: "debian-12", Properties: map[string]string{"os_distro": "debian", "os_version": "12"}}
	res := Identity(ins, pub)
	if res.Status != jobs.StatusFail || !strings.HasPrefix(res.Reason, "image is debian 13") || !strings.Contains(res.Reason, "(trixie)") ||
		!strings.Contains(res.Reason, "the job says os_version 12, family debian-12") {
		t.Fatalf("identity: %s %q", res.Status, res.Reason)
	}
}
