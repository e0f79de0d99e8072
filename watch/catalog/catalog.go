// Package catalog reads the catalog of image families `imagevet watch` follows: for
// each family its stable name, the vendor feed its releases come from, and the job
// template each release is vetted with, including where and how it is published.
//
// A catalog is one YAML file or a directory of them (*.yaml, *.yml, read in name
// order), each holding a "families" mapping keyed by the family's key ("debian-12").
// Decoding is strict, and every problem is reported with the file, the line and the
// field: unknown fields, wrong types, unknown feed kinds, a job template that would
// not make a valid job. See catalog/README.md for the schema.
package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/watch/feed"
)

// Family is one image family: one vendor artefact followed release after release.
type Family struct {
	// Key is the family's catalog key ("debian-12"): the job's publish.family and the
	// key of its release record.
	Key string
	// Name is the stable image name users pick ("Debian 12 Bookworm"): the job's
	// publish.name.
	Name string
	// Feed says where releases come from.
	Feed Feed
	// Job is the template each release is vetted with: every field but the id, the
	// image source and checksum, and the publication's family, release and date,
	// which come from the release.
	Job jobs.Job
	// File and Line locate the family in the catalog, for messages.
	File string
	Line int
}

// Feed is a family's vendor feed (see package feed for each kind's layout).
type Feed struct {
	Kind     string `yaml:"kind"`
	URL      string `yaml:"url"`
	Arch     string `yaml:"arch"`
	Artefact string `yaml:"artefact"`
	// Product is the simplestreams product id (kind ubuntu only).
	Product string `yaml:"product"`
	// Keyring is an OpenPGP keyring file (relative to the catalog file) that must
	// have signed the feed's checksums; empty for vendors that do not sign.
	Keyring string `yaml:"keyring"`
}

// Error is one problem in a catalog, located.
type Error struct {
	File  string
	Line  int
	Field string // dotted path, "families.debian-12.feed.kind"
	Msg   string
}

func (e Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field == "" {
		return loc + ": " + e.Msg
	}
	return loc + ": " + e.Field + ": " + e.Msg
}

// familyDoc is one family as written.
type familyDoc struct {
	Name    string    `yaml:"name"`
	Feed    Feed      `yaml:"feed"`
	Job     yaml.Node `yaml:"job"`
	Publish yaml.Node `yaml:"publish"`
}

type fileDoc struct {
	Families map[string]familyDoc `yaml:"families"`
}

// MaxFileSize bounds one catalog file.
const MaxFileSize = 4 << 20

// Load reads a catalog file, or every *.yaml/*.yml file of a directory, and returns
// its families ordered by key. All problems are returned at once, joined.
func Load(path string) ([]Family, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	files := []string{path}
	if st.IsDir() {
		files = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("catalog %s: no *.yaml files", path)
		}
	}
	var all []Family
	var errs []error
	seen := map[string]Family{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("catalog: %w", err))
			continue
		}
		fams, err := Parse(f, data)
		if err != nil {
			errs = append(errs, err)
		}
		for _, fam := range fams {
			if prev, ok := seen[fam.Key]; ok {
				errs = append(errs, Error{File: fam.File, Line: fam.Line, Field: "families." + fam.Key,
					Msg: fmt.Sprintf("family defined twice (first at %s:%d)", prev.File, prev.Line)})
				continue
			}
			seen[fam.Key] = fam
			all = append(all, fam)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Key < all[j].Key })
	return all, errors.Join(errs...)
}

