package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
)

// defaultConfigFile is read when it exists and neither --config nor
// IMAGEVET_CONFIG names another file.
const defaultConfigFile = "/etc/imagevet/imagevet.yaml"

// setting is one row of the settings table: a value a command reads from its
// IMAGEVET_* variable (or a flag, which wins) and from the configuration file,
// where it is Key in Section ("" for a top-level key). List values are YAML
// sequences in the file, joined with Sep into the variable's form.
type setting struct {
	Section, Key, Var string
	Commands          []string
	Sep               string
	Secret            bool
}

// settingsTable lists every setting the configuration file may hold; a key it
// lacks is an error naming file and line. Flags are each command's own (-h).
func settingsTable() []setting {
	// Commands reading NATS, those sharing the worker's vetting settings, and those
	// with logs.
	natsCommands := []string{"worker", "submit", "watch", "status", "serve", "publish", "jobs", "cancel", "queue"}
	vetCommands := []string{"worker", "run"}
	serviceLogging := []string{"worker", "run", "watch", "serve", "publish"}
	rows := []setting{
		{"nats", "url", "IMAGEVET_NATS_URL", natsCommands, "", true},
		{"nats", "creds", "IMAGEVET_NATS_CREDS", natsCommands, "", false},
		{"nats", "nkey", "IMAGEVET_NATS_NKEY", natsCommands, "", false},
		{"nats", "tls_ca", "IMAGEVET_NATS_TLS_CA", natsCommands, "", false},
		{"nats", "tls_cert", "IMAGEVET_NATS_TLS_CERT", natsCommands, "", false},
		{"nats", "tls_key", "IMAGEVET_NATS_TLS_KEY", natsCommands, "", false},
		{"", "state_dir", "IMAGEVET_STATE_DIR", []string{"worker", "run", "publish"}, "", false},
		{"", "image_roots", "IMAGEVET_IMAGE_ROOTS", []string{"worker", "run", "publish"}, ":", false},
		{"", "keyring", "IMAGEVET_KEYRING", vetCommands, "", false},
		{"", "clouds", "IMAGEVET_OS_CLOUD", []string{"publish"}, ",", false},
		{"log", "level", "IMAGEVET_LOG_LEVEL", serviceLogging, "", false},
		{"log", "json", "IMAGEVET_LOG_JSON", serviceLogging, "", false},
		{"queue", "ack_wait", "IMAGEVET_ACK_WAIT", []string{"worker", "queue"}, "", false},
		{"queue", "max_deliver", "IMAGEVET_MAX_DELIVER", []string{"worker", "queue"}, "", false},
		{"queue", "results_max_age", "IMAGEVET_RESULTS_MAX_AGE", []string{"worker", "queue"}, "", false},
		{"queue", "replicas", "IMAGEVET_REPLICAS", []string{"worker", "queue"}, "", false},
		{"run", "vcpus", "IMAGEVET_VCPUS", []string{"run"}, "", false},
		{"run", "memory_mib", "IMAGEVET_MEMORY_MIB", []string{"run"}, "", false},
		{"submit", "timeout", "IMAGEVET_SUBMIT_TIMEOUT", []string{"submit"}, "", false},
		{"cancel", "by", "IMAGEVET_CANCEL_BY", []string{"cancel"}, "", false},
		{"serve", "listen", "IMAGEVET_WEB_LISTEN", []string{"serve"}, "", false},
		{"serve", "tls_cert", "IMAGEVET_WEB_TLS_CERT", []string{"serve"}, "", false},
		{"serve", "tls_key", "IMAGEVET_WEB_TLS_KEY", []string{"serve"}, "", false},
		{"serve", "token_file", "IMAGEVET_WEB_TOKEN_FILE", []string{"serve"}, "", false},
		{"watch", "catalog", "IMAGEVET_CATALOG", []string{"watch"}, "", false},
		{"watch", "families", "IMAGEVET_WATCH_FAMILIES", []string{"watch"}, ",", false},
		{"watch", "interval", "IMAGEVET_WATCH_INTERVAL", []string{"watch"}, "", false},
		{"watch", "jitter", "IMAGEVET_WATCH_JITTER", []string{"watch"}, "", false},
		{"watch", "retry", "IMAGEVET_WATCH_RETRY", []string{"watch"}, "", false},
		{"watch", "request_timeout", "IMAGEVET_WATCH_REQUEST_TIMEOUT", []string{"watch"}, "", false},
		{"watch", "attempts", "IMAGEVET_WATCH_ATTEMPTS", []string{"watch"}, "", false},
		{"watch", "parallel", "IMAGEVET_WATCH_PARALLEL", []string{"watch"}, "", false},
		{"watch", "metrics", "IMAGEVET_METRICS_ADDR", []string{"watch"}, "", false},
		{"publish", "os_client_config_file", "OS_CLIENT_CONFIG_FILE", []string{"publish"}, "", false},
		{"publish", "os_timeout", "IMAGEVET_OS_TIMEOUT", []string{"publish"}, "", false},
		{"publish", "import_converts", "IMAGEVET_PUBLISH_IMPORT_CONVERTS", []string{"publish"}, "", false},
		{"publish", "upload_method", "IMAGEVET_PUBLISH_UPLOAD_METHOD", []string{"publish"}, "", false},
		{"publish", "ack_wait", "IMAGEVET_PUBLISH_ACK_WAIT", []string{"publish"}, "", false},
		{"publish", "retry_delay", "IMAGEVET_PUBLISH_RETRY_DELAY", []string{"publish"}, "", false},
		{"publish", "rotate_every", "IMAGEVET_PUBLISH_ROTATE_EVERY", []string{"publish"}, "", false},
	}
	worker := []struct{ key, v string }{
		{"worker_id", "IMAGEVET_WORKER_ID"}, {"accel", "IMAGEVET_ACCEL"}, {"libvirt_uri", "IMAGEVET_LIBVIRT_URI"},
		{"domain_prefix", "IMAGEVET_DOMAIN_PREFIX"}, {"cache_max", "IMAGEVET_CACHE_MAX"}, {"tcg_factor", "IMAGEVET_TCG_FACTOR"},
		{"max_total", "IMAGEVET_MAX_TOTAL"}, {"max_boot", "IMAGEVET_MAX_BOOT"}, {"max_cloud_init", "IMAGEVET_MAX_CLOUD_INIT"},
		{"max_command", "IMAGEVET_MAX_COMMAND"}, {"max_fetch", "IMAGEVET_MAX_FETCH"},
	}
	for _, w := range worker { // the worker's vetting settings, which run shares
		rows = append(rows, setting{Section: "worker", Key: w.key, Var: w.v, Commands: vetCommands})
	}
	daemon := []struct{ key, v string }{
		{"concurrency", "IMAGEVET_CONCURRENCY"}, {"memory_reserve_mib", "IMAGEVET_MEMORY_RESERVE_MIB"},
		{"memory_overhead_mib", "IMAGEVET_MEMORY_OVERHEAD_MIB"}, {"admission_hold", "IMAGEVET_ADMISSION_HOLD"},
		{"grace", "IMAGEVET_GRACE"}, {"nats_port", "IMAGEVET_NATS_PORT"}, {"nats_store", "IMAGEVET_NATS_STORE"},
		{"metrics", "IMAGEVET_METRICS_ADDR"},
	}
	for _, d := range daemon {
		rows = append(rows, setting{Section: "worker", Key: d.key, Var: d.v, Commands: []string{"worker"}})
	}
	return rows
}

