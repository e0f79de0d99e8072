package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixturesDir returns the directory the fixtures builder fills, skipping the
// test when it lacks what the test needs (failing instead when CI=true).
func fixturesDir(t *testing.T, need ...string) string {
	t.Helper()
	dir := os.Getenv("IMAGEVET_FIXTURES")
	if dir == "" {
		dir = "/var/cache/imagevet/fixtures"
	}
	for _, n := range need {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("fixture %s missing in %s (run fixtures/build): %v", n, dir, err)
			}
			t.Skipf("fixture %s missing in %s; build it with fixtures/build", n, dir)
		}
	}
	return dir
}

// fixtureVerdicts is what each fixture must produce: "" accepted, else the
// rule it breaks.
var fixtureVerdicts = map[string]Violation{
	"tiny.qcow2":              "",
	"unsafe-backing.qcow2":    ViolationBackingFile,
	"unsafe-datafile.qcow2":   ViolationDataFile,
	"unsafe-rawasqcow2.qcow2": ViolationFormatMismatch,
	"unsafe-truncated.qcow2":  ViolationTruncated,
	"unsafe-empty.qcow2":      ViolationEmpty,
	"unsafe-random.qcow2":     ViolationFormatMismatch,
}

func fixtureNames() []string {
	names := []string{"SHA256SUMS", "SHA512SUMS"}
	for n := range fixtureVerdicts {
		names = append(names, n)
	}
	return names
}

// TestFixturesInspect runs Inspect and Check over the fixture images, all
// claimed qcow2 as a job would claim them.
func TestFixturesInspect(t *testing.T) {
	dir := fixturesDir(t, fixtureNames()...)
	for name, rule := range fixtureVerdicts {
		t.Run(name, func(t *testing.T) {
			info, err := inspectFile(t, filepath.Join(dir, name))
			if err == nil {
				err = info.Check(FormatQCOW2, DefaultMaxVirtualSize)
			}
			if rule == "" {
				if err != nil {
					t.Fatalf("%s rejected: %v", name, err)
				}
				if info.BackingFile != "" || info.DataFile != "" || info.VirtualSize == 0 {
					t.Fatalf("info = %+v", info)
				}
				return
			}
			ue := wantRule(t, err, rule)
			t.Logf("%s: %s", name, ue.Reason)
		})
	}
}

// TestFixturesFetch ingests every fixture through a Store with the vendor
// SUMS files, as a job would: tiny is cached, every unsafe input rejected
// with the right rule and nothing published for it.
func TestFixturesFetch(t *testing.T) {
	dir := fixturesDir(t, fixtureNames()...)
	s := newStore(t, dir)
	ctx := context.Background()
	for name, rule := range fixtureVerdicts {
		for _, sums := range []string{"SHA256SUMS", "SHA512SUMS"} {
			t.Run(name+"/"+sums, func(t *testing.T) {
				img, err := s.Fetch(ctx, Source{URL: name, Format: FormatQCOW2, SumsURL: sums}, nil)
				if rule == "" {
					if err != nil {
						t.Fatal(err)
					}
					if img.Format != FormatQCOW2 || img.VirtualSize == 0 || len(img.SHA512) != 128 {
						t.Fatalf("image = %+v", img)
					}
					return
				}
				var ce *ChecksumMismatchError
				if errors.As(err, &ce) {
					t.Fatalf("%s: checksum mismatch against %s (stale SUMS?): %v", name, sums, err)
				}
				ue := wantRule(t, err, rule)
				if ue.File != name {
					t.Fatalf("error names %q, want %q", ue.File, name)
				}
			})
		}
	}
	// Only tiny made it into the cache.
	entries, err := os.ReadDir(filepath.Join(s.Dir(), "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 { // image + facts
		t.Fatalf("cache holds %d entries, want tiny's 2: %v", len(entries), entries)
	}
	assertNoTemp(t, s)
}

// TestFixturesBootableAccepted checks that every bootable fixture present
// (tiny's broken variants fail only at run time, debian12 is a real cloud
// image) passes inspection: no false rejections on real qemu-built images.
func TestFixturesBootableAccepted(t *testing.T) {
	dir := fixturesDir(t, "tiny.qcow2")
	paths, err := filepath.Glob(filepath.Join(dir, "*.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		name := filepath.Base(p)
		if strings.HasPrefix(name, "unsafe-") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			info, err := inspectFile(t, p)
			if err == nil {
				err = info.Check(FormatQCOW2, DefaultMaxVirtualSize)
			}
			if err != nil {
				t.Fatalf("%s rejected: %v", name, err)
			}
			if name != "tiny.qcow2" && name != "debian12.qcow2" {
				return
			}
			// The same disk as raw must pass the raw rules (boot sector,
			// MBR/GPT checks) too.
			needQemuImg(t)
			raw := filepath.Join(t.TempDir(), "disk.raw")
			run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", p, raw)
			info, err = inspectFile(t, raw)
			if err == nil {
				err = info.Check(FormatRaw, DefaultMaxVirtualSize)
			}
			if err != nil {
				t.Fatalf("%s as raw rejected: %v", name, err)
			}
			t.Logf("%s as raw: partition table %q", name, info.PartitionTable)
		})
	}
}

// TestFixtureDebian12ConvertsToRaw converts a real cloud image (2 GiB virtual,
// 280 MiB of qcow2) as a job with publish.disk_format raw does, verified against
// the fixtures' SHA512SUMS: the result is byte for byte `qemu-img convert -O raw`
// of it, and sparse.
func TestFixtureDebian12ConvertsToRaw(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: converts and hashes a 2 GiB disk")
	}
	dir := fixturesDir(t, "debian12.qcow2", "SHA512SUMS")
	needQemuImg(t)
	want := filepath.Join(t.TempDir(), "debian12.raw")
	run(t, "qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", filepath.Join(dir, "debian12.qcow2"), want)
	_, want512 := fileDigests(t, want)
	os.Remove(want)
	s := newStore(t, dir)
	img, err := s.Fetch(context.Background(), Source{URL: "debian12.qcow2", Format: FormatQCOW2, SumsURL: "SHA512SUMS", ConvertTo: FormatRaw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	_, vendor512 := fileDigests(t, filepath.Join(dir, "debian12.qcow2"))
	if img.SHA512 != want512 || img.Format != FormatRaw || img.Vendor == nil || img.Vendor.SHA512 != vendor512 {
		t.Fatalf("converted %+v vendor %+v, want sha512 %s from %s", img, img.Vendor, want512, vendor512)
	}
	if a := allocated(t, img.Path); a > img.Size/2 {
		t.Fatalf("converted raw occupies %d of its %d bytes: not sparse", a, img.Size)
	}
	assertNoTemp(t, s)
}
