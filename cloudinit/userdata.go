package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/imagevet/imagevet/cloudinit/ignition"
)

// cloudConfigHeader is the first line cloud-init requires of cloud-config user-data.
const cloudConfigHeader = "#cloud-config"

// cloudConfig is the cloud-config imagevet itself sets. Field order is output order.
type cloudConfig struct {
	Hostname                string   `yaml:"hostname"`
	FQDN                    string   `yaml:"fqdn,omitempty"`
	PreserveHostname        bool     `yaml:"preserve_hostname"`
	SSHAuthorizedKeys       []string `yaml:"ssh_authorized_keys"`
	SSHKeys                 sshKeys  `yaml:"ssh_keys"`
	SSHDeleteKeys           bool     `yaml:"ssh_deletekeys"`
	SSHGenKeyTypes          []string `yaml:"ssh_genkeytypes"`
	DisableRoot             bool     `yaml:"disable_root"`
	PackageUpdate           bool     `yaml:"package_update"`
	PackageUpgrade          bool     `yaml:"package_upgrade"`
	PackageRebootIfRequired bool     `yaml:"package_reboot_if_required"`
}

// sshKeys is cloud-config's ssh_keys: the guest's host keys.
type sshKeys struct {
	ED25519Private string `yaml:"ed25519_private"`
	ED25519Public  string `yaml:"ed25519_public"`
	RSAPrivate     string `yaml:"rsa_private"`
	RSAPublic      string `yaml:"rsa_public"`
}

// ownedKeys are top-level cloud-config keys whose job value is dropped: the worker's
// hostname and host-key checks depend on them. ssh_authorized_keys is merged instead.
var ownedKeys = map[string]bool{
	"hostname":          true,
	"fqdn":              true,
	"preserve_hostname": true,
	"ssh_keys":          true,
	"ssh_deletekeys":    true,
}

const authorizedKeysKey = "ssh_authorized_keys"

// maxExpandedNodes bounds the YAML nodes a job's cloud-config may expand to once its
// aliases are resolved.
const maxExpandedNodes = 1 << 18

func (s Spec) ours() cloudConfig {
	host, _, dotted := strings.Cut(s.Hostname, ".")
	cfg := cloudConfig{
		Hostname:          host,
		PreserveHostname:  false,
		SSHAuthorizedKeys: s.Keys.AuthorizedKeys(),
		SSHKeys:           s.Keys.sshKeys(),
		SSHDeleteKeys:     true,
		SSHGenKeyTypes:    []string{"ed25519", "rsa"},
		DisableRoot:       true,
	}
	if dotted {
		cfg.FQDN = s.Hostname
	}
	return cfg
}

// UserData renders the #cloud-config user-data: ours merged with Spec.CloudConfig.
func (s Spec) UserData() ([]byte, error) {
	job, err := s.check()
	if err != nil {
		return nil, err
	}
	return s.userData(job)
}

// userData renders user-data for a checked spec and its parsed job cloud-config:
// #cloud-config, or an Ignition config for Ignition provisioning.
func (s Spec) userData(job *yaml.Node) ([]byte, error) {
	if s.provisioning() == Ignition {
		c, err := s.ignitionConfig()
		if err != nil {
			return nil, err
		}
		b, err := ignition.Marshal(c)
		if err != nil {
			return nil, err
		}
		if len(b) > MaxUserDataSize {
			return nil, fieldErr("ignition_config", "the merged Ignition config is %d bytes, at most %d allowed", len(b), MaxUserDataSize)
		}
		return b, nil
	}
	var ours yaml.Node
	if err := ours.Encode(s.ours()); err != nil {
		return nil, fmt.Errorf("encode cloud-config: %w", err)
	}
	merged := &ours
	if job != nil {
		merged = mergeConfig(&ours, job)
	}
	var buf bytes.Buffer
	buf.WriteString(cloudConfigHeader + "\n")
	if err := encodeYAML(&buf, merged); err != nil {
		return nil, fmt.Errorf("encode cloud-config: %w", err)
	}
	// Safety net: what we hand cloud-init must parse back as one mapping.
	var check map[string]any
	if err := yaml.Unmarshal(buf.Bytes(), &check); err != nil {
		return nil, &FieldError{Field: "cloud_config", Err: fmt.Errorf("merged cloud-config does not parse: %w", err)}
	}
	return buf.Bytes(), nil
}