// name is the setting's key as the file spells it: section.key, or key.
func (s setting) name() string {
	if s.Section == "" {
		return s.Key
	}
	return s.Section + "." + s.Key
}

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
		rows[s.name()] = s
		sections[s.Section] = true
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

// withConfig returns env whose Getenv falls back, for the settings command cmd
// reads, to the configuration file: flags > environment > file > default.
func withConfig(env Env, cmd string, cf *configFile) Env {
	if cf == nil || len(cf.values) == 0 {
		return env
	}
	byVar := map[string]string{}
	for _, s := range settingsTable() {
		if !slices.Contains(s.Commands, cmd) {
			continue
		}
		if v, ok := cf.values[s.name()]; ok {
			byVar[s.Var] = v.value
		}
	}
	lines := map[string]string{}
	for _, s := range settingsTable() {
		if v, ok := cf.values[s.name()]; ok && slices.Contains(s.Commands, cmd) {
			lines[s.Var] = fmt.Sprintf("%s:%d", cf.path, v.line)
		}
	}
	getenv := env.Getenv
	env.Getenv = func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return byVar[name]
	}
	env.Source = func(name string) string {
		if getenv(name) == "" && lines[name] != "" {
			return lines[name]
		}
		return "environment"
	}
	return env
}

// newFlagSet is every command's flag set: errors and help on env.Stderr, the help
// its usage text and then printFlags.
func newFlagSet(name, usage string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() { fmt.Fprint(env.Stderr, usage); printFlags(env.Stderr, fs, env) }
	return fs
}

