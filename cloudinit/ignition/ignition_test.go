package ignition

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagevet/imagevet/internal/testenv"
)

var base = Base{
	User:           "core",
	AuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOurkey imagevet", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQourrsa imagevet-rsa"},
	Hostname:       "vet-flatcar",
}

func TestRenderWithoutJobConfig(t *testing.T) {
	b, err := Render(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, b)
	}
	if c.Ignition.Version != DefaultVersion {
		t.Errorf("version %q, want %q", c.Ignition.Version, DefaultVersion)
	}
	if len(c.Passwd.Users) != 1 || c.Passwd.Users[0].Name != "core" || len(c.Passwd.Users[0].SSHAuthorizedKeys) != 2 {
		t.Fatalf("users = %+v", c.Passwd.Users)
	}
	f := c.Storage.Files[0]
	if f.Path != "/etc/hostname" || *f.Contents.Source != "data:,vet-flatcar%0A" || *f.Mode != 0o644 || !*f.Overwrite {
		t.Errorf("hostname file = %+v", f)
	}
	// Only fields spec 3.0.0 knows: no kernelArguments, no empty sections.
	for _, absent := range []string{"kernelArguments", "systemd", "shouldExist", "null"} {
		if strings.Contains(string(b), absent) {
			t.Errorf("rendered config contains %q:\n%s", absent, b)
		}
	}
}