// Ignition returns the Ignition config an Ignition seed carries: the login
// user with the client keys and the hostname, merged with the job's IgnitionConfig.
// The worker checks the guest against it.
func (s Spec) Ignition() (ignition.Config, error) {
	if err := s.Validate(); err != nil {
		return ignition.Config{}, err
	}
	if s.provisioning() != Ignition {
		return ignition.Config{}, fieldErr("provisioning", "%q: no Ignition config", s.provisioning())
	}
	return s.ignitionConfig()
}

func (s Spec) ignitionConfig() (ignition.Config, error) {
	job, err := ignition.Parse(s.IgnitionConfig)
	if err != nil {
		return ignition.Config{}, &FieldError{Field: "ignition_config", Err: err}
	}
	return ignition.Merge(ignition.Base{User: s.user(), AuthorizedKeys: s.Keys.AuthorizedKeys(), Hostname: s.Hostname}, job), nil
}

func encodeYAML(w io.Writer, v any) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return enc.Close()
}

// parseJobConfig parses a job's cloud-config into its top-level mapping node with every
// alias resolved. nil, nil means there is nothing to merge (empty or only comments).
func parseJobConfig(b []byte) (*yaml.Node, error) {
	return parseCloudConfig("cloud_config", b)
}

// parseCloudConfig is parseJobConfig for the named Spec field.
func parseCloudConfig(field string, b []byte) (*yaml.Node, error) {
	expanded, err := decodeCloudConfig(b)
	if err == nil && expanded != nil {
		err = checkTopLevel(expanded)
	}
	if err != nil {
		return nil, &FieldError{Field: field, Err: err}
	}
	return expanded, nil
}

// decodeCloudConfig decodes a cloud-config into its top-level mapping node with
// every alias resolved; nil, nil when it holds nothing (empty, only comments, or
// null).
func decodeCloudConfig(b []byte) (*yaml.Node, error) {
	b, err := cloudConfigBody(b)
	if err != nil {
		return nil, err
	}
	root, err := decodeOneMapping(b)
	if err != nil || root == nil {
		return nil, err
	}
	budget := maxExpandedNodes
	return expandAliases(root, &budget, 0)
}

// cloudConfigBody is the YAML of user-data b, without its BOM and #cloud-config
// header: user-data of a size and encoding cloud-init takes, and none of its other
// kinds (scripts, includes, MIME…).
func cloudConfigBody(b []byte) ([]byte, error) {
	if len(b) > MaxUserDataSize {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(b), MaxUserDataSize)
	}
	if !utf8.Valid(b) {
		return nil, errors.New("not valid UTF-8")
	}
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	first, rest, _ := bytes.Cut(b, []byte("\n"))
	first = bytes.TrimRight(first, " \t\r")
	switch {
	case string(first) == cloudConfigHeader:
		return rest, nil
	case bytes.HasPrefix(first, []byte("#!")):
		return nil, errors.New("shell scripts are not supported, give a #cloud-config YAML mapping")
	case bytes.HasPrefix(first, []byte("#include")), bytes.HasPrefix(first, []byte("## template")),
		bytes.HasPrefix(first, []byte("#cloud-boothook")), bytes.HasPrefix(first, []byte("#part-handler")),
		bytes.HasPrefix(bytes.ToLower(first), []byte("content-type:")), bytes.HasPrefix(first, []byte("MIME-Version:")):
		return nil, fmt.Errorf("%q user-data is not supported, give a #cloud-config YAML mapping", first)
	}
	return b, nil
}

// decodeOneMapping decodes b, which must hold at most one YAML document, into
// its root mapping node (an alias resolved); nil, nil when the document is
// empty or null.
func decodeOneMapping(b []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		return nil, errors.New("more than one YAML document")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.AliasNode {
		root = root.Alias
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("must be a YAML mapping, got %s", kindName(root))
	}
	// Decoding into Go values catches what the node tree lets through: duplicate keys,
	// excessive aliasing, bad merge keys.
	var check map[string]any
	if err := root.Decode(&check); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	return root, nil
}

