package console

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"regexp"
	"strings"
	"time"
)

// The serial console is written only by the guest and reached by no network peer,
// so an SSH host key the guest prints there is a trustworthy second source beside
// the seed. These patterns find the shapes inits print host keys in:
//   - public key lines, as in cloud-init's "-----BEGIN SSH HOST KEY KEYS-----"
//     block or a bare "ssh-ed25519 AAAA… root@host";
//   - SHA256 fingerprints, as in cloud-init's FINGERPRINTS block and
//     "ssh-keygen -l" ("256 SHA256:… root@host (ED25519)");
//   - MD5 fingerprints ("MD5:aa:bb:…" or bare "aa:bb:…", 16 bytes), as older
//     cloud-init and "ssh-keygen -l -E md5" print them.
var (
	printedKey    = regexp.MustCompile(`\b((?:ssh|ecdsa|sk)-[a-z0-9@.-]+)\s+(AAAA[A-Za-z0-9+/]+={0,2})`)
	printedSHA256 = regexp.MustCompile(`SHA256:([A-Za-z0-9+/]{43})`)
	printedHex    = regexp.MustCompile(`(?i)[0-9a-f]{2}(?::[0-9a-f]{2})+`)
	hostKeysEnd   = regexp.MustCompile(`-----END SSH HOST KEY (KEYS|FINGERPRINTS)-----`)
)

// printedKeys is what the console has shown of the guest's host keys. Not safe
// for concurrent use: Console guards it with its mutex.
type printedKeys struct {
	blobs   map[string]bool // wire-format public keys
	sha256  map[string]bool // unpadded base64, as after "SHA256:"
	md5     map[string]bool // lowercase hex without colons
	listed  time.Time       // when a complete host key block was first seen
	hasList bool
}

// scan records the host keys and fingerprints on one cleaned console line.
func (p *printedKeys) scan(line string, now time.Time) {
	if p.blobs == nil {
		p.blobs, p.sha256, p.md5 = map[string]bool{}, map[string]bool{}, map[string]bool{}
	}
	for _, m := range printedKey.FindAllStringSubmatch(line, -1) {
		blob, err := base64.StdEncoding.DecodeString(m[2])
		if err != nil || keyType(blob) != m[1] {
			continue // a truncated or interleaved line, not a key
		}
		p.blobs[string(blob)] = true
	}
	for _, m := range printedSHA256.FindAllStringSubmatch(line, -1) {
		p.sha256[m[1]] = true
	}
	hexLine := strings.ReplaceAll(line, "MD5:", "MD5 ")
	for _, loc := range printedHex.FindAllStringIndex(hexLine, -1) {
		// Exactly 16 bytes standing alone: longer colon-hex runs (cloud-init's
		// authorized keys table prints SHA256 that way) are not MD5 fingerprints.
		m := hexLine[loc[0]:loc[1]]
		if len(m) == 16*3-1 && !wordByte(hexLine, loc[0]-1) && !wordByte(hexLine, loc[1]) {
			p.md5[strings.ToLower(strings.ReplaceAll(m, ":", ""))] = true
		}
	}
	if !p.hasList && hostKeysEnd.MatchString(line) {
		p.listed, p.hasList = now, true
	}
}

// wordByte reports whether s[i] exists and would continue a hex run.
func wordByte(s string, i int) bool {
	if i < 0 || i >= len(s) {
		return false
	}
	b := s[i]
	return b == ':' || b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// has reports how the key with wire-format blob was printed, if it was.
func (p *printedKeys) has(blob []byte) (string, bool) {
	if p.blobs[string(blob)] {
		return "public key", true
	}
	sum := sha256.Sum256(blob)
	if p.sha256[strings.TrimRight(base64.StdEncoding.EncodeToString(sum[:]), "=")] {
		return "SHA256 fingerprint", true
	}
	m := md5.Sum(blob)
	if p.md5[hex.EncodeToString(m[:])] {
		return "MD5 fingerprint", true
	}
	return "", false
}

// keyType reads the algorithm name an SSH wire-format public key starts with.
func keyType(blob []byte) string {
	if len(blob) < 4 {
		return ""
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(n) > uint64(len(blob)-4) {
		return ""
	}
	t := blob[4 : 4+n]
	if bytes.IndexFunc(t, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return ""
	}
	return string(t)
}

// PrintedHostKey reports whether the guest printed the SSH host key whose wire
// format (ssh.PublicKey.Marshal) is blob on its console, as a key or as a SHA256 or
// MD5 fingerprint, and in which shape ("public key", "SHA256 fingerprint", …).
func (c *Console) PrintedHostKey(blob []byte) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.printed.has(blob)
}

// HostKeysListed reports whether the console has shown a complete host key block
// ("-----END SSH HOST KEY KEYS-----" or "… FINGERPRINTS-----") and when: from
// then on a host key the guest presents but did not print is not one of its own.
func (c *Console) HostKeysListed() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.printed.hasList {
		return 0, false
	}
	return c.printed.listed.Sub(c.start), true
}