// flagVariable finds the variable a flag's usage names first: IMAGEVET_X or OS_X.
var flagVariable = regexp.MustCompile(`\b(IMAGEVET_[A-Z0-9_]*[A-Z0-9]|OS_[A-Z0-9_]*[A-Z0-9])\b`)

// printFlags is every command's flag help, one format: each flag, its usage with
// the variable it falls back to, and its value before the command line (the
// default, or the variable's value) saying where that came from.
func printFlags(w io.Writer, fs *flag.FlagSet, env Env) {
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		head := "  -" + f.Name
		if kind != "" {
			head += " " + kind
		}
		from, value := "default", f.Value.String()
		if m := flagVariable.FindStringSubmatch(f.Usage); m != nil && env.Getenv(m[1]) != "" {
			from = "from " + m[1]
			if env.Source != nil && env.Source(m[1]) != "environment" {
				from = "from " + env.Source(m[1])
			}
			if value == "" { // a flag parsing its own values (lists, sizes)
				value = env.Getenv(m[1])
			}
		}
		if value == "" && f.DefValue == "" { // its usage says the default
			value = "-"
		} else {
			value = strconv.Quote(maskURLs(value))
		}
		fmt.Fprintf(w, "%s\n    \t%s\n    \t= %s, %s\n", head, strings.ReplaceAll(usage, "\n", "\n    \t"), value, from)
	})
}

// printEffective writes the settings cmd reads (every command's when cmd is ""),
// each with its effective value from the environment or the file and where it
// came from; unset ones keep the flag's default, which COMMAND -h shows.
// Passwords in URLs are masked.
func printEffective(w io.Writer, cmd string, env Env, cf *configFile) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVARIABLE\tVALUE\tFROM\tCOMMANDS")
	for _, s := range settingsTable() {
		if cmd != "" && !slices.Contains(s.Commands, cmd) {
			continue
		}
		value, from := "-", "default (see imagevet COMMAND -h)"
		if v := env.Getenv(s.Var); v != "" {
			value, from = v, "environment"
		} else if v, ok := cf.lookup(s.name()); ok {
			value, from = v.value, fmt.Sprintf("%s:%d", cf.path, v.line)
		}
		if s.Secret {
			value = maskURLs(value)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.name(), s.Var, value, from, strings.Join(s.Commands, ","))
	}
	tw.Flush()
}

func (cf *configFile) lookup(name string) (configValue, bool) {
	if cf == nil {
		return configValue{}, false
	}
	v, ok := cf.values[name]
	return v, ok
}

// maskURLs replaces the password of every URL in a comma-separated list.
func maskURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else { // a token
				u.User = url.User("xxxxx")
			}
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// cmdConfig is `imagevet config [COMMAND]`.
func cmdConfig(args []string, env Env, cf *configFile) int {
	known := map[string]bool{}
	var names []string
	for _, c := range commands() {
		known[c.name] = true
		names = append(names, c.name)
	}
	switch {
	case len(args) > 1 || (len(args) == 1 && strings.HasPrefix(args[0], "-")):
		fmt.Fprint(env.Stderr, "usage: imagevet config [COMMAND]\n\nPrints the settings COMMAND reads (every command's without one): the file key, the\nIMAGEVET_* variable, the effective value and where it came from (environment or\nFILE:LINE; a default otherwise, which COMMAND -h shows). URL passwords are masked.\n")
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return exitError
	case len(args) == 1 && !known[args[0]]:
		fmt.Fprintf(env.Stderr, "imagevet config: no command %q (commands: %s)\n", args[0], strings.Join(names, ", "))
		return exitError
	}
	cmd := ""
	if len(args) == 1 {
		cmd = args[0]
	}
	if cf != nil {
		fmt.Fprintf(env.Stdout, "configuration file: %s\n", cf.path)
	} else {
		fmt.Fprintln(env.Stdout, "configuration file: none")
	}
	printEffective(env.Stdout, cmd, env, cf)
	return 0
}