// Parse reads one catalog file's content; file names it in errors and anchors
// relative keyring paths.
func Parse(file string, data []byte) ([]Family, error) {
	if len(data) > MaxFileSize {
		return nil, Error{File: file, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, "", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc fileDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, yamlError(file, "", err)
	}
	if len(doc.Families) == 0 {
		return nil, Error{File: file, Line: 1, Field: "families", Msg: "no families"}
	}
	var out []Family
	var errs []error
	for key, fd := range doc.Families {
		fam, err := build(file, &root, key, fd)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, fam)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return out, errors.Join(errs...)
}

// build checks one family and makes its job template.
func build(file string, root *yaml.Node, key string, fd familyDoc) (Family, error) {
	base := "families." + key
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, Error{File: file, Line: lineOf(root, append([]string{"families", key}, splitPath(field)...)...), Field: joinField(base, field), Msg: fmt.Sprintf(format, args...)})
	}
	fam := Family{Key: key, Name: strings.TrimSpace(fd.Name), Feed: fd.Feed, File: file, Line: lineOf(root, "families", key)}
	if !jobs.ValidFamily(key) {
		bad("", "family keys are 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if fam.Name == "" || len(fam.Name) > 255 {
		bad("name", "required, at most 255 characters")
	}
	fd.Feed.check(bad)
	if k := fd.Feed.Keyring; k != "" && !filepath.IsAbs(k) {
		fam.Feed.Keyring = filepath.Join(filepath.Dir(file), k)
	}
	job, jobErrs := template(file, root, key, fd)
	errs = append(errs, jobErrs...)
	fam.Job = job
	fam.Job.Publish.Name = fam.Name
	fam.Job.Publish.Family = key
	return fam, errors.Join(errs...)
}

// check reports through bad (field, message) what the feed lacks or gets wrong
// for its kind.
func (f Feed) check(bad func(field, format string, args ...any)) {
	switch {
	case f.Kind == "":
		bad("feed.kind", "required (one of %s)", strings.Join(feed.Kinds, ", "))
	case !slices.Contains(feed.Kinds, f.Kind):
		bad("feed.kind", "%q: must be one of %s", f.Kind, strings.Join(feed.Kinds, ", "))
	}
	if !strings.HasPrefix(f.URL, "https://") && !strings.HasPrefix(f.URL, "http://") {
		bad("feed.url", "%q: must be an https:// (or http://) URL", f.URL)
	}
	if f.Arch == "" {
		bad("feed.arch", "required (the vendor's name for it: amd64, x86_64…)")
	}
	if f.Artefact == "" {
		bad("feed.artefact", "required")
	}
	switch f.Kind {
	case feed.KindUbuntu:
		if f.Product == "" {
			bad("feed.product", "required for an ubuntu feed (e.g. com.ubuntu.cloud:server:24.04:{arch})")
		}
	case feed.KindChecksum:
		if strings.Count(f.Artefact, "{version}") != 1 {
			bad("feed.artefact", "%q: a checksum feed's artefact holds {version} exactly once", f.Artefact)
		}
	case feed.KindDebian:
		if !strings.Contains(f.Artefact, "{version}") {
			bad("feed.artefact", "%q: Debian names artefacts after the build; use {version}", f.Artefact)
		}
	}
	if f.Kind != feed.KindUbuntu && f.Product != "" {
		bad("feed.product", "only an ubuntu feed has a product")
	}
	if f.Keyring != "" && !feed.Signed(f.Kind) {
		bad("feed.keyring", "a %s feed is not signed by its vendor", f.Kind)
	}
}

// Placeholders the template is validated with; the watcher replaces them.
const (
	placeholderID     = "template"
	placeholderSource = "https://vendor.invalid/image"
	placeholderDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
)

