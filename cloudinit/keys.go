package cloudinit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
)

// RSABits is the size of the per-job RSA keys. They live for one job only and exist
// for servers that predate ed25519 (OpenSSH < 6.5), so 2048 bits is both safe enough
// and accepted everywhere, including FIPS-mode hosts.
const RSABits = 2048

// KeyComment is the comment on every public key imagevet hands to a guest.
const KeyComment = "imagevet"

// ErrHostKeyMismatch is matched (errors.Is) by a *HostKeyMismatchError: the guest
// presented a host key other than the ones placed in its seed, which means cloud-init
// did not apply ssh_keys (or something else answered on the forwarded port).
var ErrHostKeyMismatch = errors.New("ssh host key mismatch")

// HostKeyMismatchError reports a host key that Keys.HostKeyCallback refused.
type HostKeyMismatchError struct {
	Hostname string        // as passed to the callback (host:port the client dialled)
	Remote   net.Addr      // may be nil
	Got      ssh.PublicKey // the key the server presented
	Want     []ssh.PublicKey
}

func (e *HostKeyMismatchError) Error() string {
	want := make([]string, len(e.Want))
	for i, k := range e.Want {
		want[i] = k.Type() + " " + ssh.FingerprintSHA256(k)
	}
	got := "<nil>"
	if e.Got != nil {
		got = e.Got.Type() + " " + ssh.FingerprintSHA256(e.Got)
	}
	return fmt.Sprintf("ssh host key mismatch for %s: got %s, want one of [%s]",
		e.Hostname, got, strings.Join(want, ", "))
}

// Is makes errors.Is(err, ErrHostKeyMismatch) true.
func (e *HostKeyMismatchError) Is(target error) bool { return target == ErrHostKeyMismatch }

// Keys are one job's SSH identities: the client keys the worker logs in with and the
// host keys handed to the guest through ssh_keys, so the worker can pin them.
//
// A Keys is immutable after construction and safe for concurrent use.
type Keys struct {
	hostEd25519 ed25519.PrivateKey
	hostRSA     *rsa.PrivateKey

	signers        []ssh.Signer    // ed25519, rsa
	clientPubs     []ssh.PublicKey // ed25519, rsa
	hostPubs       []ssh.PublicKey // ed25519, rsa
	hostEd25519PEM []byte          // OpenSSH PEM of the ed25519 host key
	hostRSAPEM     []byte          // PKCS#1 PEM of the RSA host key (readable by every OpenSSH)
	clientEdPEM    []byte          // OpenSSH PEM of the ed25519 client key
}

// NewKeys generates a fresh set of job keys: ed25519 and RSA client keys, ed25519 and
// RSA host keys.
func NewKeys() (*Keys, error) {
	_, clientEd, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 client key: %w", err)
	}
	_, hostEd, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 host key: %w", err)
	}
	clientRSA, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		return nil, fmt.Errorf("generate rsa client key: %w", err)
	}
	hostRSA, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		return nil, fmt.Errorf("generate rsa host key: %w", err)
	}
	return newKeys(clientEd, clientRSA, hostEd, hostRSA, nil, nil)
}

// ParseKeys builds Keys from PEM-encoded private keys (OpenSSH format for ed25519;
// OpenSSH, PKCS#1 or PKCS#8 for RSA). Rendering is then byte-for-byte reproducible,
// which golden tests and re-running a recorded job rely on.
func ParseKeys(clientEd25519, clientRSA, hostEd25519, hostRSA []byte) (*Keys, error) {
	cEd, err := parseEd25519(clientEd25519)
	if err != nil {
		return nil, fmt.Errorf("client ed25519 key: %w", err)
	}
	cRSA, err := parseRSA(clientRSA)
	if err != nil {
		return nil, fmt.Errorf("client rsa key: %w", err)
	}
	hEd, err := parseEd25519(hostEd25519)
	if err != nil {
		return nil, fmt.Errorf("host ed25519 key: %w", err)
	}
	hRSA, err := parseRSA(hostRSA)
	if err != nil {
		return nil, fmt.Errorf("host rsa key: %w", err)
	}
	return newKeys(cEd, cRSA, hEd, hRSA, normalizePEM(clientEd25519), normalizePEM(hostEd25519))
}

func normalizePEM(b []byte) []byte {
	block, _ := pem.Decode(b)
	return pem.EncodeToMemory(block)
}

func parseEd25519(b []byte) (ed25519.PrivateKey, error) {
	k, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *ed25519.PrivateKey:
		return *k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("want an ed25519 key, got %T", k)
}

