package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imagevet/imagevet/sums"
)

// hrefPattern finds the links of an autoindex page (Apache's, nginx's, ours).
var hrefPattern = regexp.MustCompile(`(?i)href="([^"?#]+)"`)

// debianBuild is a dated build directory of a Debian cloud suite ("20261120-1234").
var debianBuild = regexp.MustCompile(`^([0-9]{8}-[0-9]{4})/?$`)

// readDebian reads a suite directory (…/images/cloud/bookworm/): its index lists dated
// build directories, the newest one holds SHA512SUMS (signed by SHA512SUMS.sign, a
// detached signature) listing the artefact.
func readDebian(ctx context.Context, c *Client, src Source) (Release, error) {
	base := dirURL(src.URL)
	index, err := c.entry(ctx, base)
	if err != nil {
		return Release{}, err
	}
	var newest string
	for _, m := range hrefPattern.FindAllSubmatch(index, -1) {
		name := strings.TrimPrefix(string(m[1]), "./")
		if b := debianBuild.FindStringSubmatch(name); b != nil && CompareVersions(b[1], newest) > 0 {
			newest = b[1]
		}
	}
	if newest == "" {
		return Release{}, malformed(base, "the index lists no dated build directory (YYYYMMDD-hhmm/)")
	}
	sumsURL := base + newest + "/SHA512SUMS"
	list, err := c.get(ctx, sumsURL)
	if err != nil {
		return Release{}, err
	}
	rel := Release{Version: newest}
	if src.Keyring != nil {
		sig, err := c.get(ctx, sumsURL+".sign")
		if err != nil {
			return Release{}, err
		}
		if rel.Signer, err = src.Keyring.VerifyDetached(list, sig); err != nil {
			return Release{}, untrusted(sumsURL+".sign", err)
		}
	}
	name := expand(src.Artefact, src.Arch, newest)
	e, err := lookup(sumsURL, list, name)
	if err != nil {
		return Release{}, err
	}
	rel.URL, rel.Digest, rel.Size = base+newest+"/"+name, e.Digest(), e.Size
	if t, err := time.Parse("20060102-1504", newest); err == nil {
		rel.ReleasedAt = &t
	}
	return rel, nil
}

// streamsIndex is simplestreams' streams/v1/index.json (format "index:1.0").
type streamsIndex struct {
	Format string `json:"format"`
	Index  map[string]struct {
		Datatype string   `json:"datatype"`
		Format   string   `json:"format"`
		Path     string   `json:"path"`
		Products []string `json:"products"`
	} `json:"index"`
}

// streamsProducts is a simplestreams products file (format "products:1.0").
type streamsProducts struct {
	Format   string `json:"format"`
	Products map[string]struct {
		Arch     string `json:"arch"`
		Versions map[string]struct {
			Items map[string]struct {
				Ftype  string `json:"ftype"`
				Path   string `json:"path"`
				SHA256 string `json:"sha256"`
				Size   int64  `json:"size"`
			} `json:"items"`
		} `json:"versions"`
	} `json:"products"`
}

func (idx *streamsIndex) streamsFormat() string { return idx.Format }

func (prods *streamsProducts) streamsFormat() string { return prods.Format }

// readUbuntu reads a simplestreams mirror: streams/v1/index.json names the products
// file holding the product, whose newest version has an item of the artefact's ftype.
// With a keyring the clear-signed twins (.sjson) are read and verified instead.
func readUbuntu(ctx context.Context, c *Client, src Source) (Release, error) {
	root := dirURL(src.URL)
	ext := ".json"
	if src.Keyring != nil {
		ext = ".sjson"
	}
	indexURL := root + "streams/v1/index" + ext
	var idx streamsIndex
	signer, err := readStreamsDoc(ctx, c.entry, src, indexURL, "index:1.0", &idx)
	if err != nil {
		return Release{}, err
	}
	product := expand(src.Product, src.Arch, "")
	productsPath := idx.productsPath(product)
	if productsPath == "" || !safeRelative(productsPath) {
		return Release{}, malformed(indexURL, "no image-downloads entry lists product %q", product)
	}
	productsURL := root + strings.TrimSuffix(productsPath, path.Ext(productsPath)) + ext
	var prods streamsProducts
	if _, err := readStreamsDoc(ctx, c.get, src, productsURL, "products:1.0", &prods); err != nil {
		return Release{}, err
	}
	rel, err := prods.newest(productsURL, root, product, src.Artefact)
	if err != nil {
		return Release{}, err
	}
	rel.Signer = signer
	if len(rel.Version) >= 8 {
		if t, err := time.Parse("20060102", rel.Version[:8]); err == nil {
			rel.ReleasedAt = &t
		}
	}
	return rel, nil
}

