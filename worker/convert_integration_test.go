package worker

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// digestsOf returns a file's size, sha256 and sha512.
func digestsOf(t *testing.T, path string) (int64, string, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h256, h512 := sha256.Sum256(data), sha512.Sum512(data)
	return int64(len(data)), hex.EncodeToString(h256[:]), hex.EncodeToString(h512[:])
}

// publish.disk_format raw on the tiny qcow2: the worker boots the raw conversion
// and the pass result describes it (its sha512 is that of `qemu-img convert -O raw`
// of the vendor file, the os_hash_value Glance will compute), with the vendor's
// qcow2 beside it (its sha512 is the source_hash).
func TestIntegrationTinyRawPasses(t *testing.T) {
	env := newParallelIntegrationEnv(t)
	vendor := filepath.Join(env.fixtures, "tiny.qcow2")
	raw := filepath.Join(t.TempDir(), "tiny.raw")
	if out, err := exec.Command("qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", vendor, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	rawSize, raw256, raw512 := digestsOf(t, raw)
	vendorSize, vendor256, vendor512 := digestsOf(t, vendor)

	res, _ := env.runSample(t, "tiny-raw.json")
	f := res.ImageFacts
	if f == nil || f.Format != jobs.FormatRaw || f.OSHashAlgo != "sha512" || f.OSHashValue != raw512 || f.SHA256 != raw256 || f.Size != rawSize || f.VirtualSize != rawSize {
		t.Fatalf("image facts %+v, want the raw conversion (%d bytes, sha512 %s)", f, rawSize, raw512)
	}
	want := jobs.VendorFile{Format: jobs.FormatQCOW2, Size: vendorSize, SHA256: vendor256, SHA512: vendor512}
	if f.Vendor == nil || *f.Vendor != want || f.SourceHash() != vendor512 {
		t.Fatalf("vendor file %+v, want %+v", f.Vendor, want)
	}
	for _, c := range res.Checks {
		if c.Status != jobs.StatusPass && !skippedAsExpected(c) {
			t.Errorf("check %s: %s %q", c.Name, c.Status, c.Reason)
		}
	}
	// The conversion stays in the cache as a raw entry of its own: what a
	// publisher sharing the cache uploads.
	if _, err := os.Stat(filepath.Join(env.cfg.StateDir, "cache", "sha256", raw256+".raw")); err != nil {
		t.Errorf("converted image not in the cache: %v", err)
	}
}