func parseRSA(b []byte) (*rsa.PrivateKey, error) {
	k, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("want an rsa key, got %T", k)
	}
	return rk, nil
}

// newKeys derives everything else from the four private keys. clientEdPEM and
// hostEdPEM are the OpenSSH encodings to reuse (nil: marshal afresh; OpenSSH's format
// carries a random check word, so re-marshalling is not reproducible).
func newKeys(clientEd ed25519.PrivateKey, clientRSA *rsa.PrivateKey, hostEd ed25519.PrivateKey, hostRSA *rsa.PrivateKey, clientEdPEM, hostEdPEM []byte) (*Keys, error) {
	k := &Keys{hostEd25519: hostEd, hostRSA: hostRSA}
	for _, priv := range []any{clientEd, clientRSA} {
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			return nil, fmt.Errorf("client signer: %w", err)
		}
		k.signers = append(k.signers, s)
		k.clientPubs = append(k.clientPubs, s.PublicKey())
	}
	for _, pub := range []any{hostEd.Public(), &hostRSA.PublicKey} {
		p, err := ssh.NewPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("host public key: %w", err)
		}
		k.hostPubs = append(k.hostPubs, p)
	}
	var err error
	if hostEdPEM == nil {
		if hostEdPEM, err = marshalOpenSSH(hostEd); err != nil {
			return nil, fmt.Errorf("host ed25519 key: %w", err)
		}
	}
	if clientEdPEM == nil {
		if clientEdPEM, err = marshalOpenSSH(clientEd); err != nil {
			return nil, fmt.Errorf("client ed25519 key: %w", err)
		}
	}
	k.hostEd25519PEM = hostEdPEM
	k.clientEdPEM = clientEdPEM
	k.hostRSAPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(hostRSA)})
	return k, nil
}

func marshalOpenSSH(key ed25519.PrivateKey) ([]byte, error) {
	block, err := ssh.MarshalPrivateKey(key, KeyComment)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(block), nil
}

// Signers returns the client signers for ssh.PublicKeys, ed25519 first, then RSA for
// servers that know no ed25519.
func (k *Keys) Signers() []ssh.Signer {
	return append([]ssh.Signer(nil), k.signers...)
}

// AuthorizedKeys returns the client public keys as authorized_keys lines (no newline),
// ed25519 first, each with the comment KeyComment.
func (k *Keys) AuthorizedKeys() []string {
	out := make([]string, len(k.clientPubs))
	for i, p := range k.clientPubs {
		out[i] = authorizedLine(p)
	}
	return out
}

func authorizedLine(p ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(p)), "\n") + " " + KeyComment
}

// HostKeys returns the host public keys the guest is given, ed25519 first; these are
// the only keys HostKeyCallback accepts.
func (k *Keys) HostKeys() []ssh.PublicKey {
	return append([]ssh.PublicKey(nil), k.hostPubs...)
}

// HostKeyAlgorithms is the ssh.ClientConfig.HostKeyAlgorithms that matches HostKeys:
// ed25519 first, then the RSA signature algorithms newest first (ssh-rsa last, for
// servers that only know SHA-1 signatures).
func (k *Keys) HostKeyAlgorithms() []string {
	return []string{
		ssh.KeyAlgoED25519,
		ssh.KeyAlgoRSASHA512,
		ssh.KeyAlgoRSASHA256,
		ssh.KeyAlgoRSA,
	}
}

// HostKeyCallback accepts only this job's host keys. Any other key yields a
// *HostKeyMismatchError (errors.Is ErrHostKeyMismatch).
func (k *Keys) HostKeyCallback() ssh.HostKeyCallback {
	want := k.HostKeys()
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if key != nil {
			got := key.Marshal()
			for _, w := range want {
				if bytes.Equal(got, w.Marshal()) {
					return nil
				}
			}
		}
		return &HostKeyMismatchError{Hostname: hostname, Remote: remote, Got: key, Want: want}
	}
}

// ClientKeyPEM returns the ed25519 client private key in OpenSSH PEM format, so an
// operator can log in to a kept guest by hand (ssh -i).
func (k *Keys) ClientKeyPEM() []byte {
	return bytes.Clone(k.clientEdPEM)
}

// sshKeys returns cloud-init ssh_keys content: private keys as PEM, public keys
// as authorized_keys lines.
func (k *Keys) sshKeys() sshKeys {
	return sshKeys{
		ED25519Private: string(k.hostEd25519PEM),
		ED25519Public:  authorizedLine(k.hostPubs[0]),
		RSAPrivate:     string(k.hostRSAPEM),
		RSAPublic:      authorizedLine(k.hostPubs[1]),
	}
}