// checkTopLevel refuses top-level keys the merge cannot take (not strings, merge
// keys) and authorized keys that are not a list of strings.
func checkTopLevel(m *yaml.Node) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("top-level key at line %d is a %s, want a string", k.Line, kindName(k))
		}
		if k.Tag == "!!merge" {
			// A merged mapping could smuggle in keys we own; say so rather than guess.
			return fmt.Errorf("top-level merge key << at line %d is not supported, write the keys out", k.Line)
		}
	}
	v, ok := lookup(m, authorizedKeysKey)
	if !ok {
		return nil
	}
	if v.Kind != yaml.SequenceNode && !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
		return fmt.Errorf("%s must be a list of strings, got %s", authorizedKeysKey, kindName(v))
	}
	for _, item := range v.Content {
		if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
			return fmt.Errorf("%s must be a list of strings, item at line %d is %s", authorizedKeysKey, item.Line, kindName(item))
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "sequence"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return "scalar " + strings.TrimPrefix(n.Tag, "!!")
	case yaml.AliasNode:
		return "alias"
	case yaml.DocumentNode:
		return "document"
	}
	return "empty node"
}

// expandAliases deep-copies n with every alias replaced by a copy of its target and
// anchors dropped, so merged output never refers to an anchor that moved or was dropped.
func expandAliases(n *yaml.Node, budget *int, depth int) (*yaml.Node, error) {
	if *budget--; *budget < 0 {
		return nil, fmt.Errorf("more than %d YAML nodes once aliases are expanded", maxExpandedNodes)
	}
	if depth > 1000 {
		return nil, errors.New("nested too deeply")
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil, errors.New("alias without anchor")
		}
		return expandAliases(n.Alias, budget, depth+1)
	}
	c := *n
	c.Anchor = ""
	c.Alias = nil
	if n.Content != nil {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, child := range n.Content {
			var err error
			if c.Content[i], err = expandAliases(child, budget, depth+1); err != nil {
				return nil, err
			}
		}
	}
	return &c, nil
}

func lookup(m *yaml.Node, key string) (*yaml.Node, bool) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1], true
		}
	}
	return nil, false
}

// mergeConfig merges the job's top-level mapping into ours; see the package doc.
func mergeConfig(ours, job *yaml.Node) *yaml.Node {
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	return mergeEntries(out, ours, job, func(k, v *yaml.Node) bool {
		switch {
		case ownedKeys[k.Value]:
			return true
		case k.Value == authorizedKeysKey:
			mine, _ := lookup(out, authorizedKeysKey)
			addAuthorizedKeys(mine, v)
			return true
		}
		return false
	})
}

// addAuthorizedKeys appends to mine, our list of authorized keys, the job's keys
// it does not hold yet.
func addAuthorizedKeys(mine, job *yaml.Node) {
	seen := map[string]bool{}
	for _, item := range mine.Content {
		seen[strings.TrimSpace(item.Value)] = true
	}
	for _, item := range job.Content {
		if key := strings.TrimSpace(item.Value); !seen[key] {
			seen[key] = true
			mine.Content = append(mine.Content, item)
		}
	}
}

// mergeValue merges a job value into one of our defaults: mappings merge key by key,
// anything else is the job's.
func mergeValue(ours, job *yaml.Node) *yaml.Node {
	if ours.Kind != yaml.MappingNode || job.Kind != yaml.MappingNode {
		return job
	}
	return mergeEntries(&yaml.Node{Kind: yaml.MappingNode, Tag: ours.Tag, Style: ours.Style}, ours, job, nil)
}

// mergeEntries fills the mapping out with ours' entries, then with each of job's
// that took (when set) does not take itself: a key of ours gets both values
// merged (mergeValue), a new key is appended.
func mergeEntries(out, ours, job *yaml.Node, took func(k, v *yaml.Node) bool) *yaml.Node {
	out.Content = append(out.Content, ours.Content...)
	oursAt := map[string]int{}
	for i := 0; i+1 < len(ours.Content); i += 2 {
		oursAt[ours.Content[i].Value] = i
	}
	for i := 0; i+1 < len(job.Content); i += 2 {
		k, v := job.Content[i], job.Content[i+1]
		if took != nil && took(k, v) {
			continue
		}
		if idx, ok := oursAt[k.Value]; ok {
			out.Content[idx+1] = mergeValue(out.Content[idx+1], v)
			continue
		}
		out.Content = append(out.Content, k, v)
	}
	return out
}
