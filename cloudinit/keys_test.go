package cloudinit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestNewKeys(t *testing.T) {
	k, err := NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(k.HostKeys()[0].Marshal(), k2.HostKeys()[0].Marshal()) || k.AuthorizedKeys()[0] == k2.AuthorizedKeys()[0] {
		t.Error("two NewKeys calls share keys")
	}
	wantTypes := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSA}
	for i, s := range k.Signers() {
		if s.PublicKey().Type() != wantTypes[i] {
			t.Errorf("signer %d is %s, want %s", i, s.PublicKey().Type(), wantTypes[i])
		}
	}
	for i, h := range k.HostKeys() {
		if h.Type() != wantTypes[i] {
			t.Errorf("host key %d is %s, want %s", i, h.Type(), wantTypes[i])
		}
	}
	for i, line := range k.AuthorizedKeys() {
		pub, comment, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil || comment != KeyComment || len(rest) != 0 || strings.Contains(line, "\n") {
			t.Errorf("authorized key %q: %v, comment %q", line, err, comment)
			continue
		}
		if !bytes.Equal(pub.Marshal(), k.Signers()[i].PublicKey().Marshal()) {
			t.Errorf("authorized key %d does not match signer %d", i, i)
		}
	}
	if got := k.HostKeyAlgorithms(); strings.Join(got, ",") != "ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ssh-rsa" {
		t.Errorf("HostKeyAlgorithms = %v", got)
	}
	// Returned slices are copies.
	k.Signers()[0] = nil
	k.HostKeys()[0] = nil
	if k.Signers()[0] == nil || k.HostKeys()[0] == nil {
		t.Error("Signers/HostKeys expose internal slices")
	}
}