func TestMergeRules(t *testing.T) {
	job, err := Parse([]byte(`{
	  "ignition": {"version": "3.3.0", "timeouts": {"httpTotal": 30}},
	  "kernelArguments": {"shouldExist": ["quiet"]},
	  "passwd": {
	    "users": [
	      {"name": "alice", "sshAuthorizedKeys": ["ssh-ed25519 AAAAalice alice"]},
	      {"name": "core", "groups": ["sudo", "docker"], "shouldExist": false,
	       "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOurkey imagevet", "ssh-ed25519 AAAAextra extra"]}
	    ],
	    "groups": [{"name": "docker"}]
	  },
	  "storage": {"files": [
	    {"path": "/etc/hostname", "contents": {"source": "data:,hijack"}, "overwrite": true},
	    {"path": "/etc/motd", "contents": {"source": "data:,hello"}, "mode": 420}
	  ], "directories": [{"path": "/var/lib/app"}], "links": [{"path": "/etc/app", "target": "/var/lib/app"}]},
	  "systemd": {"units": [{"name": "app.service", "enabled": true, "contents": "[Service]\nExecStart=/bin/true\n"}]}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	c := Merge(base, job)
	if c.Ignition.Version != "3.3.0" || c.Ignition.Timeouts == nil || *c.Ignition.Timeouts.HTTPTotal != 30 {
		t.Errorf("ignition section = %+v, want the job's", c.Ignition)
	}
	users := c.Passwd.Users
	if len(users) != 2 || users[0].Name != "core" || users[1].Name != "alice" {
		t.Fatalf("users = %+v, want core (ours) first, then alice", users)
	}
	core := users[0]
	wantKeys := []string{base.AuthorizedKeys[0], base.AuthorizedKeys[1], "ssh-ed25519 AAAAextra extra"}
	if strings.Join(core.SSHAuthorizedKeys, "|") != strings.Join(wantKeys, "|") {
		t.Errorf("core keys = %q, want ours then the job's new one", core.SSHAuthorizedKeys)
	}
	if strings.Join(core.Groups, ",") != "sudo,docker" {
		t.Errorf("core groups = %v, want the job's", core.Groups)
	}
	if core.ShouldExist != nil {
		t.Error("the login user must exist whatever the job says")
	}
	if len(c.Passwd.Groups) != 1 {
		t.Errorf("groups = %+v", c.Passwd.Groups)
	}
	files := c.Storage.Files
	if len(files) != 2 || files[0].Path != "/etc/hostname" || *files[0].Contents.Source != "data:,vet-flatcar%0A" || files[1].Path != "/etc/motd" {
		t.Fatalf("files = %+v: want our hostname and the job's motd", files)
	}
	if c.KernelArguments == nil || c.Systemd == nil || len(c.Systemd.Units) != 1 {
		t.Errorf("job sections lost: %+v", c)
	}
	u, p := c.Expected()
	if strings.Join(u, ",") != "core,alice" || strings.Join(p, ",") != "/etc/hostname,/etc/motd,/var/lib/app,/etc/app" {
		t.Errorf("Expected() = %v %v", u, p)
	}
	// The round trip keeps exactly what the job set.
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"mode": 420`, `"httpTotal": 30`, `"enabled": true`, `"target": "/var/lib/app"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered config lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "hijack") {
		t.Error("the job's /etc/hostname survived the merge")
	}
}

func TestParseRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"not JSON":       {`{"ignition": `, "invalid JSON"},
		"cloud-config":   {"#cloud-config\nusers: []\n", "invalid JSON"},
		"array":          {`[1]`, `"ignition" section`},
		"no version":     {`{"passwd": {}}`, "ignition.version: required"},
		"spec 2":         {`{"ignition": {"version": "2.3.0"}}`, `"2.3.0" is spec 2.x`},
		"experimental":   {`{"ignition": {"version": "3.6.0-experimental"}}`, "experimental"},
		"unknown":        {`{"ignition": {"version": "4.0.0"}}`, "not a supported spec version"},
		"unknown field":  {`{"ignition": {"version": "3.3.0"}, "passwd": {"users": [{"name": "a", "sshKeys": []}]}}`, "passwd.users[0].sshKeys: unknown field"},
		"wrong type":     {`{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/a", "mode": "0644"}]}}`, "storage.files.mode: string where an integer is wanted"},
		"trailing":       {`{"ignition": {"version": "3.3.0"}} {}`, "invalid JSON"},
		"replace":        {`{"ignition": {"version": "3.3.0", "config": {"replace": {"source": "data:,"}}}}`, "ignition.config.replace is not supported"},
		"merge":          {`{"ignition": {"version": "3.3.0", "config": {"merge": [{"source": "data:,"}]}}}`, "ignition.config.merge is not supported"},
		"spec 2 fields":  {`{"ignition": {"version": "2.2.0"}, "networkd": {}}`, "spec 2.x"},
		"top unknown":    {`{"ignition": {"version": "3.0.0"}, "users": []}`, "users: unknown field"},
		"version number": {`{"ignition": {"version": 3}}`, "ignition"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse(%s) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
	if c, err := Parse([]byte("  \n")); c != nil || err != nil {
		t.Errorf("blank config = %v, %v; want none", c, err)
	}
}

// TestRenderedConfigsValidate runs Debian's ignition-validate (Ignition 2.14's own
// parser and validator, from the ignition package) on what Render produces.
func TestRenderedConfigsValidate(t *testing.T) {
	bin, err := exec.LookPath("ignition-validate")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ignition-validate missing (apt-get install ignition; scripts/setup-host installs it)")
		}
		testenv.Missing(t, "ignition-validate not installed (apt-get install ignition)")
	}
	job, err := Parse([]byte(`{"ignition": {"version": "3.3.0"},
	  "passwd": {"users": [{"name": "core", "groups": ["sudo"]}, {"name": "app", "system": true}]},
	  "storage": {"files": [{"path": "/etc/motd", "contents": {"source": "data:,hi%0A"}, "mode": 420}]},
	  "systemd": {"units": [{"name": "app.service", "enabled": true, "contents": "[Unit]\nDescription=app\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, j := range map[string]*Config{"ours": nil, "merged": job} {
		b, err := Render(base, j)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".ign")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, p).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("%s: ignition-validate: %v\n%s\n%s", name, err, out, b)
		}
	}
	// The validator is strict enough to be worth asking: it refuses a broken config.
	bad := filepath.Join(dir, "bad.ign")
	os.WriteFile(bad, []byte(`{"ignition": {"version": "3.0.0"}, "storage": {"files": [{"path": "relative"}]}}`), 0o644)
	if err := exec.Command(bin, bad).Run(); err == nil {
		t.Error("ignition-validate accepted a relative path: the test proves nothing")
	}
}
