// Package keyring verifies OpenPGP signatures on checksum lists and vendor
// feeds against a keyring the operator names.
//
// A keyring is a file of public keys, armored ("-----BEGIN PGP PUBLIC KEY
// BLOCK-----") or binary (what `gpg --export` writes, a .gpg keyring).
// Signatures are detached (.sign, .sig, .gpg, .asc; armored or binary) or
// inline in a clear-signed document (InRelease-style, "-----BEGIN PGP SIGNED
// MESSAGE-----"). Every failure is one of three kinds, told apart with
// errors.Is: ErrMalformed (the keyring or signature cannot be parsed),
// ErrUnknownKey (no key in the keyring made the signature) and
// ErrBadSignature (a known key's signature does not match the data, or the
// key is expired or revoked).
package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// MaxKeyringSize bounds how much of a keyring file Load reads: real vendor
// keyrings are a few KiB to a few hundred KiB.
const MaxKeyringSize = 16 << 20

// The three kinds of failure; every error from this package wraps exactly one.
var (
	// ErrMalformed: the keyring, the signature or the clear-signed document
	// is not valid OpenPGP data.
	ErrMalformed = errors.New("malformed OpenPGP data")
	// ErrUnknownKey: the signature was made by no key in the keyring.
	ErrUnknownKey = errors.New("signed by a key not in the keyring")
	// ErrBadSignature: a key in the keyring made the signature, but it does
	// not match the data, or the key or signature is expired or revoked.
	ErrBadSignature = errors.New("bad signature")
)

// Keyring is a set of public keys loaded from one file. It is safe for
// concurrent use: verification only reads it.
type Keyring struct {
	name     string
	entities openpgp.EntityList
}

// Load reads the keyring at path, armored or binary. A missing or unreadable
// file gives the *fs.PathError; a file that is not OpenPGP or holds
// no public key gives ErrMalformed naming the path.
func Load(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyringSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	if len(data) > MaxKeyringSize {
		return nil, fmt.Errorf("keyring %s: %w: larger than %d bytes", path, ErrMalformed, MaxKeyringSize)
	}
	return Parse(path, data)
}

// Parse reads a keyring from data, armored or binary; name is what error
// messages call it (a path or URL).
func Parse(name string, data []byte) (*Keyring, error) {
	var (
		el  openpgp.EntityList
		err error
	)
	if isArmored(data) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w: %w", name, ErrMalformed, err)
	}
	if len(el) == 0 {
		return nil, fmt.Errorf("keyring %s: %w: no public key", name, ErrMalformed)
	}
	return &Keyring{name: name, entities: el}, nil
}

// Name is the path or name the keyring was loaded from.
func (k *Keyring) Name() string { return k.name }

// Len is the number of keys (primary keys with their subkeys) in the keyring.
func (k *Keyring) Len() int { return len(k.entities) }

// VerifyDetached checks a detached signature (armored or binary; it may hold
// several signature packets, as multi-key vendor signatures do) over data.
// It returns who signed: the signing key's primary user id and fingerprint.
func (k *Keyring) VerifyDetached(data, sig []byte) (signer string, err error) {
	raw := sig
	if isArmored(sig) {
		block, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return "", fmt.Errorf("signature: %w: %w", ErrMalformed, err)
		}
		if block.Type != openpgp.SignatureType {
			return "", fmt.Errorf("signature: %w: armor block is %q, not %q", ErrMalformed, block.Type, openpgp.SignatureType)
		}
		if raw, err = io.ReadAll(block.Body); err != nil {
			return "", fmt.Errorf("signature: %w: %w", ErrMalformed, err)
		}
	}
	return k.verify(data, raw)
}

// VerifyClearSigned checks a clear-signed document and returns its signed
// text (dash-unescaped, with "\n" line ends) and who signed it. Only the returned body is authenticated: text around the signed block
// is dropped.
func (k *Keyring) VerifyClearSigned(doc []byte) (body []byte, signer string, err error) {
	block, _ := clearsign.Decode(doc)
	if block == nil {
		return nil, "", fmt.Errorf("clear-signed document: %w: no complete \"-----BEGIN PGP SIGNED MESSAGE-----\" block", ErrMalformed)
	}
	raw, err := io.ReadAll(block.ArmoredSignature.Body)
	if err != nil {
		return nil, "", fmt.Errorf("clear-signed document: %w: %w", ErrMalformed, err)
	}
	if signer, err = k.verify(block.Bytes, raw); err != nil {
		return nil, "", err
	}
	return block.Plaintext, signer, nil
}

// verify checks the binary signature packets raw over data and maps the
// library's errors onto the package's three kinds.
func (k *Keyring) verify(data, raw []byte) (string, error) {
	_, entity, err := openpgp.VerifyDetachedSignature(k.entities, bytes.NewReader(data), bytes.NewReader(raw), nil)
	if err == nil {
		return describe(entity), nil
	}
	var (
		sigErr pgperrors.SignatureError
		keyErr pgperrors.KeyInvalidError
	)
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		ids := issuers(raw)
		if len(ids) == 0 {
			return "", fmt.Errorf("signature: %w: no signature packet", ErrMalformed)
		}
		return "", fmt.Errorf("signature by key %s: %w %s", strings.Join(ids, ", "), ErrUnknownKey, k.name)
	case errors.As(err, &sigErr), errors.As(err, &keyErr),
		errors.Is(err, pgperrors.ErrKeyExpired), errors.Is(err, pgperrors.ErrSignatureExpired),
		errors.Is(err, pgperrors.ErrKeyRevoked), errors.Is(err, pgperrors.ErrSignatureOlderThanKey):
		return "", fmt.Errorf("signature: %w: %w", ErrBadSignature, err)
	default:
		// Structural, unsupported and weak-algorithm errors: nothing we can
		// check, so the signature proves nothing.
		return "", fmt.Errorf("signature: %w: %w", ErrMalformed, err)
	}
}

// issuers lists the issuer key ids of the signature packets in raw, in hex.
func issuers(raw []byte) []string {
	var ids []string
	r := packet.NewReader(bytes.NewReader(raw))
	for {
		p, err := r.Next()
		if err != nil {
			return ids
		}
		if s, ok := p.(*packet.Signature); ok && s.IssuerKeyId != nil {
			ids = append(ids, fmt.Sprintf("%016X", *s.IssuerKeyId))
		}
	}
}

// describe names a signing entity: its primary user id ("Name <email>")
// and fingerprint.
func describe(e *openpgp.Entity) string {
	fp := fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
	if id := e.PrimaryIdentity(); id != nil && id.Name != "" {
		return id.Name + " " + fp
	}
	return fp
}

// isArmored reports whether data starts, after blank space, with an armor
// header line.
func isArmored(data []byte) bool {
	return strings.HasPrefix(string(bytes.TrimLeft(data[:min(len(data), 256)], " \t\r\n")), "-----BEGIN PGP ")
}
