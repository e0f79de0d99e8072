package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "imagevet.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The file is strict: an unknown key, a list where a value belongs, a file that
// is not there: exit 2 naming file, line and key, before the command runs.
func TestConfigFileIsStrict(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown key", "worker:\n  accel: tcg\n  concurency: 2\n", ":3: unknown key \"worker.concurency\""},
		{"unknown section", "workers:\n  accel: tcg\n", ":1: unknown key \"workers\""},
		{"list for a value", "worker:\n  accel: [kvm, tcg]\n", ":2: worker.accel: want a value"},
		{"value for a section", "nats: nats://127.0.0.1:4222\n", ":1: unknown key \"nats\""},
		{"not yaml", "worker: [\n", "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.text)
			code, _, stderr := cliIO(t, nil, "", "status", "--config", p)
			if code != exitError || !strings.Contains(stderr, "imagevet: config: "+p) || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 naming %s and %q", code, stderr, p, tc.want)
			}
		})
	}
	code, _, stderr := cliIO(t, map[string]string{"IMAGEVET_CONFIG": "/nonexistent/imagevet.yaml"}, "", "status")
	if code != exitError || !strings.Contains(stderr, "/nonexistent/imagevet.yaml") {
		t.Fatalf("a missing IMAGEVET_CONFIG file: exit %d, stderr %q", code, stderr)
	}
}

