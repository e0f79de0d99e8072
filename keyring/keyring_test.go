package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

const sums = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  debian-12-genericcloud-amd64.qcow2\n" +
	"fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210  debian-12-generic-amd64.qcow2\n"

// newSigner makes a fresh signing key; lifetime 0 means it never expires.
func newSigner(t *testing.T, name string, created time.Time, lifetime uint32) *openpgp.Entity {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return created }, KeyLifetimeSecs: lifetime}
	e, err := openpgp.NewEntity(name, "", strings.ToLower(name)+"@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// writeKeyring writes the public keys of es to a file, armored or binary.
func writeKeyring(t *testing.T, armored bool, es ...*openpgp.Entity) string {
	t.Helper()
	var bin bytes.Buffer
	for _, e := range es {
		if err := e.Serialize(&bin); err != nil {
			t.Fatal(err)
		}
	}
	out := bin.Bytes()
	if armored {
		var buf bytes.Buffer
		a, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Write(out); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		out = buf.Bytes()
	}
	p := filepath.Join(t.TempDir(), "keyring.gpg")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func detach(t *testing.T, e *openpgp.Entity, data string, armored bool) []byte {
	t.Helper()
	return detachAt(t, e, data, armored, time.Now())
}

// detachAt signs data as of time at (for keys that have expired since).
func detachAt(t *testing.T, e *openpgp.Entity, data string, armored bool, at time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	cfg := &packet.Config{Time: func() time.Time { return at }}
	if armored {
		err = openpgp.ArmoredDetachSign(&buf, e, strings.NewReader(data), cfg)
	} else {
		err = openpgp.DetachSign(&buf, e, strings.NewReader(data), cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func clearSign(t *testing.T, e *openpgp.Entity, data string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := clearsign.Encode(&buf, e.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func load(t *testing.T, path string) *Keyring {
	t.Helper()
	k, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fingerprint(e *openpgp.Entity) string { return fmt.Sprintf("%X", e.PrimaryKey.Fingerprint) }

func TestVerifyDetachedGood(t *testing.T) {
	alice := newSigner(t, "Alice", time.Now(), 0)
	bob := newSigner(t, "Bob", time.Now(), 0)
	for _, keyArmored := range []bool{true, false} {
		for _, sigArmored := range []bool{true, false} {
			k := load(t, writeKeyring(t, keyArmored, bob, alice))
			if k.Len() != 2 {
				t.Fatalf("keyring has %d keys, want 2", k.Len())
			}
			signer, err := k.VerifyDetached([]byte(sums), detach(t, alice, sums, sigArmored))
			if err != nil {
				t.Fatalf("keyring armored=%v sig armored=%v: %v", keyArmored, sigArmored, err)
			}
			if want := "Alice <alice@example.org> " + fingerprint(alice); signer != want {
				t.Errorf("signer %q, want %q", signer, want)
			}
		}
	}
}

// A vendor signature file can carry one signature per release key; the one
// made by a key we hold decides.
func TestVerifyDetachedSeveralSignatures(t *testing.T) {
	alice := newSigner(t, "Alice", time.Now(), 0)
	stranger := newSigner(t, "Stranger", time.Now(), 0)
	k := load(t, writeKeyring(t, false, alice))
	sig := append(detach(t, stranger, sums, false), detach(t, alice, sums, false)...)
	if _, err := k.VerifyDetached([]byte(sums), sig); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDetachedBad(t *testing.T) {
	alice := newSigner(t, "Alice", time.Now(), 0)
	stranger := newSigner(t, "Stranger", time.Now(), 0)
	keyPath := writeKeyring(t, true, alice)
	k := load(t, keyPath)
	tampered := strings.Replace(sums, "0123", "1123", 1)
	strangerID := strings.ToUpper(fingerprint(stranger)[24:])

	expired := newSigner(t, "Expired", time.Now().Add(-48*time.Hour), 3600)
	kExpired := load(t, writeKeyring(t, false, expired))

	for _, c := range []struct {
		name    string
		k       *Keyring
		data    string
		sig     []byte
		kind    error
		message string
	}{
		{"tampered data", k, tampered, detach(t, alice, sums, true), ErrBadSignature, "signature: bad signature: "},
		{"tampered binary", k, tampered, detach(t, alice, sums, false), ErrBadSignature, "signature: bad signature: "},
		{"unknown signer", k, sums, detach(t, stranger, sums, true), ErrUnknownKey, "signature by key " + strangerID + ": signed by a key not in the keyring " + keyPath},
		{"expired key", kExpired, sums, detachAt(t, expired, sums, false, time.Now().Add(-47*time.Hour)), ErrBadSignature, "signature: bad signature: openpgp: key expired"},
		{"empty signature", k, sums, nil, ErrMalformed, "signature: malformed OpenPGP data: no signature packet"},
		{"garbage signature", k, sums, []byte("this is not a signature\n"), ErrMalformed, "signature: malformed OpenPGP data: "},
		{"truncated armor", k, sums, detach(t, alice, sums, true)[:80], ErrMalformed, "signature: malformed OpenPGP data: "},
		{"key instead of signature", k, sums, mustRead(t, keyPath), ErrMalformed, `signature: malformed OpenPGP data: armor block is "PGP PUBLIC KEY BLOCK", not "PGP SIGNATURE"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			signer, err := c.k.VerifyDetached([]byte(c.data), c.sig)
			if !errors.Is(err, c.kind) {
				t.Fatalf("err = %v (signer %q), want %v", err, signer, c.kind)
			}
			for _, other := range []error{ErrMalformed, ErrUnknownKey, ErrBadSignature} {
				if other != c.kind && errors.Is(err, other) {
					t.Errorf("err %v is also %v", err, other)
				}
			}
			if !strings.HasPrefix(err.Error(), c.message) {
				t.Errorf("err = %q, want prefix %q", err, c.message)
			}
			if signer != "" {
				t.Errorf("signer %q on failure", signer)
			}
		})
	}
}

func TestVerifyClearSigned(t *testing.T) {
	alice := newSigner(t, "Alice", time.Now(), 0)
	stranger := newSigner(t, "Stranger", time.Now(), 0)
	k := load(t, writeKeyring(t, false, alice))
	// A line starting with "-" is dash-escaped in the document and must come
	// back as written.
	text := sums + "- not a separator\n"
	doc := clearSign(t, alice, text)

	body, signer, err := k.VerifyClearSigned(doc)
	if err != nil {
		t.Fatal(err)
	}
	if want := text; string(body) != want {
		t.Errorf("body %q, want %q", body, want)
	}
	if !strings.HasPrefix(signer, "Alice <alice@example.org> ") {
		t.Errorf("signer %q", signer)
	}
	// CRLF line ends (a file that went through a Windows tool) verify too.
	if body, _, err := k.VerifyClearSigned(bytes.ReplaceAll(doc, []byte("\n"), []byte("\r\n"))); err != nil || string(body) != text {
		t.Errorf("CRLF document: body %q err %v", body, err)
	}
	// Text outside the signed block is not returned.
	if body, _, err := k.VerifyClearSigned(append([]byte("evil  injected.qcow2\n"), doc...)); err != nil || bytes.Contains(body, []byte("evil")) {
		t.Errorf("prefixed document: body %q err %v", body, err)
	}

	tampered := bytes.Replace(doc, []byte("0123"), []byte("1123"), 1)
	if _, _, err := k.VerifyClearSigned(tampered); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered: %v, want bad signature", err)
	}
	if _, _, err := k.VerifyClearSigned(clearSign(t, stranger, text)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("stranger: %v, want unknown key", err)
	}
	if _, _, err := k.VerifyClearSigned([]byte(sums)); !errors.Is(err, ErrMalformed) ||
		err.Error() != `clear-signed document: malformed OpenPGP data: no complete "-----BEGIN PGP SIGNED MESSAGE-----" block` {
		t.Errorf("unsigned: %v", err)
	}
	cut := doc[:bytes.Index(doc, []byte("-----END PGP SIGNATURE-----"))]
	if _, _, err := k.VerifyClearSigned(cut); !errors.Is(err, ErrMalformed) {
		t.Errorf("cut: %v, want malformed", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.gpg")
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing: %v", err)
	}
	for name, data := range map[string][]byte{
		"empty.gpg":     nil,
		"text.asc":      []byte("hello\n"),
		"armor.asc":     []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64!\n-----END PGP PUBLIC KEY BLOCK-----\n"),
		"sig.gpg":       detach(t, newSigner(t, "Alice", time.Now(), 0), sums, false),
		"truncated.gpg": mustRead(t, writeKeyring(t, false, newSigner(t, "Alice", time.Now(), 0)))[:40],
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), "keyring "+p+": malformed OpenPGP data") {
			t.Errorf("%s: %v", name, err)
		}
	}
	big := filepath.Join(dir, "big.gpg")
	if err := os.WriteFile(big, make([]byte, MaxKeyringSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
