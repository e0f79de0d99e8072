package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
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

// The settings table covers every IMAGEVET_* variable a command's help names, so
// the file can set each of them for that command.
func TestSettingsTableCoversEveryVariable(t *testing.T) {
	byCmd := map[string][]string{}
	for _, c := range commands() {
		byCmd[c.name] = nil
	}
	for _, s := range settingsTable() {
		for _, c := range s.Commands {
			if _, ok := byCmd[c]; !ok {
				t.Errorf("setting %s names command %q, which the command table lacks", s.name(), c)
			}
			byCmd[c] = append(byCmd[c], s.Var)
		}
	}
	// Per-invocation switches stay flags and variables only.
	notInFile := []string{"IMAGEVET_WATCH_ONCE"}
	varRe := regexp.MustCompile(`IMAGEVET_[A-Z_]+[A-Z]`)
	for cmd := range byCmd {
		args := []string{cmd, "-h"}
		if cmd == "queue" {
			args = []string{"queue", "setup", "-h"}
		}
		_, help := cli(t, nil, "", args...)
		for _, v := range varRe.FindAllString(help, -1) {
			if v != "IMAGEVET_CONFIG" && !slices.Contains(byCmd[cmd], v) && !slices.Contains(notInFile, v) {
				t.Errorf("imagevet %s -h names %s, which the settings table does not give %s", cmd, v, cmd)
			}
		}
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
				"  -accel string\n    \tauto, kvm or tcg (IMAGEVET_ACCEL)\n    \t= \"tcg\", from " + p + ":4\n",
				"(IMAGEVET_LOG_LEVEL)\n    \t= \"debug\", from IMAGEVET_LOG_LEVEL\n",
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
	if want := p + `:3: IMAGEVET_WATCH_INTERVAL "soon": not a duration like 90s`; code != exitError || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}
}
