// Package feed reads vendor image feeds in each vendor's own format and answers one
// question: what is the newest release of this artefact, where is it, and what is its
// digest. Readers exist for Debian's dated build directories with SHA512SUMS, Ubuntu's
// simplestreams, CHECKSUM files in BSD and GNU form (CentOS Stream, Rocky, AlmaLinux,
// Fedora), Flatcar's version.txt and DIGESTS, and CirrOS's version/released. Where the
// vendor signs, a source with a keyring verifies the signature before it answers.
//
// Every document is fetched through a Client that sends the previous response's cache
// validators, so a feed that has not changed costs one conditional request answered
// 304 Not Modified (reported as ErrNotModified).
package feed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Feed kinds, as the catalog names them.
const (
	KindDebian   = "debian"   // dated build directories under a suite, SHA512SUMS (+ .sign)
	KindUbuntu   = "ubuntu"   // simplestreams index.json and products JSON (+ .sjson)
	KindChecksum = "checksum" // one CHECKSUM file, BSD or GNU lines, maybe clear-signed
	KindFlatcar  = "flatcar"  // current/version.txt and <artefact>.DIGESTS (+ .asc)
	KindCirros   = "cirros"   // version/released and <version>/SHA256SUMS
)

// Kinds lists every feed kind.
var Kinds = []string{KindDebian, KindUbuntu, KindChecksum, KindFlatcar, KindCirros}

// Signed reports whether a kind's vendor signs its checksums, so that a keyring can
// be given for it.
func Signed(kind string) bool { return kind != KindCirros }

// Source is one artefact in one vendor feed.
type Source struct {
	Kind string
	// URL is the feed's root: the suite directory (debian), the simplestreams mirror
	// root holding streams/v1/ (ubuntu), the CHECKSUM file itself (checksum), the
	// channel's board directory holding current/ (flatcar), the download root holding
	// version/ (cirros).
	URL string
	// Arch is the vendor's architecture name (amd64, x86_64…), substituted for {arch}.
	Arch string
	// Artefact names the file: a template in which {arch} and {version} stand for the
	// architecture and the release (for ubuntu: the item's ftype, e.g. disk1.img).
	Artefact string
	// Product is the simplestreams product id (ubuntu only), {arch} substituted.
	Product string
	// Keyring, when set, must have signed the checksums; an unsigned or badly signed
	// feed is then an error and nothing is queued.
	Keyring Verifier
}

// Verifier checks OpenPGP signatures against a keyring (see package keyring).
type Verifier interface {
	// VerifyDetached checks sig, a detached signature, over data.
	VerifyDetached(data, sig []byte) (signer string, err error)
	// VerifyClearSigned checks a clear-signed document and returns its signed body.
	VerifyClearSigned(doc []byte) (body []byte, signer string, err error)
}

// Release is the newest release of an artefact as the feed describes it.
type Release struct {
	// Version is the vendor's version or build id of the release.
	Version string
	// URL is the artefact's absolute URL.
	URL string
	// Digest is "sha256:<hex>" or "sha512:<hex>", the vendor's digest of the artefact.
	Digest string
	// Size is the artefact's length in bytes when the feed says, else 0.
	Size int64
	// ReleasedAt is when the vendor released it, when the feed says.
	ReleasedAt *time.Time
	// Signer names the key that signed the checksums, when a keyring verified them.
	Signer string
}

// Errors a read can end with, told apart with errors.Is.
var (
	// ErrNotModified: the feed's first document answered 304; nothing changed since
	// the validators were taken.
	ErrNotModified = errors.New("not modified")
	// ErrMalformed: a document is not in the vendor's format, or does not list the
	// artefact.
	ErrMalformed = errors.New("malformed feed")
	// ErrUntrusted: a signature is missing or does not verify against the keyring.
	ErrUntrusted = errors.New("untrusted feed")
	// ErrUnavailable: the server failed, timed out or answered an unexpected status.
	ErrUnavailable = errors.New("feed unavailable")
)

// Error is a failed read of one document, naming it.
type Error struct {
	URL  string
	Kind error // ErrMalformed, ErrUntrusted or ErrUnavailable
	Err  error
}

func (e *Error) Error() string { return e.URL + ": " + e.Err.Error() }

// Unwrap returns both the class and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

func malformed(url string, format string, args ...any) error {
	return &Error{URL: url, Kind: ErrMalformed, Err: fmt.Errorf(format, args...)}
}

func untrusted(url string, err error) error {
	return &Error{URL: url, Kind: ErrUntrusted, Err: fmt.Errorf("signature: %w", err)}
}

// Read returns the newest release of src's artefact, reading its documents with c.
func Read(ctx context.Context, c *Client, src Source) (Release, error) {
	var rel Release
	var err error
	switch src.Kind {
	case KindDebian:
		rel, err = readDebian(ctx, c, src)
	case KindUbuntu:
		rel, err = readUbuntu(ctx, c, src)
	case KindChecksum:
		rel, err = readChecksum(ctx, c, src)
	case KindFlatcar:
		rel, err = readFlatcar(ctx, c, src)
	case KindCirros:
		rel, err = readCirros(ctx, c, src)
	default:
		return Release{}, fmt.Errorf("unknown feed kind %q (known: %s)", src.Kind, strings.Join(Kinds, ", "))
	}
	if err != nil {
		return Release{}, err
	}
	if !digestOK(rel.Digest) {
		return Release{}, malformed(rel.URL, "digest %q is not sha256 or sha512 hex", rel.Digest)
	}
	return rel, nil
}

// expand substitutes {arch} and {version} in a template.
func expand(tmpl, arch, version string) string {
	return strings.NewReplacer("{arch}", arch, "{version}", version).Replace(tmpl)
}

func digestOK(d string) bool {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok {
		return false
	}
	want := map[string]int{"sha256": 64, "sha512": 128}[algo]
	if want == 0 || len(hex) != want {
		return false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
