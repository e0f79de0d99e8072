// Package ignition renders the Ignition config (spec 3.x JSON) that Flatcar-style
// images read on first boot instead of cloud-config: the job's login user with the
// per-job client keys, the hostname as /etc/hostname, and the job's own Ignition
// config merged in. The config travels as user_data on the ConfigDrive and from the
// metadata service; the seed layout itself is the cloudinit package's.
//
// # The merge rule
//
// A job's config is decoded strictly into the typed structs of this package (an
// unknown field, a wrong type or trailing data is an error), must name a stable spec
// version from 3.0.0 to 3.5.0, and is merged like a job's cloud_config:
//
//   - the version is the job's (its fields are written for it), else DefaultVersion;
//   - ours wins on the login user's keys and the hostname: the login user is ours
//     first, with the job's keys added after ours (duplicates removed) and the job's
//     other fields for that user kept; the job's /etc/hostname file is dropped;
//   - every other user, file and section passes through as the job wrote it.
//
// ignition.config.merge and ignition.config.replace are refused: a config fetched at
// boot could take back the keys and hostname the worker checks.
package ignition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"path"
	"reflect"
	"slices"
	"strings"
)

// DefaultVersion is the spec version of a config without a job part: 3.0.0, which
// every Ignition since 2.0 reads, and all the fields imagevet sets exist in it.
const DefaultVersion = "3.0.0"

// HostnamePath is where Ignition writes the hostname.
const HostnamePath = "/etc/hostname"

// Stable spec versions a job's config may name.
var supportedVersions = []string{"3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"}

// Base is what imagevet itself provisions.
type Base struct {
	// User is the login user the worker signs in as (e.g. core).
	User string
	// AuthorizedKeys are the authorized_keys lines of the job's client keys.
	AuthorizedKeys []string
	// Hostname is written to /etc/hostname.
	Hostname string
}

// Parse strictly decodes a job's Ignition config and checks its version. An empty or
// blank input is no config (nil, nil). Errors name the offending JSON path where the
// decoder says it.
func Parse(b []byte) (*Config, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	var head struct {
		Ignition *struct {
			Version *string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("must be a JSON object with an \"ignition\" section: %w", err)
	}
	if head.Ignition == nil || head.Ignition.Version == nil {
		return nil, errors.New("ignition.version: required (a spec 3.x version such as \"3.3.0\")")
	}
	if err := checkVersion(*head.Ignition.Version); err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if p := unknownField(generic, reflect.TypeFor[Config](), ""); p != "" {
		return nil, fmt.Errorf("%s: unknown field (not in Ignition spec 3.0 to 3.5)", p)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON object")
	}
	if c.Ignition.Config != nil && c.Ignition.Config.Replace != nil {
		return nil, errors.New("ignition.config.replace is not supported: the replacing config would drop the login keys and hostname imagevet checks")
	}
	if c.Ignition.Config != nil && len(c.Ignition.Config.Merge) > 0 {
		return nil, errors.New("ignition.config.merge is not supported: a merged config could take back the login keys and hostname imagevet checks; write its content inline")
	}
	return &c, nil
}

func checkVersion(v string) error {
	if slices.Contains(supportedVersions, v) {
		return nil
	}
	major, _, _ := strings.Cut(v, ".")
	switch {
	case major == "1" || major == "2":
		return fmt.Errorf("ignition.version: %q is spec %s.x, which Ignition 2.x and later refuse; give a spec 3.x config", v, major)
	case strings.Contains(v, "experimental"):
		return fmt.Errorf("ignition.version: %q is experimental; give a stable version (%s)", v, strings.Join(supportedVersions, ", "))
	}
	return fmt.Errorf("ignition.version: %q is not a supported spec version (%s)", v, strings.Join(supportedVersions, ", "))
}

// decodeError rewrites encoding/json's errors into "path: problem" where it can.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(config)"
		}
		return fmt.Errorf("%s: %s where %s is wanted", field, te.Value, jsonKind(te.Type.Kind().String()))
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s (not in Ignition spec 3.x)", rest)
	}
	return errors.New(strings.TrimPrefix(msg, "json: "))
}

