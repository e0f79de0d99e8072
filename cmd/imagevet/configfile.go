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
	rows := map[string]setting{}
	sections := map[string]bool{}
	for _, s := range settingsTable() {
		if s.Key != "" {
			rows[s.name()] = s
			sections[s.Section] = true
		}
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, &ConfigError{Path: path, Line: top.Line, Err: errors.New("want a mapping of sections and keys")}
	}
	var errs []error
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			name := k.Value
			if prefix != "" {
				name = prefix + "." + k.Value
			}
			row, known := rows[name]
			switch {
			case !known && prefix == "" && sections[k.Value] && v.Kind == yaml.MappingNode:
				walk(k.Value, v)
			case !known && prefix == "" && sections[k.Value] && v.Tag == "!!null": // a section of comments only
			case !known:
				errs = append(errs, &ConfigError{Path: path, Line: k.Line, Err: fmt.Errorf("unknown key %q", name)})
			case v.Kind == yaml.SequenceNode && row.Sep != "":
				var items []string
				for _, it := range v.Content {
					if it.Kind != yaml.ScalarNode {
						errs = append(errs, &ConfigError{Path: path, Line: it.Line, Err: fmt.Errorf("%s: want a list of strings", name)})
						continue
					}
					items = append(items, it.Value)
				}
				cf.values[name] = configValue{value: strings.Join(items, row.Sep), line: k.Line}
			case v.Kind == yaml.ScalarNode && v.Tag != "!!null":
				cf.values[name] = configValue{value: v.Value, line: k.Line}
			case v.Kind == yaml.ScalarNode: // key: (empty) leaves the default
			default:
				want := "a value"
				if row.Sep != "" {
					want = "a list"
				}
				errs = append(errs, &ConfigError{Path: path, Line: k.Line, Err: fmt.Errorf("%s: want %s", name, want)})
			}
		}
	}
	walk("", top)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cf, nil
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