// template turns the family's job and publish sections into a job and validates it
// with the job's own strict decoder, mapping its field paths back to catalog lines.
func template(file string, root *yaml.Node, key string, fd familyDoc) (jobs.Job, []error) {
	base := "families." + key
	var errs []error
	doc := map[string]any{}
	if fd.Job.Kind != 0 {
		if err := fd.Job.Decode(&doc); err != nil {
			return jobs.Job{}, []error{yamlError(file, base+".job", err)}
		}
	}
	for _, owned := range []string{"version", "id"} {
		if _, ok := doc[owned]; ok {
			errs = append(errs, Error{File: file, Line: lineOf(root, "families", key, "job", owned), Field: base + ".job." + owned,
				Msg: "set by the watcher for each release"})
		}
	}
	img, _ := doc["image"].(map[string]any)
	if img == nil {
		img = map[string]any{}
	}
	for _, owned := range []string{"source", "checksum", "sums_url", "sums_name"} {
		if _, ok := img[owned]; ok {
			errs = append(errs, Error{File: file, Line: lineOf(root, "families", key, "job", "image", owned), Field: base + ".job.image." + owned,
				Msg: "comes from the feed"})
		}
	}
	if _, ok := doc["publish"]; ok {
		errs = append(errs, Error{File: file, Line: lineOf(root, "families", key, "job", "publish"), Field: base + ".job.publish",
			Msg: "write the publication in the family's publish section"})
	}
	pub := map[string]any{}
	if fd.Publish.Kind != 0 {
		if err := fd.Publish.Decode(&pub); err != nil {
			return jobs.Job{}, append(errs, yamlError(file, base+".publish", err))
		}
	}
	for _, owned := range []string{"name", "family", "release", "released_at"} {
		if _, ok := pub[owned]; ok {
			errs = append(errs, Error{File: file, Line: lineOf(root, "families", key, "publish", owned), Field: base + ".publish." + owned,
				Msg: "set by the watcher from the family and the release"})
		}
	}
	if len(errs) > 0 {
		return jobs.Job{}, errs
	}
	if _, ok := img["format"]; !ok {
		img["format"] = jobs.FormatQCOW2
	}
	img["source"], img["checksum"] = placeholderSource, placeholderDigest
	pub["name"], pub["family"] = "template", key
	doc["version"], doc["id"], doc["image"], doc["publish"] = jobs.Version, placeholderID, img, pub
	data, err := json.Marshal(doc)
	if err != nil {
		return jobs.Job{}, []error{Error{File: file, Line: lineOf(root, "families", key, "job"), Field: base + ".job", Msg: err.Error()}}
	}
	job, err := jobs.DecodeJob(data)
	var inv *jobs.InvalidError
	if errors.As(err, &inv) {
		for _, p := range inv.Problems {
			section, rest := "job", p.Path
			if r, ok := strings.CutPrefix(p.Path, "publish"); ok {
				section, rest = "publish", strings.TrimPrefix(r, ".")
			}
			path := append([]string{"families", key, section}, splitPath(rest)...)
			errs = append(errs, Error{File: file, Line: lineOf(root, path...), Field: joinField(base+"."+section, rest), Msg: p.Msg})
		}
		return jobs.Job{}, errs
	}
	if err != nil {
		return jobs.Job{}, []error{Error{File: file, Line: lineOf(root, "families", key, "job"), Field: base + ".job", Msg: err.Error()}}
	}
	job.ID, job.Image.Source, job.Image.Checksum = "", "", ""
	return job, nil
}

// yamlError turns a yaml error ("yaml: line 7: …", or an unmarshal error listing
// lines) into located errors.
func yamlError(file, field string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, e := range te.Errors {
			errs = append(errs, located(file, field, e))
		}
		return errors.Join(errs...)
	}
	return located(file, field, strings.TrimPrefix(err.Error(), "yaml: "))
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

func located(file, field, msg string) error {
	e := Error{File: file, Field: field, Msg: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &e.Line)
		e.Msg = m[2]
	}
	e.Msg = strings.ReplaceAll(e.Msg, "catalog.", "")
	return e
}

// lineOf finds the line of the value at path below the document root (keys of
// mappings; [N] indexes a sequence), or of the deepest node found on the way.
func lineOf(root *yaml.Node, path ...string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		if p == "" {
			continue
		}
		next := (*yaml.Node)(nil)
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line = n.Content[i].Line
					next = n.Content[i+1]
				}
			}
		case yaml.SequenceNode:
			var idx int
			if _, err := fmt.Sscanf(p, "[%d]", &idx); err == nil && idx >= 0 && idx < len(n.Content) {
				next = n.Content[idx]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// splitPath splits a job field path ("commands[1].run") into lookup steps.
func splitPath(p string) []string {
	var out []string
	for _, part := range strings.Split(p, ".") {
		if part == "" {
			continue
		}
		if i := strings.IndexByte(part, '['); i > 0 {
			out = append(out, part[:i], part[i:])
			continue
		}
		out = append(out, part)
	}
	return out
}

func joinField(base, field string) string {
	if field == "" {
		return base
	}
	return base + "." + field
}