// TestHostKeysReadableByOpenSSH has ssh-keygen, the tool every guest's sshd shares its
// key parser with, read the private host keys exactly as cloud-init writes them.
func TestHostKeysReadableByOpenSSH(t *testing.T) {
	keygen := requireTool(t, "ssh-keygen")
	for _, k := range []*Keys{testKeys(t), mustNewKeys(t)} {
		sk := k.sshKeys()
		client := k.ClientKeyPEM()
		for _, c := range []struct{ name, private, public string }{
			{"ed25519_private", sk.ED25519Private, sk.ED25519Public},
			{"rsa_private", sk.RSAPrivate, sk.RSAPublic},
			{"client ed25519", string(client), k.AuthorizedKeys()[0]},
		} {
			p := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(p, []byte(c.private), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(keygen, "-y", "-f", p).CombinedOutput()
			if err != nil {
				t.Fatalf("ssh-keygen -y %s: %v\n%s", c.name, err, out)
			}
			gotFields, wantFields := strings.Fields(string(out)), strings.Fields(c.public)
			if len(gotFields) < 2 || gotFields[0] != wantFields[0] || gotFields[1] != wantFields[1] {
				t.Errorf("%s: ssh-keygen derived %q, we publish %q", c.name, out, c.public)
			}
		}
	}
}

func mustNewKeys(t testing.TB) *Keys {
	k, err := NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sshServer serves SSH handshakes on 127.0.0.1 with the given host keys, accepting
// client keys whose type is in acceptTypes and which are authorized.
func sshServer(t *testing.T, hostKeys []ssh.Signer, authorized []string, acceptTypes ...string) string {
	t.Helper()
	allowed := map[string]bool{}
	for _, line := range authorized {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		allowed[string(pub.Marshal())] = true
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, typ := range acceptTypes {
				if key.Type() == typ && allowed[string(key.Marshal())] {
					return nil, nil
				}
			}
			return nil, errors.New("not authorized")
		},
	}
	for _, h := range hostKeys {
		cfg.AddHostKey(h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				defer conn.Close()
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					ch.Reject(ssh.Prohibited, "no channels")
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string, k *Keys, seen *string) error {
	t.Helper()
	cb := k.HostKeyCallback()
	cfg := &ssh.ClientConfig{
		User: "debian",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(k.Signers()...)},
		HostKeyCallback: func(h string, r net.Addr, key ssh.PublicKey) error {
			*seen = key.Type()
			return cb(h, r, key)
		},
		HostKeyAlgorithms: k.HostKeyAlgorithms(),
		Timeout:           10 * time.Second,
	}
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	conn, chans, reqs, err := ssh.NewClientConn(c, addr, cfg)
	if err != nil {
		return err
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		for ch := range chans {
			ch.Reject(ssh.Prohibited, "")
		}
	}()
	return conn.Close()
}

func hostSigners(t *testing.T, k *Keys) (ed, rsa ssh.Signer) {
	ed, err := ssh.NewSignerFromKey(k.hostEd25519)
	if err != nil {
		t.Fatal(err)
	}
	rsa, err = ssh.NewSignerFromKey(k.hostRSA)
	if err != nil {
		t.Fatal(err)
	}
	return ed, rsa
}

// TestHandshake logs in to real SSH servers on loopback the way the worker does:
// the host key is pinned, ed25519 preferred, RSA used where that is all a server has.
func TestHandshake(t *testing.T) {
	k := testKeys(t)
	ed, rsaSigner := hostSigners(t, k)
	for _, tc := range []struct {
		name       string
		hostKeys   []ssh.Signer
		clientAlgs []string
		wantHost   string
	}{
		{"modern", []ssh.Signer{ed, rsaSigner}, []string{ssh.KeyAlgoED25519}, ssh.KeyAlgoED25519},
		{"rsa-only server", []ssh.Signer{rsaSigner}, []string{ssh.KeyAlgoRSA}, ssh.KeyAlgoRSA},
		{"no ed25519 client auth", []ssh.Signer{ed}, []string{ssh.KeyAlgoRSA}, ssh.KeyAlgoED25519},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := sshServer(t, tc.hostKeys, k.AuthorizedKeys(), tc.clientAlgs...)
			var seen string
			if err := dial(t, addr, k, &seen); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if seen != tc.wantHost {
				t.Errorf("host key type %s, want %s", seen, tc.wantHost)
			}
		})
	}

	t.Run("foreign host key", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		otherSigner, _ := ssh.NewSignerFromKey(other)
		addr := sshServer(t, []ssh.Signer{otherSigner}, k.AuthorizedKeys(), ssh.KeyAlgoED25519)
		var seen string
		err := dial(t, addr, k, &seen)
		if !errors.Is(err, ErrHostKeyMismatch) {
			t.Fatalf("err = %v, want ErrHostKeyMismatch", err)
		}
		var mm *HostKeyMismatchError
		if !errors.As(err, &mm) || !bytes.Equal(mm.Got.Marshal(), otherSigner.PublicKey().Marshal()) || len(mm.Want) != 2 {
			t.Fatalf("err = %#v, want a *HostKeyMismatchError carrying the foreign key", err)
		}
		if !strings.Contains(mm.Error(), ssh.FingerprintSHA256(otherSigner.PublicKey())) {
			t.Errorf("error %q does not name the presented key", mm)
		}
	})

	t.Run("other job's keys", func(t *testing.T) {
		addr := sshServer(t, []ssh.Signer{ed}, k.AuthorizedKeys(), ssh.KeyAlgoED25519)
		var seen string
		if err := dial(t, addr, mustNewKeys(t), &seen); !errors.Is(err, ErrHostKeyMismatch) {
			t.Fatalf("err = %v, want ErrHostKeyMismatch", err)
		}
	})
}

func TestParseKeysErrors(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ed, rsa := read("client_ed25519"), read("client_rsa")
	for _, tc := range []struct {
		name string
		args [4][]byte
		want string
	}{
		{"rsa as ed25519", [4][]byte{rsa, rsa, ed, rsa}, "client ed25519 key: want an ed25519 key"},
		{"ed25519 as rsa", [4][]byte{ed, rsa, ed, ed}, "host rsa key: want an rsa key"},
		{"garbage", [4][]byte{ed, []byte("nope"), ed, rsa}, "client rsa key: "},
	} {
		if _, err := ParseKeys(tc.args[0], tc.args[1], tc.args[2], tc.args[3]); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	// Parsed keys render reproducibly: the same PEM in, the same ssh_keys out.
	a, b := testKeys(t).sshKeys(), func() sshKeys {
		k, err := ParseKeys(ed, rsa, read("host_ed25519"), read("host_rsa"))
		if err != nil {
			t.Fatal(err)
		}
		return k.sshKeys()
	}()
	if a != b {
		t.Error("ParseKeys is not reproducible")
	}
}
