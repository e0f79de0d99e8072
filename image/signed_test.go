package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"

	"github.com/imagevet/imagevet/keyring"
)

func newSigner(t *testing.T, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// loadKeyring writes es's public keys to dir and loads them as an operator would.
func loadKeyring(t *testing.T, dir string, es ...*openpgp.Entity) *keyring.Keyring {
	t.Helper()
	var buf bytes.Buffer
	for _, e := range es {
		if err := e.Serialize(&buf); err != nil {
			t.Fatal(err)
		}
	}
	k, err := keyring.Load(writeFile(t, dir, "keyring.gpg", buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func detachSign(t *testing.T, e *openpgp.Entity, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&buf, e, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func clearSign(t *testing.T, e *openpgp.Entity, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := clearsign.Encode(&buf, e.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newSigningStore(t *testing.T, root string, k *keyring.Keyring) *Store {
	t.Helper()
	s, err := NewStore(StoreConfig{Dir: filepath.Join(t.TempDir(), "cache"), FileRoots: []string{root}, Keyring: k,
		Retries: -1, StallTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A worker with a keyring takes digests only from checksum lists signed by a key
// in it: detached or clear-signed. Anything else fails the fetch, as a bad job
// (no signature where one is required, or a signature the worker cannot check)
// or as the image's fault (a signature that does not verify).
func TestFetchSignedSums(t *testing.T) {
	root := t.TempDir()
	ti := newTestImage()
	writeFile(t, root, "img.qcow2", ti.data)
	alice, stranger := newSigner(t, "alice"), newSigner(t, "stranger")
	sums := []byte(fmt.Sprintf("%s  other.qcow2\n%s  img.qcow2\n", strings.Repeat("1", 64), ti.sha256))
	tampered := bytes.Replace(sums, []byte("1111"), []byte("2222"), 1)
	writeFile(t, root, "SHA256SUMS", sums)
	writeFile(t, root, "SHA256SUMS.gpg", detachSign(t, alice, sums))
	writeFile(t, root, "SHA256SUMS.stranger.gpg", detachSign(t, stranger, sums))
	writeFile(t, root, "SHA256SUMS.tampered", tampered)
	writeFile(t, root, "SHA256SUMS.garbage.gpg", []byte("-----BEGIN PGP SIGNATURE-----\n\nnot base64\n-----END PGP SIGNATURE-----\n"))
	writeFile(t, root, "CLEAR", clearSign(t, alice, sums))
	writeFile(t, root, "CLEAR.tampered", bytes.Replace(clearSign(t, alice, sums), []byte("1111"), []byte("2222"), 1))
	k := loadKeyring(t, t.TempDir(), alice)
	s := newSigningStore(t, root, k)
	ctx := context.Background()
	src := func(sums, sig string) Source {
		return Source{URL: "img.qcow2", Format: FormatQCOW2, SumsURL: sums, SumsSignature: sig}
	}

	for _, ok := range []Source{src("SHA256SUMS", "SHA256SUMS.gpg"), src("CLEAR", "")} {
		if img, err := s.Fetch(ctx, ok, nil); err != nil || img.SHA256 != ti.sha256 {
			t.Fatalf("%+v: %+v %v", ok, img, err)
		}
	}
	for _, c := range []struct {
		name  string
		src   Source
		field string // a bad job naming this field, or
		kind  error  // an image fault of this kind
		msg   string
	}{
		{"unsigned", src("SHA256SUMS", ""), FieldSumsSig, nil, "image.sums_signature: required: this worker accepts checksum lists only signed by a key in "},
		{"tampered", src("SHA256SUMS.tampered", "SHA256SUMS.gpg"), "", keyring.ErrBadSignature, "checksum list SHA256SUMS.tampered: signature: bad signature"},
		{"stranger", src("SHA256SUMS", "SHA256SUMS.stranger.gpg"), "", keyring.ErrUnknownKey, "checksum list SHA256SUMS: signature by key "},
		{"garbage signature", src("SHA256SUMS", "SHA256SUMS.garbage.gpg"), "", keyring.ErrMalformed, "checksum list SHA256SUMS: signature: malformed OpenPGP data"},
		{"clear-signed tampered", src("CLEAR.tampered", ""), "", keyring.ErrBadSignature, "checksum list CLEAR.tampered: signature: bad signature"},
		{"missing signature file", src("SHA256SUMS", "nope.gpg"), FieldSumsSig, nil, `image.sums_signature: "nope.gpg": no such file`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Fetch(ctx, c.src, nil)
			var se *SourceError
			var sig *SignatureError
			switch {
			case c.field != "" && (!errors.As(err, &se) || se.Field != c.field):
				t.Fatalf("err = %v, want a bad job naming %s", err, c.field)
			case c.kind != nil && (!errors.As(err, &sig) || !errors.Is(err, c.kind)):
				t.Fatalf("err = %v, want a signature error of kind %v", err, c.kind)
			}
			if !strings.HasPrefix(err.Error(), c.msg) {
				t.Errorf("err = %q, want prefix %q", err, c.msg)
			}
		})
	}
	assertNoTemp(t, s)
}

// Without a keyring a worker refuses what it cannot authenticate: a signature it
// cannot check, and a checksum list over plain http. An https or local list, a
// clear-signed one (read as text), and a pinned checksum still work.
func TestFetchSumsWithoutKeyring(t *testing.T) {
	root := t.TempDir()
	ti := newTestImage()
	writeFile(t, root, "img.qcow2", ti.data)
	sums := []byte(ti.sha256 + "  img.qcow2\n")
	writeFile(t, root, "SUMS", sums)
	writeFile(t, root, "CLEAR", clearSign(t, newSigner(t, "alice"), sums))
	srv := newImageServer(t, ti.data, nil)
	s := newSigningStore(t, root, nil)
	ctx := context.Background()

	_, err := s.Fetch(ctx, Source{URL: "img.qcow2", Format: FormatQCOW2, SumsURL: "SUMS", SumsSignature: "SUMS.gpg"}, nil)
	var se *SourceError
	if !errors.As(err, &se) || se.Field != FieldSumsSig || !strings.Contains(err.Error(), "no OpenPGP keyring") {
		t.Errorf("signature without keyring: %v", err)
	}
	_, err = s.Fetch(ctx, Source{URL: srv.URL + "/img.qcow2", Format: FormatQCOW2, SumsURL: srv.URL + "/SUMS"}, nil)
	if !errors.As(err, &se) || se.Field != FieldSumsURL || !strings.Contains(err.Error(), "plain http proves nothing") {
		t.Errorf("http sums: %v", err)
	}
	if n := srv.requests.Load(); n != 0 {
		t.Errorf("refused job still made %d requests", n)
	}
	if _, err := s.Fetch(ctx, Source{URL: "img.qcow2", Format: FormatQCOW2, SumsURL: "CLEAR"}, nil); err != nil {
		t.Errorf("clear-signed list read as text: %v", err)
	}
	if _, err := s.Fetch(ctx, Source{URL: srv.URL + "/img.qcow2", Format: FormatQCOW2, SumsURL: "file://" + filepath.Join(root, "SUMS")}, nil); err != nil {
		t.Errorf("http image, local list: %v", err)
	}
}

// Checksum lists as vendors (and attackers) write them: a broken BSD line is an
// error naming the line, two different digests for the image are an error, a
// digest we cannot use is named; GNU lines that are not digests are prose.
func TestLookupSums(t *testing.T) {
	h64, h128 := strings.Repeat("a", 64), strings.Repeat("b", 128)
	for _, c := range []struct {
		name, data string
		want       string // digest, or "" when not found
		err        string
	}{
		{"gnu", h64 + "  img.qcow2\n", "sha256:" + h64, ""},
		{"crlf", "garbage line\r\n" + h128 + " *img.qcow2\r\n", "sha512:" + h128, ""},
		{"bsd", "SHA512 (img.qcow2) = " + h128 + "\n", "sha512:" + h128, ""},
		{"dot slash", h64 + "  ./img.qcow2\n", "sha256:" + h64, ""},
		{"malformed others ignored", "%%%\n" + "zz  other\n" + h64 + "  img.qcow2\n", "sha256:" + h64, ""},
		{"strongest of two algorithms", h64 + "  img.qcow2\n" + h128 + "  img.qcow2\n", "sha512:" + h128, ""},
		{"missing", h64 + "  other.qcow2\n", "", ""},
		{"two entries", h64 + "  img.qcow2\n" + strings.Repeat("c", 64) + "  img.qcow2\n", "", `two different sha256 digests for "img.qcow2"`},
		{"same entry twice", h64 + "  img.qcow2\n" + h64 + "  img.qcow2\n", "sha256:" + h64, ""},
		{"wrong length", strings.Repeat("a", 50) + "  img.qcow2\n", "", `line 1: "` + strings.Repeat("a", 50) + `  img.qcow2" is not a md5, sha1, sha256 or sha512 digest`},
		{"gnu not hex", h64 + "  other.qcow2\n" + strings.Repeat("g", 64) + "  img.qcow2\n", "", `line 2: "` + strings.Repeat("g", 64) + `  img.qcow2" is not a md5, sha1, sha256 or sha512 digest`},
		{"sha1 only", strings.Repeat("a", 40) + "  img.qcow2\n", "", `entry for "img.qcow2": checksum algorithm "sha1": want sha256 or sha512`},
		{"bsd length disagrees", "SHA256 (img.qcow2) = " + h128 + "\n", "", `line 1: "SHA256 (img.qcow2) = ` + h128 + `" is not a md5, sha1, sha256 or sha512 digest`},
		{"bsd not hex", "SHA256 (img.qcow2) = " + strings.Repeat("g", 64) + "\n", "", `line 1: "SHA256 (img.qcow2) = ` + strings.Repeat("g", 64) + `" is not a md5, sha1, sha256 or sha512 digest`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, ok, err := lookupSums([]byte(c.data), "img.qcow2")
			switch {
			case c.err != "":
				if err == nil || err.Error() != c.err {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
			case err != nil:
				t.Fatal(err)
			case c.want == "" && ok, c.want != "" && (!ok || d.String() != c.want):
				t.Fatalf("got %v %v, want %q", d, ok, c.want)
			}
		})
	}
}
