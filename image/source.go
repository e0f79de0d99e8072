package image

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/imagevet/imagevet/sums"
)

// Source says where an image comes from and what it must be.
type Source struct {
	URL      string // https://, http://, file:///abs/path, or a plain path (relative paths resolve against the first file root)
	Format   string // claimed: "qcow2" or "raw"
	Checksum string // "sha256:<hex>" or "sha512:<hex>"; may be empty if SumsURL is set
	SumsURL  string // vendor SUMS file (SHA256SUMS/SHA512SUMS layout), same URL rules as URL
	SumsName string // the file name to look up in it (default: base name of URL)
	// SumsSignature is a detached OpenPGP signature of the SUMS file, same URL
	// rules; a clear-signed SUMS file carries its own.
	SumsSignature string
	// ConvertTo, when set to a format other than Format ("raw" or "qcow2"),
	// asks Store.Fetch for the verified vendor file converted to it (see
	// Fetch): what a job's publish.disk_format asks for.
	ConvertTo string
}

// Job field paths named by SourceError.
const (
	FieldSource   = "image.source"
	FieldFormat   = "image.format"
	FieldChecksum = "image.checksum"
	FieldSumsURL  = "image.sums_url"
	FieldSumsName = "image.sums_name"
	FieldSumsSig  = "image.sums_signature"
	// FieldConvertTo is the job field Source.ConvertTo comes from.
	FieldConvertTo = "publish.disk_format"
)

// digest is an expected checksum: algorithm and lower-case hex.
type digest struct {
	Algo string // "sha256" or "sha512"
	Hex  string
}

func (d digest) String() string { return d.Algo + ":" + d.Hex }

// pick is, of a file's two hex digests, the one of d's algorithm.
func (d digest) pick(sum256, sum512 string) string {
	if d.Algo == "sha512" {
		return sum512
	}
	return sum256
}

// parseChecksum parses "sha256:<hex>" or "sha512:<hex>".
func parseChecksum(s string) (digest, error) {
	algo, hexs, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return digest{}, fmt.Errorf("checksum %q: want sha256:<hex> or sha512:<hex>", s)
	}
	return newDigest(strings.ToLower(algo), hexs)
}

func newDigest(algo, hexs string) (digest, error) {
	hexs = strings.ToLower(hexs)
	var n int
	switch algo {
	case "sha256":
		n = 64
	case "sha512":
		n = 128
	default:
		return digest{}, fmt.Errorf("checksum algorithm %q: want sha256 or sha512", algo)
	}
	if len(hexs) != n {
		return digest{}, fmt.Errorf("%s checksum has %d hex digits, want %d", algo, len(hexs), n)
	}
	if _, err := hex.DecodeString(hexs); err != nil {
		return digest{}, fmt.Errorf("%s checksum is not hex", algo)
	}
	return digest{Algo: algo, Hex: hexs}, nil
}

// location is a resolved source: either an http(s) URL or a file path that
// was checked against the file roots.
type location struct {
	HTTP string // http(s) URL, or ""
	Path string // resolved absolute file path (symlinks evaluated), or ""
	Name string // base name, used as the default SUMS entry name
}

func (l location) String() string {
	if l.HTTP != "" {
		return l.HTTP
	}
	return l.Path
}

// resolve turns a source URL into a location, enforcing the file roots for
// file sources. field names the job field in errors.
func resolve(raw string, roots []string, field string) (location, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return location{}, sourceErr(field, "empty")
	}
	loc, p, err := parseSourceURL(raw, field)
	if err != nil || loc.HTTP != "" {
		return loc, err
	}
	return resolveFile(raw, p, roots, field)
}

// parseSourceURL reads raw (trimmed, not empty) as an http(s) URL, giving its
// location, or as a file URL or a plain path, giving the file's path (relative to
// the first file root when not absolute).
func parseSourceURL(raw, field string) (loc location, file string, err error) {
	u, err := url.Parse(raw)
	switch {
	case err == nil && (u.Scheme == "http" || u.Scheme == "https"):
		if u.Host == "" {
			return location{}, "", sourceErr(field, "%q has no host", raw)
		}
		if u.User != nil {
			return location{}, "", sourceErr(field, "%q: credentials in URLs are not supported", raw)
		}
		return location{HTTP: u.String(), Name: path.Base(u.Path)}, "", nil
	case err == nil && u.Scheme == "file":
		if u.Host != "" && u.Host != "localhost" {
			return location{}, "", sourceErr(field, "%q: file URLs must not name a host", raw)
		}
		if !filepath.IsAbs(u.Path) {
			return location{}, "", sourceErr(field, "%q: file URL path must be absolute", raw)
		}
		return location{}, u.Path, nil
	case err == nil && u.Scheme != "" && len(u.Scheme) > 1:
		return location{}, "", sourceErr(field, "%q: unsupported scheme %q (want https, http or file)", raw, u.Scheme)
	}
	return location{}, raw, nil
}

// resolveFile resolves the path p that raw names to a regular file under one of
// roots, symlinks evaluated.
func resolveFile(raw, p string, roots []string, field string) (location, error) {
	if len(roots) == 0 {
		return location{}, sourceErr(field, "%q: file sources are not allowed (no file roots configured)", raw)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(roots[0], p)
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(p))
	if errors.Is(err, fs.ErrNotExist) {
		return location{}, sourceErr(field, "%q: no such file", raw)
	}
	if err != nil {
		return location{}, sourceErr(field, "%q: %w", raw, err)
	}
	if !underRoots(real, roots) {
		return location{}, sourceErr(field, "%q resolves to %q, outside the allowed file roots", raw, real)
	}
	st, err := os.Stat(real)
	if err != nil {
		return location{}, sourceErr(field, "%q: %w", raw, err)
	}
	if !st.Mode().IsRegular() {
		return location{}, sourceErr(field, "%q is not a regular file", raw)
	}
	return location{Path: real, Name: filepath.Base(p)}, nil
}

// underRoots reports whether the symlink-free path p lies inside one of roots
// (each root is resolved too).
func underRoots(p string, roots []string) bool {
	for _, r := range roots {
		rr, err := filepath.EvalSymlinks(r)
		if err != nil {
			continue
		}
		rel, err := filepath.Rel(rr, p)
		if err != nil {
			continue
		}
		if rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel) {
			return true
		}
	}
	return false
}

// lookupSums finds name in a SUMS file (GNU or BSD lines, see package sums) and
// returns its strongest digest.
func lookupSums(data []byte, name string) (digest, bool, error) {
	e, ok, err := sums.Lookup(data, name)
	if err != nil || !ok {
		return digest{}, false, err
	}
	d, err := newDigest(e.Algo, e.Hex)
	if err != nil {
		return digest{}, false, fmt.Errorf("entry for %q: %w", name, err)
	}
	return d, true, nil
}