// Precedence: the environment over the file over the default; the file's section
// of another command does not apply; lists are joined in the variable's form.
func TestConfigFilePrecedence(t *testing.T) {
	p := writeConfig(t, "nats:\n  url: nats://me:secret@127.0.0.1:4222\nimage_roots: [/srv/a, /srv/b]\nworker:\n  metrics: 127.0.0.1:9464\n  accel: tcg\nwatch:\n  metrics: 127.0.0.1:9465\n  attempts: 0\n")
	code, out, stderr := cliIO(t, map[string]string{"IMAGEVET_ACCEL": "kvm"}, "", "config", "--config", p, "worker")
	if code != 0 {
		t.Fatalf("config worker: exit %d, %s", code, stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^nats\.url +IMAGEVET_NATS_URL +nats://me:xxxxx@127\.0\.0\.1:4222 +` + regexp.QuoteMeta(p) + `:2 `),
		regexp.MustCompile(`(?m)^image_roots +IMAGEVET_IMAGE_ROOTS +/srv/a:/srv/b +` + regexp.QuoteMeta(p) + `:3 `),
		regexp.MustCompile(`(?m)^worker\.accel +IMAGEVET_ACCEL +kvm +environment `),
		regexp.MustCompile(`(?m)^worker\.metrics +IMAGEVET_METRICS_ADDR +127\.0\.0\.1:9464 +` + regexp.QuoteMeta(p) + `:5 `),
		regexp.MustCompile(`(?m)^worker\.concurrency +IMAGEVET_CONCURRENCY +1 +default +--concurrency +worker$`),
		regexp.MustCompile(`(?m)^queue\.replicas +IMAGEVET_REPLICAS +- +default +--replicas +worker,queue$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("config worker lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret") || strings.Contains(out, "watch.") {
		t.Errorf("config worker shows the password or watch's settings:\n%s", out)
	}
	// The file's value reaches the command (and its zero rule).
	code, stderr = cli(t, map[string]string{"IMAGEVET_CONFIG": p}, "", "watch")
	if code != exitError || !strings.Contains(stderr, "--attempts (IMAGEVET_WATCH_ATTEMPTS from "+p+":9): 0 is not accepted") {
		t.Fatalf("watch with attempts: 0 in the file: exit %d, %q", code, stderr)
	}
}

// The settings table is every command's flags: each flag a command's help lists
// is a row naming that command and each row naming a command is one of its
// flags (parseCommand also refuses a command whose destinations differ from its
// rows, which -h would show). Every row's default parses, and its zero rule fits
// its default.
func TestSettingsTableIsEveryFlag(t *testing.T) {
	known := map[string]bool{}
	for _, c := range commands() {
		known[c.name] = true
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	for cmd := range known {
		args := []string{cmd, "-h"}
		if cmd == "queue" {
			args = []string{"queue", "setup", "-h"}
		}
		code, help := cli(t, nil, "", args...)
		if code != 0 {
			t.Errorf("imagevet %s -h: exit %d\n%s", cmd, code, help)
			continue
		}
		var inHelp, inTable []string
		for _, m := range flagLine.FindAllStringSubmatch(help, -1) {
			inHelp = append(inHelp, m[1])
		}
		for _, s := range rowsOf(cmd) {
			inTable = append(inTable, s.Flag)
		}
		if !slices.Equal(inHelp, inTable) || len(inHelp) == 0 {
			t.Errorf("imagevet %s -h lists flags %q; the settings table %q", cmd, inHelp, inTable)
		}
	}
	for _, s := range settingsTable() {
		for _, c := range s.Commands {
			if !known[c] {
				t.Errorf("--%s names command %q, which the command table lacks", s.Flag, c)
			}
		}
		dst := map[kind]any{kindString: new(string), kindInt: new(int), kindDuration: new(time.Duration), kindBool: new(bool),
			kindFloat: new(float64), kindBytes: new(int64), kindList: new([]string)}[s.Kind]
		if err := s.store(dst, s.listed(value{text: s.Default})); err != nil {
			t.Errorf("--%s of %v: %v", s.Flag, s.Commands, err)
		}
		if s.Zero == zeroRefused && (s.Default == "" || s.Default == "0" || s.Default == "0s") {
			t.Errorf("--%s of %v: zero is refused, but it is the default %q", s.Flag, s.Commands, s.Default)
		}
		if s.Zero == zeroUnset && s.Default != "" {
			t.Errorf("--%s of %v: zero means unset, but the default is %q", s.Flag, s.Commands, s.Default)
		}
	}
}

// A default that depends on the machine is described in every command's help,
// never printed as this machine's value: the Debian package ships each command's
// help as its build host printed it (scripts/build-deb), which showed the build
// host's user@host as the default of cancel --by.
func TestHelpDescribesMachineDefaults(t *testing.T) {
	machine := []string{strconv.Quote(whoAmI()), strconv.Quote(jobs.DefaultWorkerID())}
	if host, _ := os.Hostname(); host != "" {
		machine = append(machine, strconv.Quote(host))
	}
	for _, c := range commands() {
		args := []string{c.name, "-h"}
		if c.name == "queue" {
			args = []string{"queue", "setup", "-h"}
		}
		_, help := cli(t, nil, "", args...)
		for _, m := range machine {
			if strings.Contains(help, m) {
				t.Errorf("imagevet %s -h prints this machine's %s:\n%s", c.name, m, help)
			}
		}
	}
	for _, c := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"cancel", "-h"}, nil, "(IMAGEVET_CANCEL_BY)\n    \t= user@host of the caller, default\n"},
		{[]string{"worker", "-h"}, nil, "(IMAGEVET_WORKER_ID)\n    \t= this host's name, default\n"},
		{[]string{"run", "-h"}, nil, "(IMAGEVET_VCPUS)\n    \t= 2, or this host's CPU count when lower, default\n"},
		// A value from elsewhere is shown, beside the described default.
		{[]string{"cancel", "-h"}, map[string]string{"IMAGEVET_CANCEL_BY": "ops"},
			"(IMAGEVET_CANCEL_BY)\n    \t= \"ops\", from IMAGEVET_CANCEL_BY (default user@host of the caller)\n"},
	} {
		if _, help := cli(t, c.vars, "", c.args...); !strings.Contains(help, c.want) {
			t.Errorf("imagevet %s with %v lacks %q:\n%s", strings.Join(c.args, " "), c.vars, c.want, help)
		}
	}
}

// Every variable and file key of the settings table is in the Debian package's
// commented settings (packaging/etc/imagevet.yaml), where an operator looks.
func TestPackagedConfigNamesEverySetting(t *testing.T) {
	data, err := os.ReadFile("../../packaging/etc/imagevet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, s := range settingsTable() {
		if s.Var != "" && !strings.Contains(text, s.Var) {
			t.Errorf("packaging/etc/imagevet.yaml does not name %s (--%s)", s.Var, s.Flag)
		}
		if s.Key != "" && !regexp.MustCompile(`(?m)^ *#?`+regexp.QuoteMeta(s.Key)+`:`).MatchString(text) {
			t.Errorf("packaging/etc/imagevet.yaml lacks the key %s (--%s)", s.name(), s.Flag)
		}
	}
}

// Each setting's value is the flag's, else the variable's, else the file's, else
// the default; a list from a flag replaces the variable's (and the file's)
// rather than adding to it: the image roots bound what jobs may read.
func TestSettingsPrecedence(t *testing.T) {
	cf, err := loadConfig(writeConfig(t, "image_roots: [/srv/f]\nworker:\n  accel: tcg\n  domain_prefix: file-\n  cache_max: 1G\n"))
	if err != nil {
		t.Fatal(err)
	}
	parse := func(vars map[string]string, args ...string) worker.Config {
		t.Helper()
		env := Env{Stdout: io.Discard, Stderr: io.Discard, Stdin: strings.NewReader(""), config: cf,
			Getenv: func(k string) string { return vars[k] }}
		p, _ := parseRun(context.Background(), append(args, "-"), env)
		return p.cfg
	}
	vars := map[string]string{"IMAGEVET_ACCEL": "kvm", "IMAGEVET_IMAGE_ROOTS": "/srv/a:/srv/b", "IMAGEVET_CACHE_MAX": "2G"}
	for _, tc := range []struct {
		vars                 map[string]string
		args                 []string
		accel, prefix, roots string
		cacheMax             int64
	}{
		{nil, nil, "tcg", "file-", "/srv/f", 1 << 30},
		{vars, nil, "kvm", "file-", "/srv/a,/srv/b", 2 << 30},
		{vars, []string{"--accel", "auto", "--image-root", "/srv/c", "--cache-max", "3G"}, "auto", "file-", "/srv/c", 3 << 30},
		{vars, []string{"--image-root", "/srv/c", "--image-root", "/srv/d"}, "kvm", "file-", "/srv/c,/srv/d", 2 << 30},
	} {
		c := parse(tc.vars, tc.args...)
		if c.Accel != tc.accel || c.DomainPrefix != tc.prefix || strings.Join(c.ImageRoots, ",") != tc.roots || c.CacheMax != tc.cacheMax {
			t.Errorf("%v %v: accel %q, prefix %q, roots %q, cache %d; want %q %q %q %d", tc.vars, tc.args,
				c.Accel, c.DomainPrefix, c.ImageRoots, c.CacheMax, tc.accel, tc.prefix, tc.roots, tc.cacheMax)
		}
	}
	env := Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	if c := parse(nil); c.Accel != "tcg" {
		t.Fatalf("the file's accel: %q", c.Accel)
	}
	if p, _ := parseRun(context.Background(), []string{"-"}, env); p.cfg.Accel != worker.DefaultConfig().Accel || p.cfg.DomainPrefix != "imagevet-" {
		t.Errorf("no file, no variable: accel %q, prefix %q", p.cfg.Accel, p.cfg.DomainPrefix)
	}
}

// The Debian package's commented settings (packaging/etc/imagevet.yaml) are a
// valid configuration file, and what they set is what the services need.
func TestPackagedConfigFileLoads(t *testing.T) {
	cf, err := loadConfig("../../packaging/etc/imagevet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"nats.url": "nats://127.0.0.1:4222", "worker.metrics": "127.0.0.1:9464",
		"watch.metrics": "127.0.0.1:9465", "watch.catalog": "/etc/imagevet/catalog", "serve.listen": "127.0.0.1:8080"} {
		if v, ok := cf.lookup(name); !ok || v.value != want {
			t.Errorf("%s = %q (set %v), want %q", name, v.value, ok, want)
		}
	}
}

// Every command's help has one format: each flag's variable, and its value before
// the command line with where that came from (default, variable, FILE:LINE);
// passwords masked.
func TestHelpSaysWhereEachValueComesFrom(t *testing.T) {
	p := writeConfig(t, "nats:\n  url: nats://me:secret@127.0.0.1:4222\nworker:\n  accel: tcg\n")
	for _, cmd := range []string{"worker", "run", "submit", "watch", "status", "serve", "publish", "jobs", "cancel"} {
		_, help := cli(t, map[string]string{"IMAGEVET_CONFIG": p, "IMAGEVET_LOG_LEVEL": "debug"}, "", cmd, "-h")
		if strings.Contains(help, "secret") {
			t.Errorf("imagevet %s -h shows the NATS password:\n%s", cmd, help)
		}
		if cmd == "worker" || cmd == "run" {
			for _, want := range []string{
				"  -accel string\n    \tauto, kvm or tcg (IMAGEVET_ACCEL)\n    \t= \"tcg\", from " + p + ":4 (default \"auto\")\n",
				"(IMAGEVET_LOG_LEVEL)\n    \t= \"debug\", from IMAGEVET_LOG_LEVEL (default ",
				"(IMAGEVET_DOMAIN_PREFIX)\n    \t= \"imagevet-\", default\n",
			} {
				if !strings.Contains(help, want) {
					t.Errorf("imagevet %s -h lacks %q:\n%s", cmd, want, help)
				}
			}
		}
		if cmd == "worker" && !strings.Contains(help, "(IMAGEVET_NATS_URL)\n    \t= \"nats://me:xxxxx@127.0.0.1:4222\", from "+p+":2\n") {
			t.Errorf("imagevet worker -h: the NATS URL's line:\n%s", help)
		}
	}
}

// A value from the file that does not parse is an error naming the file's line.
func TestConfigFileBadValueNamesTheLine(t *testing.T) {
	p := writeConfig(t, "watch:\n  catalog: /etc/imagevet/catalog\n  interval: soon\n")
	code, stderr := cli(t, map[string]string{"IMAGEVET_CONFIG": p}, "", "watch")
	if want := p + `:3: watch.interval "soon": not a duration like 90s`; code != exitError || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}
}
