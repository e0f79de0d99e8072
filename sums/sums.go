// Package sums reads vendor checksum lists: GNU lines ("<hex>  <name>", "<hex> *<name>")
// as sha256sum and sha512sum write them, BSD lines ("SHA256 (<name>) = <hex>") as
// CentOS, Rocky and Fedora publish them, and the "# <name>: <N> bytes" comments those
// vendors put before each entry. The algorithm of a GNU line follows from the digest's
// length. A line shaped as a checksum line whose digest is not one is an error
// naming its line, never skipped. Clear-signed lists are read after their signature
// is checked (package keyring); the armor lines are not part of this format.
package sums

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Entry is one file in a checksum list.
type Entry struct {
	Name string // as listed, without a leading "./" or "*"
	Algo string // "sha256", "sha512", "sha1" or "md5"
	Hex  string // lowercase hex digest
	Size int64  // from a "# name: N bytes" comment, else 0
}

// Digest returns the entry as "algo:hex".
func (e Entry) Digest() string { return e.Algo + ":" + e.Hex }

// MaxLine bounds one line of a list.
const MaxLine = 1 << 20

// LineError is a line that has the shape of a checksum line but whose digest is not
// one: a BSD line whose digest is not hex of its algorithm's length, or a GNU line
// ("<digest>  <name>") whose digest is not hex of a md5, sha1, sha256 or sha512
// length. Callers wrap it with the list's location.
type LineError struct {
	Line int    // 1-based
	Text string // the line, trimmed
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %q is not a md5, sha1, sha256 or sha512 digest", e.Line, e.Text)
}

// Parse returns every entry of a checksum list in order. Blank lines, comments and
// lines that are not checksum lines (armor, prose) are skipped; a line shaped as a
// checksum line whose digest is not one is a *LineError.
func Parse(data []byte) ([]Entry, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	sizes := map[string]int64{}
	var out []Entry
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if c, ok := strings.CutPrefix(line, "#"); ok {
			// "# CentOS-Stream-GenericCloud-9-20261120.0.x86_64.qcow2: 1181810688 bytes"
			if name, rest, ok := strings.Cut(strings.TrimSpace(c), ": "); ok {
				if num, ok := strings.CutSuffix(strings.TrimSpace(rest), " bytes"); ok {
					if v, err := strconv.ParseInt(num, 10, 64); err == nil && v >= 0 {
						sizes[name] = v
					}
				}
			}
			continue
		}
		var algo, hexs, file string
		shaped := false // a checksum line by its shape, whatever its digest
		if i := strings.Index(line, ") = "); i > 0 && strings.Contains(line[:i], " (") {
			j := strings.Index(line, " (")
			algo, file, hexs = strings.ToLower(line[:j]), line[j+2:i], line[i+4:]
			shaped = true
		} else {
			h, f, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			hexs, file = h, strings.TrimPrefix(strings.TrimLeft(f, " "), "*")
			algo = algoByLen[len(hexs)]
			shaped = gnuShaped(h, f)
		}
		file = strings.TrimPrefix(file, "./")
		hexs = strings.ToLower(hexs)
		want := map[string]int{"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}[algo]
		isHex := hexs != "" && strings.Trim(hexs, "0123456789abcdef") == ""
		if want == 0 || len(hexs) != want || !isHex {
			if shaped {
				return nil, &LineError{Line: n, Text: line}
			}
			continue // not a checksum line (armor, prose)
		}
		out = append(out, Entry{Name: file, Algo: algo, Hex: hexs})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Size = sizes[out[i].Name]
	}
	return out, nil
}

var algoByLen = map[int]string{32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}

// gnuShaped reports whether a line that is word, a space and rest has the shape of a
// GNU checksum line whatever its digest: word is a run of at least 16 hex or base64
// characters and rest a name after sha256sum's second space or binary-mode star, or
// word has a digest's length. Prose and armor lines ("Hash: SHA512", "-----BEGIN
// PGP SIGNATURE-----") do not.
func gnuShaped(word, rest string) bool {
	if len(word) < 16 || strings.ContainsFunc(word, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || r == '+' || r == '/' || r == '=')
	}) {
		return false
	}
	name := strings.TrimPrefix(strings.TrimLeft(rest, " "), "*")
	if name == "" {
		return false
	}
	sep := strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "*")
	return sep || algoByLen[len(word)] != ""
}

// Lookup returns the strongest digest listed for name (sha512 over sha256 over the
// rest) and whether the list has one.
func Lookup(data []byte, name string) (Entry, bool, error) {
	entries, err := Parse(data)
	if err != nil {
		return Entry{}, false, err
	}
	return Best(entries, name)
}

// Best returns the strongest entry for name among entries; two entries for name
// with the same algorithm and different digests are an error.
func Best(entries []Entry, name string) (Entry, bool, error) {
	rank := map[string]int{"md5": 1, "sha1": 2, "sha256": 3, "sha512": 4}
	var best Entry
	seen := map[string]string{} // algo -> hex
	for _, e := range entries {
		if e.Name != name {
			continue
		}
		// Two lists concatenated, or an entry slipped in: which one to trust?
		if hex, ok := seen[e.Algo]; ok && hex != e.Hex {
			return Entry{}, false, fmt.Errorf("two different %s digests for %q", e.Algo, name)
		}
		seen[e.Algo] = e.Hex
		if rank[e.Algo] > rank[best.Algo] {
			best = e
		}
	}
	return best, best.Name != "", nil
}
