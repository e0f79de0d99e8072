package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// defaultConfigFile is read when it exists and neither --config nor
// IMAGEVET_CONFIG names another file.
const defaultConfigFile = "/etc/imagevet/imagevet.yaml"

// configValue is one value read from the configuration file.
type configValue struct {
	value string
	line  int
}

// configFile is a parsed configuration file: values by setting name.
type configFile struct {
	path   string
	values map[string]configValue
}

// ConfigError is a configuration file that cannot be used: unreadable, not
// YAML, or holding a key the settings table lacks; it names the file and line.
type ConfigError struct {
	Path string
	Line int
	Err  error
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// loadConfig reads path strictly: every key must be a row of the settings table,
// lists only where the row is a list, scalars elsewhere.
func loadConfig(path string) (*configFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{Path: path, Err: err}
	}
	cf := &configFile{path: path, values: map[string]configValue{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ConfigError{Path: path, Err: err}
	}
	if len(doc.Content) == 0 { // an empty file, or only comments
		return cf, nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, &ConfigError{Path: path, Line: top.Line, Err: errors.New("want a mapping of sections and keys")}
	}
	r := newConfigReader(cf)
	r.mapping("", top)
	if err := errors.Join(r.errs...); err != nil {
		return nil, err
	}
	return cf, nil
}

// configReader fills a configFile with the values of the keys the settings table
// knows, and collects an error for each one it does not or cannot use.
type configReader struct {
	cf       *configFile
	rows     map[string]setting // by name as the file spells it (setting.name)
	sections map[string]bool
	errs     []error
}

func newConfigReader(cf *configFile) *configReader {
	r := &configReader{cf: cf, rows: map[string]setting{}, sections: map[string]bool{}}
	for _, s := range settingsTable() {
		if s.Key != "" {
			r.rows[s.name()] = s
			r.sections[s.Section] = true
		}
	}
	return r
}

// mapping reads the keys of m: the file's top level (prefix "") or a section's.
func (r *configReader) mapping(prefix string, m *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		name := k.Value
		if prefix != "" {
			name = prefix + "." + k.Value
		}
		row, known := r.rows[name]
		section := !known && prefix == "" && r.sections[k.Value]
		switch {
		case known:
			r.value(name, row, k, v)
		case section && v.Kind == yaml.MappingNode:
			r.mapping(k.Value, v)
		case section && v.Tag == "!!null": // a section of comments only
		default:
			r.fail(k.Line, "unknown key %q", name)
		}
	}
}

// value reads the value v of row's key k: a list where the row is a list, a
// scalar elsewhere; an empty one leaves the default.
func (r *configReader) value(name string, row setting, k, v *yaml.Node) {
	switch {
	case v.Kind == yaml.SequenceNode && row.Sep != "":
		var items []string
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode {
				r.fail(it.Line, "%s: want a list of strings", name)
				continue
			}
			items = append(items, it.Value)
		}
		r.cf.values[name] = configValue{value: strings.Join(items, row.Sep), line: k.Line}
	case v.Kind == yaml.ScalarNode && v.Tag != "!!null":
		r.cf.values[name] = configValue{value: v.Value, line: k.Line}
	case v.Kind == yaml.ScalarNode: // key: (empty) leaves the default
	default:
		want := "a value"
		if row.Sep != "" {
			want = "a list"
		}
		r.fail(k.Line, "%s: want %s", name, want)
	}
}

// fail records a problem at line of the file.
func (r *configReader) fail(line int, format string, args ...any) {
	r.errs = append(r.errs, &ConfigError{Path: r.cf.path, Line: line, Err: fmt.Errorf(format, args...)})
}

// configPath is the configuration file a command reads and whether it must
// exist: --config, else IMAGEVET_CONFIG, else the default when it exists. args
// without --config are returned.
func configPath(args []string, getenv func(string) string) (path string, required bool, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return path, required, append(rest, args[i:]...), nil
		case a == "--config" || a == "-config":
			if i+1 >= len(args) {
				return "", false, nil, errors.New("--config: needs a file")
			}
			path, required = args[i+1], true
			i++
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			path, required = a[strings.Index(a, "=")+1:], true
		default:
			rest = append(rest, a)
		}
	}
	if path == "" {
		if path = getenv("IMAGEVET_CONFIG"); path != "" {
			required = true
		} else {
			path = defaultConfigFile
		}
	}
	return path, required, rest, nil
}

func (cf *configFile) lookup(name string) (configValue, bool) {
	if cf == nil {
		return configValue{}, false
	}
	v, ok := cf.values[name]
	return v, ok
}
