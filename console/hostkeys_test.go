package console

import (
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func newKey(t *testing.T, rsaKey bool) ssh.PublicKey {
	t.Helper()
	var pub any
	if rsaKey {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	} else {
		p, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		pub = p
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func md5Colons(k ssh.PublicKey) string {
	sum := md5.Sum(k.Marshal())
	h := hex.EncodeToString(sum[:])
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// Every shape inits print host keys in is recognised; keys printed nowhere, and
// colon-hex runs that are not 16 bytes, are not.
func TestPrintedHostKeys(t *testing.T) {
	block, fp, md, bare, legacy, never := newKey(t, false), newKey(t, false), newKey(t, true), newKey(t, false), newKey(t, false), newKey(t, false)
	authorized := newKey(t, false)
	blockLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(block)))
	bareLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(bare)))
	log := strings.Join([]string{
		"[   12.1] cloud-init[512]: Cloud-init v. 22.4.2 running 'modules:final' at Tue, 01 Dec 2026 00:00:00 +0000. Up 12.00 seconds.",
		"<14>Dec  1 00:00:01 cloud-init: #############################################################",
		"<14>Dec  1 00:00:01 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
		"<14>Dec  1 00:00:01 cloud-init: 256 " + ssh.FingerprintSHA256(fp) + " root@vet (ED25519)",
		"<14>Dec  1 00:00:01 cloud-init: 1024 MD5:" + md5Colons(md) + " root@vet (RSA)",
		"<14>Dec  1 00:00:01 ec2: 256 " + md5Colons(legacy) + " /etc/ssh/ssh_host_ed25519_key.pub (ED25519)",
		"<14>Dec  1 00:00:01 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----",
		"-----BEGIN SSH HOST KEY KEYS-----",
		blockLine + " root@vet",
		"-----END SSH HOST KEY KEYS-----",
		// ssh-keygen -l of a key printed by another init, then a bare key line.
		"appliance-init: host key " + bareLine,
		// cloud-init's authorized keys table: SHA256 as 32 colon-separated bytes.
		"ci-info: | ssh-ed25519 | " + sha256Colons(authorized) + " | - | me@laptop |",
		// A key line cut short by the console is no key.
		"ssh-ed25519 " + strings.Fields(string(ssh.MarshalAuthorizedKey(never)))[1][:30],
	}, "\n") + "\n"
	c := scan(t, log)
	for name, tc := range map[string]struct {
		key ssh.PublicKey
		how string
	}{
		"KEYS block": {block, "public key"}, "SHA256 fingerprint": {fp, "SHA256 fingerprint"},
		"MD5: fingerprint": {md, "MD5 fingerprint"}, "bare MD5": {legacy, "MD5 fingerprint"}, "bare key": {bare, "public key"},
	} {
		how, ok := c.PrintedHostKey(tc.key.Marshal())
		if !ok || how != tc.how {
			t.Errorf("%s: PrintedHostKey = %q, %v; want %q", name, how, ok, tc.how)
		}
	}
	for name, k := range map[string]ssh.PublicKey{"never printed": never, "authorized key (32-byte hex)": authorized} {
		if how, ok := c.PrintedHostKey(k.Marshal()); ok {
			t.Errorf("%s: accepted as %s", name, how)
		}
	}
	if _, ok := c.HostKeysListed(); !ok {
		t.Error("the END line of a host key block was not noted")
	}
	if _, ok := c.Milestone(MilestoneSSHHostKeys); !ok {
		t.Error("host keys milestone not seen")
	}
}

func sha256Colons(k ssh.PublicKey) string {
	fp := ssh.FingerprintLegacyMD5(k) // 16 bytes; double it to a 32-byte run
	return fp + ":" + fp
}

// No block, no listing: a guest still booting has not said which keys are its own.
func TestHostKeysNotListedWithoutBlock(t *testing.T) {
	k := newKey(t, false)
	c := scan(t, fmt.Sprintf("Linux version 6.1\n256 %s root@x (ED25519)\n", ssh.FingerprintSHA256(k)))
	if _, ok := c.HostKeysListed(); ok {
		t.Error("listed without a block")
	}
	if _, ok := c.PrintedHostKey(k.Marshal()); !ok {
		t.Error("ssh-keygen -l line not recognised")
	}
}
