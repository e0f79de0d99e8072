package sshprobe

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"slices"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Pinned algorithms are offered strongest first whatever order the keys come in,
// so a guest holding both pinned keys proves the ed25519 one.
func TestHostKeyAlgorithmsStrongestFirst(t *testing.T) {
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := ssh.NewSignerFromKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ssh.NewSignerFromKey(rsaPriv)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	got := hostKeyAlgorithms([]ssh.PublicKey{rs.PublicKey(), ed.PublicKey(), rs.PublicKey()})
	if !slices.Equal(got, want) {
		t.Errorf("hostKeyAlgorithms = %v, want %v", got, want)
	}
}