// unknownField returns the JSON path of the first key in v that t does not define,
// or "". Keys are visited in sorted order so the answer is stable.
func unknownField(v any, t reflect.Type, at string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return "" // a type error, reported by the decoder
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			p := k
			if at != "" {
				p = at + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				return p
			}
			if bad := unknownField(m[k], ft, p); bad != "" {
				return bad
			}
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return ""
		}
		for i, item := range list {
			if bad := unknownField(item, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); bad != "" {
				return bad
			}
		}
	}
	return ""
}

// jsonFields maps the JSON names of t's fields (embedded structs flattened) to types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = f.Type
		}
	}
	return out
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64":
		return "an integer"
	case "bool":
		return "a boolean"
	case "slice":
		return "a list"
	case "struct", "map":
		return "an object"
	}
	return goKind
}

// Merge returns the config imagevet hands the guest: base merged with the job's
// config (nil for none), per the package doc's rule.
func Merge(base Base, job *Config) Config {
	out := Config{Ignition: Ignition{Version: DefaultVersion}}
	if job != nil {
		out = *job
	}
	user := User{Name: base.User}
	rest := []User(nil)
	if out.Passwd != nil {
		for _, u := range out.Passwd.Users {
			if u.Name == base.User {
				user = u
				continue
			}
			rest = append(rest, u)
		}
	}
	keys := slices.Clone(base.AuthorizedKeys)
	seen := map[string]bool{}
	for _, k := range keys {
		seen[strings.TrimSpace(k)] = true
	}
	for _, k := range user.SSHAuthorizedKeys {
		if !seen[strings.TrimSpace(k)] {
			seen[strings.TrimSpace(k)] = true
			keys = append(keys, k)
		}
	}
	user.SSHAuthorizedKeys = keys
	user.ShouldExist = nil // the login user must exist
	passwd := Passwd{Users: append([]User{user}, rest...)}
	if out.Passwd != nil {
		passwd.Groups = out.Passwd.Groups
	}
	out.Passwd = &passwd

	storage := Storage{}
	if out.Storage != nil {
		storage = *out.Storage
	}
	files := []File{hostnameFile(base.Hostname)}
	for _, f := range storage.Files {
		if path.Clean(f.Path) != HostnamePath {
			files = append(files, f)
		}
	}
	storage.Files = files
	out.Storage = &storage
	return out
}

func hostnameFile(host string) File {
	src := "data:," + url.PathEscape(host+"\n")
	mode, overwrite := 0o644, true
	return File{
		Node:     Node{Path: HostnamePath, Overwrite: &overwrite},
		Contents: &Resource{Source: &src},
		Mode:     &mode,
	}
}

// Render merges and encodes the config as indented JSON.
func Render(base Base, job *Config) ([]byte, error) {
	c := Merge(base, job)
	return Marshal(c)
}

// Marshal encodes a config as indented JSON with a final newline.
func Marshal(c Config) ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode ignition config: %w", err)
	}
	return append(b, '\n'), nil
}

// Expected lists what a guest provisioned with c must have: the users that should
// exist and the paths of the files, directories and links it writes.
func (c Config) Expected() (users, paths []string) {
	if c.Passwd != nil {
		for _, u := range c.Passwd.Users {
			if u.ShouldExist == nil || *u.ShouldExist {
				users = append(users, u.Name)
			}
		}
	}
	if c.Storage != nil {
		for _, f := range c.Storage.Files {
			paths = append(paths, f.Path)
		}
		for _, d := range c.Storage.Directories {
			paths = append(paths, d.Path)
		}
		for _, l := range c.Storage.Links {
			paths = append(paths, l.Path)
		}
	}
	return users, paths
}
