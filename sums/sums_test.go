package sums

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestParseVendorLists: GNU and BSD lines, size comments, binary-mode stars and
// clear-signed armor in one list, as vendors publish them.
func TestParseVendorLists(t *testing.T) {
	h256 := strings.Repeat("a", 64)
	h512 := strings.Repeat("b", 128)
	list := "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" +
		"# Fedora-Cloud-Base-Generic-43-1.6.x86_64.qcow2: 123456 bytes\n" +
		"SHA256 (Fedora-Cloud-Base-Generic-43-1.6.x86_64.qcow2) = " + strings.ToUpper(h256) + "\n" +
		h512 + "  ./debian.qcow2\n" +
		h256 + " *debian.qcow2\n" +
		strings.Repeat("c", 32) + "  cirros.img\n" +
		"-----BEGIN PGP SIGNATURE-----\n\nwnUEARYKAB0WIQ\n-----END PGP SIGNATURE-----\n"
	entries, err := Parse([]byte(list))
	if err != nil || len(entries) != 4 {
		t.Fatalf("%+v %v", entries, err)
	}
	if e := entries[0]; e.Algo != "sha256" || e.Hex != h256 || e.Size != 123456 || e.Name != "Fedora-Cloud-Base-Generic-43-1.6.x86_64.qcow2" {
		t.Errorf("BSD entry %+v", e)
	}
	if e, ok, _ := Lookup([]byte(list), "debian.qcow2"); !ok || e.Digest() != "sha512:"+h512 {
		t.Errorf("strongest digest: %+v", e)
	}
	if e, ok, _ := Lookup([]byte(list), "cirros.img"); !ok || e.Algo != "md5" {
		t.Errorf("md5 entry: %+v", e)
	}
	if _, ok, _ := Lookup([]byte(list), "missing"); ok {
		t.Error("found a missing entry")
	}
	if _, err := Parse([]byte("SHA256 (x) = zz\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad BSD digest: %v", err)
	}
	two := h256 + "  x.qcow2\n" + strings.Repeat("d", 64) + "  x.qcow2\n"
	if _, _, err := Lookup([]byte(two), "x.qcow2"); err == nil || err.Error() != `two different sha256 digests for "x.qcow2"` {
		t.Errorf("two entries for one name: %v", err)
	}
	if _, ok, err := Lookup([]byte(h256+"  x.qcow2\r\n"+h256+" *x.qcow2\r\n"), "x.qcow2"); err != nil || !ok {
		t.Errorf("the same entry twice, CRLF: %v %v", ok, err)
	}
}

// TestMalformedGNULine: a GNU line whose digest is not hex, or is hex of no digest's
// length, is an error naming its line, not a silent skip that later reads as "no
// checksum for FILE". Armor and prose lines are still skipped.
func TestMalformedGNULine(t *testing.T) {
	h512 := strings.Repeat("b", 128)
	notHex := strings.Repeat("b", 127) + "z"
	for _, c := range []struct{ name, list string }{
		{"sha512 with a non-hex digit", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + h512 + "  a.qcow2\n" + notHex + "  debian.qcow2\n"},
		{"binary mode", h512 + " *a.qcow2\n" + notHex + " *debian.qcow2\n"},
		{"base64 digest", h512 + "  a.qcow2\n" + "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ8=  debian.qcow2\n"},
		{"truncated hex", h512 + "  a.qcow2\n" + h512[:100] + "  debian.qcow2\n"},
		{"one space", h512 + "  a.qcow2\n" + notHex + " debian.qcow2\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.list))
			var le *LineError
			if !errors.As(err, &le) || !strings.Contains(le.Text, "debian.qcow2") {
				t.Fatalf("err = %v, want a LineError for the debian.qcow2 line", err)
			}
			n := strings.Count(c.list[:strings.Index(c.list, "debian.qcow2")], "\n") + 1
			if le.Line != n || !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: ", n)) {
				t.Errorf("err = %v, want line %d", err, n)
			}
			if _, _, err := Lookup([]byte(c.list), "debian.qcow2"); !errors.As(err, &le) {
				t.Errorf("Lookup: %v", err)
			}
		})
	}
	prose := "Hash: SHA512\nThese are the checksums  of this release.\nVersion: GnuPG v2\n-----BEGIN PGP SIGNATURE-----\n" + h512 + "  debian.qcow2\n"
	if e, ok, err := Lookup([]byte(prose), "debian.qcow2"); err != nil || !ok || e.Hex != h512 {
		t.Errorf("prose around a good line: %+v %v %v", e, ok, err)
	}
}
