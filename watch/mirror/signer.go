package mirror

import (
	"bytes"
	"fmt"
	"os"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Signer is an OpenPGP signing key the mirror signs vendor documents with, made
// fresh for each test (Ed25519, so making one is fast).
type Signer struct {
	entity *openpgp.Entity
}

// NewSigner makes a new signing key for the named vendor.
func NewSigner(name string) (*Signer, error) {
	e, err := openpgp.NewEntity(name, "imagevet test mirror", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &Signer{entity: e}, nil
}

// WriteKeyring writes the public key, armored, to path: the keyring a catalog names.
func (s *Signer) WriteKeyring(path string) error {
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		return err
	}
	if err := s.entity.Serialize(w); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// Detached returns an armored detached signature over data (Debian's SHA512SUMS.sign).
func (s *Signer) Detached(data []byte) []byte {
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, s.entity, bytes.NewReader(data), nil); err != nil {
		panic(fmt.Sprintf("mirror: sign: %v", err)) // a fresh in-memory key always signs
	}
	return b.Bytes()
}

// ClearSigned returns data as a clear-signed document (Fedora's CHECKSUM, Ubuntu's
// .sjson, Flatcar's DIGESTS.asc).
func (s *Signer) ClearSigned(data []byte) []byte {
	var b bytes.Buffer
	w, err := clearsign.Encode(&b, s.entity.PrivateKey, nil)
	if err == nil {
		_, err = w.Write(data)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		panic(fmt.Sprintf("mirror: clear-sign: %v", err))
	}
	return b.Bytes()
}
