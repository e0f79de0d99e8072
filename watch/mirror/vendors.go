package mirror

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Release is one artefact to publish: a local image file served as the vendor's file.
type Release struct {
	// Version is the vendor's version or build id ("20261120-1234", "0.6.3").
	Version string
	// Name is the artefact's file name as the vendor names it.
	Name string
	// Image is the local file served as the artefact.
	Image string
	// WrongDigest publishes a digest that does not match the bytes.
	WrongDigest bool
}

// digests returns the image's digests as the vendor would list them, spoiled when
// the release asks for a wrong digest.
func (m *Mirror) publishImage(p string, r Release) (Digests, error) {
	d, err := m.PutFile(p, r.Image)
	if err != nil {
		return Digests{}, err
	}
	if r.WrongDigest {
		flip := func(h string) string { return strings.Repeat("0", 8) + h[8:] }
		d.SHA256, d.SHA512 = flip(d.SHA256), flip(d.SHA512)
	}
	return d, nil
}

// Debian publishes a build in a Debian cloud suite directory (root, e.g.
// "/images/cloud/bookworm/"): ROOT/VERSION/NAME with ROOT/VERSION/SHA512SUMS in GNU
// form and, with a signer, SHA512SUMS.sign; the suite's index then lists the build.
func (m *Mirror) Debian(root string, r Release, s *Signer) error {
	dir := path.Join(root, r.Version) + "/"
	d, err := m.publishImage(dir+r.Name, r)
	if err != nil {
		return err
	}
	list := []byte(fmt.Sprintf("%s  %s\n", d.SHA512, r.Name))
	if s != nil {
		m.Put(dir+"SHA512SUMS.sign", s.Detached(list))
	}
	m.Put(dir+"SHA512SUMS", list)
	return nil
}

// Ubuntu adds a version of a product to a simplestreams mirror at root: the item
// (ftype) at ROOT/relPath, streams/v1/index.json naming the products file
// streams/v1/com.ubuntu.cloud:released:download.json, and with a signer the .sjson
// clear-signed twins of both.
func (m *Mirror) Ubuntu(root, product, arch, ftype, relPath string, r Release, s *Signer) error {
	root = strings.TrimSuffix(root, "/") + "/"
	d, err := m.publishImage(root+relPath, r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	st, _ := m.trees[root].(map[string]map[string]any)
	if st == nil {
		st = map[string]map[string]any{}
		m.trees[root] = st
	}
	if st[product] == nil {
		st[product] = map[string]any{}
	}
	st[product][r.Version] = map[string]any{
		"pubname": strings.ReplaceAll(product, ":", "-") + "-" + r.Version,
		"label":   "release",
		"items": map[string]any{ftype: map[string]any{
			"ftype": ftype, "path": relPath, "sha256": d.SHA256, "size": d.Size,
			"md5": strings.Repeat("0", 32),
		}},
	}
	products := map[string]any{}
	var names []string
	for p, versions := range st {
		names = append(names, p)
		products[p] = map[string]any{"arch": arch, "os": "ubuntu", "versions": versions}
	}
	m.mu.Unlock()
	sort.Strings(names)
	const contentID = "com.ubuntu.cloud:released:download"
	updated := "Tue, 01 Dec 2026 00:00:00 +0000"
	prodDoc, _ := json.MarshalIndent(map[string]any{
		"content_id": contentID, "datatype": "image-downloads", "format": "products:1.0",
		"updated": updated, "products": products,
	}, "", " ")
	indexDoc, _ := json.MarshalIndent(map[string]any{
		"format": "index:1.0", "updated": updated,
		"index": map[string]any{contentID: map[string]any{
			"datatype": "image-downloads", "format": "products:1.0", "updated": updated,
			"path": "streams/v1/" + contentID + ".json", "products": names,
		}},
	}, "", " ")
	m.Put(root+"streams/v1/"+contentID+".json", prodDoc)
	m.Put(root+"streams/v1/index.json", indexDoc)
	if s != nil {
		m.Put(root+"streams/v1/"+contentID+".sjson", s.ClearSigned(prodDoc))
		m.Put(root+"streams/v1/index.sjson", s.ClearSigned(indexDoc))
	}
	return nil
}

// Checksum adds a build to a CHECKSUM file listing many (checksumPath, e.g.
// "/centos/9-stream/x86_64/images/CHECKSUM"); the artefact is served beside it. BSD
// form ("# NAME: N bytes" then "SHA256 (NAME) = HEX") as CentOS, Rocky and Fedora
// write it, else GNU form as AlmaLinux does; clear-signed with a signer (Fedora).
func (m *Mirror) Checksum(checksumPath string, bsd bool, r Release, s *Signer) error {
	dir := checksumPath[:strings.LastIndexByte(checksumPath, '/')+1]
	d, err := m.publishImage(dir+r.Name, r)
	if err != nil {
		return err
	}
	var entry string
	if bsd {
		entry = fmt.Sprintf("# %s: %d bytes\nSHA256 (%s) = %s\n", r.Name, d.Size, r.Name, d.SHA256)
	} else {
		entry = fmt.Sprintf("%s  %s\n", d.SHA256, r.Name)
	}
	m.mu.Lock()
	lines, _ := m.trees[checksumPath].([]string)
	lines = append(lines, entry)
	m.trees[checksumPath] = lines
	m.mu.Unlock()
	doc := []byte(strings.Join(lines, ""))
	if s != nil {
		doc = s.ClearSigned(doc)
	}
	m.Put(checksumPath, doc)
	return nil
}

// Flatcar publishes a release in a channel's board directory (root, e.g.
// "/amd64-usr/"): ROOT/VERSION/NAME, its NAME.DIGESTS (MD5, SHA1 and SHA512 sections)
// and with a signer NAME.DIGESTS.asc (clear-signed), then points
// ROOT/current/version.txt at it.
func (m *Mirror) Flatcar(root string, r Release, s *Signer) error {
	root = strings.TrimSuffix(root, "/") + "/"
	dir := root + r.Version + "/"
	d, err := m.publishImage(dir+r.Name, r)
	if err != nil {
		return err
	}
	digests := []byte(fmt.Sprintf("# SHA256 HASH\n%s  %s\n# SHA512 HASH\n%s  %s\n", d.SHA256, r.Name, d.SHA512, r.Name))
	m.Put(dir+r.Name+".DIGESTS", digests)
	if s != nil {
		m.Put(dir+r.Name+".DIGESTS.asc", s.ClearSigned(digests))
	}
	major, _, _ := strings.Cut(r.Version, ".")
	m.Put(root+"current/version.txt", []byte(fmt.Sprintf(
		"FLATCAR_BUILD=%s\nFLATCAR_BRANCH=0\nFLATCAR_PATCH=0\nFLATCAR_VERSION=%s\nFLATCAR_VERSION_ID=%s\nFLATCAR_BUILD_ID=\"\"\nFLATCAR_SDK_VERSION=%s\n",
		major, r.Version, r.Version, r.Version)))
	return nil
}

// Cirros publishes a release under a CirrOS download root: ROOT/VERSION/NAME with
// ROOT/VERSION/SHA256SUMS (GNU form), then ROOT/version/released names it.
func (m *Mirror) Cirros(root string, r Release) error {
	root = strings.TrimSuffix(root, "/") + "/"
	dir := root + r.Version + "/"
	d, err := m.publishImage(dir+r.Name, r)
	if err != nil {
		return err
	}
	m.Put(dir+"SHA256SUMS", []byte(fmt.Sprintf("%s  %s\n", d.SHA256, r.Name)))
	m.Put(root+"version/released", []byte(r.Version+"\n"))
	return nil
}