// readStreamsDoc fetches one simplestreams document, verifies its clear signature
// when src has a keyring, and decodes it into doc, which must say it is of format.
func readStreamsDoc(ctx context.Context, fetch func(context.Context, string) ([]byte, error), src Source, url, format string,
	doc interface{ streamsFormat() string }) (signer string, err error) {
	data, err := fetch(ctx, url)
	if err != nil {
		return "", err
	}
	if data, signer, err = verifyClearSigned(src, url, data); err != nil {
		return "", err
	}
	if err := json.Unmarshal(data, doc); err != nil || doc.streamsFormat() != format {
		return "", malformed(url, "not a simplestreams %s document (%v)", format, err)
	}
	return signer, nil
}

// productsPath is the path of the image-downloads products file the index says
// holds product; "" when none does.
func (idx *streamsIndex) productsPath(product string) string {
	var p string
	for _, e := range idx.Index {
		if e.Datatype == "image-downloads" && slices.Contains(e.Products, product) {
			p = e.Path
		}
	}
	return p
}

// newest is product's newest version that has an item of artefact (its ftype, or
// its key), the item found under root; the products file at url is named in errors.
func (prods *streamsProducts) newest(url, root, product, artefact string) (Release, error) {
	p, ok := prods.Products[product]
	if !ok {
		return Release{}, malformed(url, "no product %q", product)
	}
	var rel Release
	for version, v := range p.Versions {
		if CompareVersions(version, rel.Version) <= 0 {
			continue
		}
		for key, it := range v.Items {
			if it.Ftype == artefact || key == artefact {
				if !safeRelative(it.Path) {
					return Release{}, malformed(url, "%s version %s: item path %q leaves the mirror", product, version, it.Path)
				}
				rel = Release{Version: version, URL: root + it.Path, Digest: "sha256:" + strings.ToLower(it.SHA256), Size: it.Size}
			}
		}
	}
	if rel.Version == "" {
		return Release{}, malformed(url, "product %q has no version with a %q item", product, artefact)
	}
	return rel, nil
}

// readChecksum reads one CHECKSUM file listing many builds (CentOS Stream, Rocky,
// AlmaLinux, Fedora), in BSD or GNU form: the newest entry matching the artefact
// template is the release, {version} matching the build. With a keyring the file must
// be clear-signed (Fedora's are).
func readChecksum(ctx context.Context, c *Client, src Source) (Release, error) {
	data, err := c.entry(ctx, src.URL)
	if err != nil {
		return Release{}, err
	}
	var signer string
	if data, signer, err = verifyClearSigned(src, src.URL, data); err != nil {
		return Release{}, err
	}
	entries, err := sums.Parse(data)
	if err != nil {
		return Release{}, malformed(src.URL, "%v", err)
	}
	re, err := artefactPattern(src.Artefact, src.Arch)
	if err != nil {
		return Release{}, err
	}
	var version, name string
	for _, e := range entries {
		if m := re.FindStringSubmatch(e.Name); m != nil && CompareVersions(m[1], version) > 0 {
			version, name = m[1], e.Name
		}
	}
	if name == "" {
		return Release{}, malformed(src.URL, "no entry matches %q", expand(src.Artefact, src.Arch, "*"))
	}
	e, err := lookup(src.URL, data, name)
	if err != nil {
		return Release{}, err
	}
	base := src.URL[:strings.LastIndexByte(src.URL, '/')+1]
	return Release{Version: version, URL: base + name, Digest: e.Digest(), Size: e.Size, Signer: signer}, nil
}

// readFlatcar reads a channel's board directory (…/amd64-usr/): current/version.txt
// names the version, <version>/<artefact>.DIGESTS its digests (.DIGESTS.asc, the
// clear-signed twin, with a keyring).
func readFlatcar(ctx context.Context, c *Client, src Source) (Release, error) {
	base := dirURL(src.URL)
	vURL := base + "current/version.txt"
	data, err := c.entry(ctx, vURL)
	if err != nil {
		return Release{}, err
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			vars[k] = strings.Trim(v, `"'`)
		}
	}
	version := vars["FLATCAR_VERSION"]
	if !versionToken.MatchString(version) {
		return Release{}, malformed(vURL, "FLATCAR_VERSION %q is not a version", version)
	}
	name := expand(src.Artefact, src.Arch, version)
	dURL := base + version + "/" + name + ".DIGESTS"
	if src.Keyring != nil {
		dURL += ".asc"
	}
	list, err := c.get(ctx, dURL)
	if err != nil {
		return Release{}, err
	}
	var signer string
	if list, signer, err = verifyClearSigned(src, dURL, list); err != nil {
		return Release{}, err
	}
	e, err := lookup(dURL, list, name)
	if err != nil {
		return Release{}, err
	}
	return Release{Version: version, URL: base + version + "/" + name, Digest: e.Digest(), Size: e.Size, Signer: signer}, nil
}

