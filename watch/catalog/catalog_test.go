package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

// TestSampleCatalog: the committed catalog loads, covers every family our clouds
// publish, and makes valid jobs.
func TestSampleCatalog(t *testing.T) {
	fams, err := Load("../../catalog")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]Family{}
	for _, f := range fams {
		keys[f.Key] = f
	}
	for _, want := range []string{"debian-11", "debian-12", "debian-13", "ubuntu-24.04", "centos-stream-9",
		"rocky-9", "almalinux-9", "fedora-43", "flatcar-stable", "cirros"} {
		if _, ok := keys[want]; !ok {
			t.Errorf("sample catalog has no %s", want)
		}
	}
	d := keys["debian-12"]
	if d.Name != "Debian 12 Bookworm" || d.Job.Guest.User != "debian" || d.Job.Publish.Family != "debian-12" ||
		d.Job.Publish.Name != d.Name || d.Job.Publish.Rotation == nil || d.Job.Publish.Rotation.Keep != 3 ||
		d.Job.Publish.Properties["os_version"] != "12" || !d.Job.Publish.Glance || d.Job.Image.Format != jobs.FormatQCOW2 {
		t.Errorf("debian-12 = %+v", d)
	}
	if d.Feed.Keyring != "/etc/imagevet/keyrings/debian-cloud.gpg" {
		t.Errorf("keyring %q", d.Feed.Keyring)
	}
}

// tinyFamily is a valid one-family catalog; tests change it with strings.Replace.
const tinyFamily = `families:
  tiny:
    name: Tiny
    feed: {kind: cirros, url: "http://127.0.0.1/", arch: x86_64, artefact: "t-{version}.img"}
    job:
      guest: {user: debian}
`

// TestCatalogErrors: every problem names the file, the line and the field.
func TestCatalogErrors(t *testing.T) {
	const good = tinyFamily
	if _, err := Parse("good.yaml", []byte(good)); err != nil {
		t.Fatalf("good catalog: %v", err)
	}
	cases := []struct{ name, doc, want string }{
		{"unknown field", strings.Replace(good, "    name: Tiny\n", "    name: Tiny\n    colour: blue\n", 1),
			"c.yaml:4: field colour not found"},
		{"unknown kind", strings.Replace(good, "kind: cirros", "kind: gentoo", 1),
			`c.yaml:4: families.tiny.feed.kind: "gentoo": must be one of`},
		{"bad job field", strings.Replace(good, "guest: {user: debian}", "guest: {user: debian}\n      machine: {memory_mib: -5}", 1),
			"c.yaml:7: families.tiny.job.machine.memory_mib:"},
		{"unknown job field", strings.Replace(good, "guest: {user: debian}", "guest: {user: debian, shell: zsh}", 1),
			"c.yaml:6: families.tiny.job.guest.shell:"},
		{"source from the feed", strings.Replace(good, "guest: {user: debian}", "guest: {user: debian}\n      image: {source: x.img}", 1),
			"c.yaml:7: families.tiny.job.image.source: comes from the feed"},
		{"keyring on unsigned feed", strings.Replace(good, "artefact:", "keyring: k.gpg, artefact:", 1),
			"c.yaml:4: families.tiny.feed.keyring: a cirros feed is not signed"},
		{"bad rotation", good + "    publish: {glance: true, rotation: {keep: 1, older: gone}}\n",
			"c.yaml:7: families.tiny.publish.rotation.older:"},
		{"unquoted number property", good + "    publish:\n      properties: {os_version: 12}\n",
			"c.yaml:8: families.tiny.publish.properties: must be a string"},
		{"missing user", strings.Replace(good, "guest: {user: debian}", "guest: {datasource: nocloud}", 1),
			"families.tiny.job.guest.user"},
		{"unknown hygiene rule", strings.Replace(good, "guest: {user: debian}", "guest: {user: debian}\n      checks:\n        hygiene: {machine-id: warn, histories: off}", 1),
			`c.yaml:8: families.tiny.job.checks.hygiene.histories: unknown hygiene rule "histories"`},
		{"bad hygiene level", strings.Replace(good, "guest: {user: debian}", "guest: {user: debian}\n      checks:\n        hygiene:\n          machine-id: never", 1),
			`c.yaml:9: families.tiny.job.checks.hygiene.machine-id: "never": must be fail, warn or off`},
		{"bad regression threshold", strings.Replace(good, "guest: {user: debian}", "guest: {user: debian}\n      regression: {boot_percent: 50, size_percent: -10}", 1),
			"c.yaml:7: families.tiny.job.regression.size_percent: -10: must be between 1 and 10000"},
		{"syntax", "families:\n  tiny: [\n", "c.yaml:"},
	}
	for _, c := range cases {
		_, err := Parse("c.yaml", []byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

// TestCatalogHygieneLevels: a family's hygiene levels reach its job template, the
// watcher's source of every release's job.
func TestCatalogHygieneLevels(t *testing.T) {
	doc := strings.Replace(tinyFamily, "guest: {user: debian}", "guest: {user: debian}\n      checks:\n        hygiene: {password-account: warn, shell-history: off}", 1)
	fams, err := Parse("h.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	h := fams[0].Job.Checks.Hygiene
	if h.Level(jobs.RulePasswordAccount) != jobs.LevelWarn || h.Level(jobs.RuleShellHistory) != jobs.LevelOff ||
		h.Level(jobs.RuleMachineID) != jobs.LevelFail {
		t.Errorf("levels %v", h)
	}
}

// TestCatalogDirectory: a directory of files is one catalog; a family defined in two
// files is an error naming both.
func TestCatalogDirectory(t *testing.T) {
	dir := t.TempDir()
	doc := func(key string) string {
		return "families:\n  " + key + ":\n    name: X\n    feed: {kind: cirros, url: \"http://127.0.0.1/\", arch: x86_64, artefact: \"t-{version}.img\"}\n    job: {guest: {user: x}}\n"
	}
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(doc("one")), 0o644)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(doc("two")), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not yaml"), 0o644)
	fams, err := Load(dir)
	if err != nil || len(fams) != 2 || fams[0].Key != "one" || fams[1].Key != "two" {
		t.Fatalf("%+v %v", fams, err)
	}
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(doc("one")), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "c.yaml:2") || !strings.Contains(err.Error(), "a.yaml:2") {
		t.Errorf("duplicate family: %v", err)
	}
}

// TestCatalogRegressionThresholds: a family's regression thresholds reach its job
// template; a family without them gets the defaults when its jobs run.
func TestCatalogRegressionThresholds(t *testing.T) {
	doc := strings.Replace(tinyFamily, "guest: {user: debian}", "guest: {user: debian}\n      regression: {boot_percent: 50}", 1)
	fams, err := Parse("r.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := fams[0].Job.Regression.WithDefaults(); got != (jobs.Regression{BootPercent: 50, SizePercent: jobs.DefaultSizeRegressionPercent}) {
		t.Errorf("thresholds %+v", got)
	}
}
