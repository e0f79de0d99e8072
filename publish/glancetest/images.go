package glancetest

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// SHA512Sum runs coreutils' sha512sum on a file: the digest a user would compare.
func SHA512Sum(t testing.TB, path string) string {
	t.Helper()
	out, err := exec.Command("sha512sum", path).Output()
	if err != nil {
		t.Fatalf("sha512sum %s: %v", path, err)
	}
	return strings.Fields(string(out))[0]
}

// RawOfVendor makes dir/name.qcow2, a vendor image (a partition table and 2 MiB of
// data, which the image store needs to accept its raw conversion) of the given
// virtual size, and returns the facts a worker records when it converts it to raw
// for publish.disk_format raw and boots the raw: the raw's digests (of `qemu-img
// convert -O raw`, by sha512sum) and, as image_facts.vendor, the qcow2's.
func RawOfVendor(t testing.TB, dir, name, size string) *jobs.ImageFacts {
	t.Helper()
	q := filepath.Join(dir, name+".qcow2")
	disk := filepath.Join(t.TempDir(), name+".disk")
	raw := filepath.Join(t.TempDir(), name+".raw")
	label := exec.Command("sfdisk", "-q", disk)
	label.Stdin = strings.NewReader("label: dos\nstart=2048, type=83, bootable\n")
	for _, cmd := range []*exec.Cmd{
		exec.Command("qemu-img", "create", "-q", "-f", "raw", disk, size),
		label,
		exec.Command("qemu-io", "-f", "raw", "-c", "write -P 0x"+hex.EncodeToString([]byte(name[len(name)-1:]))+" 1M 2M", disk),
		exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", disk, q),
		exec.Command("qemu-img", "convert", "-O", "raw", q, raw),
	} {
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", cmd.Args, err, out)
		}
	}
	digest := func(path string) (int64, string, string) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			t.Fatal(err)
		}
		return n, hex.EncodeToString(h.Sum(nil)), SHA512Sum(t, path)
	}
	qn, q256, q512 := digest(q)
	rn, r256, r512 := digest(raw)
	return &jobs.ImageFacts{Size: rn, VirtualSize: rn, Format: jobs.FormatRaw, SHA256: r256, OSHashAlgo: "sha512", OSHashValue: r512,
		Source: q, VendorDigest: "sha512:" + q512, Vendor: &jobs.VendorFile{Format: jobs.FormatQCOW2, Size: qn, SHA256: q256, SHA512: q512}}
}