// readCirros reads CirrOS's download root: version/released holds the released
// version, <version>/SHA256SUMS its digests.
func readCirros(ctx context.Context, c *Client, src Source) (Release, error) {
	root := dirURL(src.URL)
	vURL := root + "version/released"
	data, err := c.entry(ctx, vURL)
	if err != nil {
		return Release{}, err
	}
	version := strings.TrimSpace(string(data))
	if !versionToken.MatchString(version) {
		return Release{}, malformed(vURL, "%q is not a version", truncate(version, 40))
	}
	name := expand(src.Artefact, src.Arch, version)
	sURL := root + version + "/SHA256SUMS"
	list, err := c.get(ctx, sURL)
	if err != nil {
		return Release{}, err
	}
	e, err := lookup(sURL, list, name)
	if err != nil {
		return Release{}, err
	}
	return Release{Version: version, URL: root + version + "/" + name, Digest: e.Digest(), Size: e.Size}, nil
}

// versionToken is what a version read from a feed may look like before it becomes
// part of a URL.
var versionToken = regexp.MustCompile(`^[0-9][0-9A-Za-z.+_~-]{0,63}$`)

// artefactPattern turns an artefact template into an anchored expression whose one
// group captures {version}.
func artefactPattern(tmpl, arch string) (*regexp.Regexp, error) {
	before, after, ok := strings.Cut(tmpl, "{version}")
	if !ok || strings.Contains(after, "{version}") {
		return nil, fmt.Errorf("artefact %q: a checksum feed's artefact holds {version} exactly once", tmpl)
	}
	q := func(s string) string { return regexp.QuoteMeta(strings.ReplaceAll(s, "{arch}", arch)) }
	return regexp.Compile("^" + q(before) + "([0-9][0-9A-Za-z.+_~-]*)" + q(after) + "$")
}

func lookup(url string, list []byte, name string) (sums.Entry, error) {
	e, ok, err := sums.Lookup(list, name)
	switch {
	case err != nil:
		return sums.Entry{}, malformed(url, "%v", err)
	case !ok:
		return sums.Entry{}, malformed(url, "no checksum for %s", name)
	case e.Algo != "sha256" && e.Algo != "sha512":
		return sums.Entry{}, malformed(url, "only a %s checksum for %s (want sha256 or sha512)", e.Algo, name)
	}
	return e, nil
}

func verifyClearSigned(src Source, url string, doc []byte) ([]byte, string, error) {
	if src.Keyring == nil {
		return doc, "", nil
	}
	body, signer, err := src.Keyring.VerifyClearSigned(doc)
	if err != nil {
		return nil, "", untrusted(url, err)
	}
	return body, signer, nil
}

func dirURL(u string) string {
	if strings.HasSuffix(u, "/") {
		return u
	}
	return u + "/"
}

// safeRelative reports whether p is a relative path that stays below the mirror root.
func safeRelative(p string) bool {
	return p != "" && !strings.HasPrefix(p, "/") && !strings.Contains(p, "://") &&
		!strings.HasPrefix(path.Clean(p), "..")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// CompareVersions orders vendor versions (-1, 0, +1): runs of digits compare as numbers, other
// runs as text ("9.10" > "9.9", "20261120-1234" > "20261101-0900"); "" is oldest.
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		ra, resta := leadingRun(a)
		rb, restb := leadingRun(b)
		da, db := isDigit(ra[0]), isDigit(rb[0])
		switch {
		case da && db:
			na, _ := strconv.ParseUint(strings.TrimLeft(ra, "0")+"0", 10, 64)
			nb, _ := strconv.ParseUint(strings.TrimLeft(rb, "0")+"0", 10, 64)
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
		case da != db:
			if da {
				return 1
			}
			return -1
		default:
			if c := strings.Compare(ra, rb); c != 0 {
				return c
			}
		}
		a, b = resta, restb
	}
	return strings.Compare(a, b)
}

func leadingRun(s string) (run, rest string) {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
