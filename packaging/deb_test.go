package packaging

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagevet/imagevet/internal/testenv"
)

// units are the package's services: each one's ExecStart is run as its user and
// answers /healthz on the address the packaged settings give it (the line named
// here, which the test edits to a free port; publish serves none and must say it
// serves its consumer).
var units = []struct {
	name, healthLine string
}{
	{"imagevet-worker.service", "  metrics: 127.0.0.1:9464"},
	{"imagevet-watch.service", "  metrics: 127.0.0.1:9465"},
	{"imagevet-serve.service", "  listen: 127.0.0.1:8080"},
	{"imagevet-publish.service", ""},
}

// edits are the other lines of the packaged settings the test changes, as an
// operator would: its NATS server, tcg (this host's KVM is not trusted), a
// catalog whose feed is on loopback, a cloud on loopback (never asked: nothing
// passes while the test runs).
var edits = []string{"  url: nats://127.0.0.1:4222", "  accel: auto", "  catalog: /etc/imagevet/catalog",
	"#clouds: [prod]", "  #os_client_config_file: /etc/openstack/clouds.yaml"}

// testClouds is the clouds.yaml of the test's cloud: Keystone on a loopback port
// nothing listens on.
const testClouds = `clouds:
  test:
    auth:
      auth_url: http://127.0.0.1:9/v3
      username: imagevet
      password: secret
      project_name: images
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
`

// TestDebianPackage builds the package, installs it, verifies every unit with
// systemd-analyze, runs each unit's ExecStart as its user with the packaged
// settings (no systemd on build hosts: the test reads the unit), and checks that
// dpkg -r keeps the settings and state and dpkg -P removes them. The package is
// purged again on every path; no service is started by the install.
func TestDebianPackage(t *testing.T) {
	if testing.Short() || os.Getenv("IMAGEVET_INTEGRATION") != "1" {
		t.Skip("installs the Debian package on this host: set IMAGEVET_INTEGRATION=1, not in -short mode")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "dpkg -i needs root")
	}
	for _, tool := range []string{"dpkg-deb", "dpkg", "systemd-analyze", "setpriv", "nats-server", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not found (scripts/setup-host installs it): %v", tool, err)
		}
	}
	if installed("imagevet") {
		t.Fatal("the imagevet package is already installed on this host; the test would remove it: dpkg -P imagevet first")
	}
	// The purge removes these; what is there before the test is not the test's.
	for _, dir := range []string{"/etc/imagevet", "/var/lib/imagevet", "/var/cache/imagevet/images"} {
		if _, err := os.Lstat(dir); err == nil {
			t.Fatalf("%s exists (a worker run with the default state directory?); the package test's purge would remove it: move it away first", dir)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	// Build.
	dist := t.TempDir()
	start := time.Now()
	build := exec.CommandContext(ctx, "../scripts/build-deb", dist)
	build.Env = append(os.Environ(), "IMAGEVET_VERSION=0~test1")
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/build-deb: %v\n%s", err, out)
	}
	deb := strings.TrimSpace(lastLine(string(out)))
	if filepath.Base(deb) != "imagevet_0~test1_amd64.deb" {
		t.Fatalf("scripts/build-deb printed %q, want .../imagevet_0~test1_amd64.deb", deb)
	}
	fi, err := os.Stat(deb)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s: %d bytes in %s", filepath.Base(deb), fi.Size(), time.Since(start).Round(time.Second))

	// Install; purge on every path.
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "-P", "imagevet").CombinedOutput(); err != nil {
			t.Errorf("cleanup: dpkg -P imagevet: %v\n%s", err, out)
		}
	})
	run(t, "dpkg", "-i", deb)
	for _, f := range []string{"/usr/bin/imagevet", "/etc/imagevet/imagevet.yaml", "/etc/imagevet/nats-server.conf",
		"/etc/imagevet/catalog/families.yaml", "/usr/share/doc/imagevet/commands/worker.txt",
		"/lib/systemd/system/nats-server.service.d/imagevet.conf"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("installed package lacks %s: %v", f, err)
		}
	}
	// The packaged help describes the defaults that depend on the machine; it
	// carries neither the build host's (this host's) name nor its user@host.
	host, _ := os.Hostname()
	for _, c := range []struct{ file, want string }{
		{"cancel.txt", "= user@host of the caller, default\n"},
		{"worker.txt", "= this host's name, default\n"},
		{"run.txt", "= 2, or this host's CPU count when lower, default\n"},
	} {
		help, err := os.ReadFile("/usr/share/doc/imagevet/commands/" + c.file)
		if err != nil {
			t.Error(err)
			continue
		}
		if text := string(help); !strings.Contains(text, c.want) || strings.Contains(text, `"`+host+`"`) || strings.Contains(text, "@"+host+`"`) {
			t.Errorf("commands/%s: want %q and not the build host %q:\n%s", c.file, c.want, host, text)
		}
	}
	groups := run(t, "id", "-nG", "imagevet")
	for _, g := range []string{"imagevet", "libvirt", "kvm"} {
		if !strings.Contains(" "+strings.TrimSpace(groups)+" ", " "+g+" ") {
			t.Errorf("user imagevet is in groups %q, want %s among them", strings.TrimSpace(groups), g)
		}
	}

	// Every unit as systemd would load it: a unit's own warnings fail the test.
	for _, u := range append([]string{"nats-server.service"}, unitNames()...) {
		cmd := exec.CommandContext(ctx, "systemd-analyze", "verify", u)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, strings.TrimSuffix(u, ".service")) {
				t.Errorf("systemd-analyze verify %s: %s", u, line)
			}
		}
	}

	// nats-server as the drop-in runs it, on a free loopback port. Its store is
	// under the drop-in's StateDirectory, made here as systemd would (and removed
	// after, when the test made it).
	natsUnit := readUnit(t, "/lib/systemd/system/nats-server.service")
	dropIn := readUnit(t, "/lib/systemd/system/nats-server.service.d/imagevet.conf")
	natsPort := testenv.FreePort(t)
	stateDir(t, "/var/lib/nats", uidOf(t, natsUnit.user))
	nats := startAs(t, natsUnit.user, nil, nil, append(dropIn.execStart, "-p", fmt.Sprint(natsPort)))
	waitFor(t, nats, func() error { return dial(fmt.Sprintf("127.0.0.1:%d", natsPort)) })
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	// What an operator runs once (or the first worker does): the queue's streams.
	run(t, "setpriv", "--reuid", "imagevet", "--regid", "imagevet", "--clear-groups", "--",
		"/usr/bin/imagevet", "queue", "setup", "--nats", natsURL)

	// A feed on loopback for the watcher's catalog: no traffic leaves the host.
	feedSrv := httptest.NewServer(http.NotFoundHandler())
	defer feedSrv.Close()
	catalogDir := "/etc/imagevet/catalog-loopback" // purged with the package
	if err := os.Mkdir(catalogDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(catalogDir, "families.yaml"), fmt.Sprintf(testCatalog, feedSrv.URL))

	// The one file an operator edits: each line the test changes must be there.
	const settingsFile = "/etc/imagevet/imagevet.yaml"
	data, err := os.ReadFile(settingsFile)
	if err != nil {
		t.Fatal(err)
	}
	settings := string(data)
	addrs := map[string]string{}
	replace := map[string]string{
		edits[0]: "  url: " + natsURL,
		edits[1]: "  accel: tcg",
		edits[2]: "  catalog: " + catalogDir,
		edits[3]: "clouds: [test]",
		edits[4]: "  os_client_config_file: /etc/imagevet/clouds-test.yaml", // purged with the package
	}
	writeFile(t, "/etc/imagevet/clouds-test.yaml", testClouds)
	for _, u := range units {
		if u.healthLine != "" {
			addrs[u.name] = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			key, _, _ := strings.Cut(u.healthLine, ": ")
			replace[u.healthLine] = key + ": " + addrs[u.name]
		}
	}
	for old, new := range replace {
		if strings.Count(settings, "\n"+old+"\n") != 1 {
			t.Fatalf("%s lacks the line %q (once)", settingsFile, old)
		}
		settings = strings.Replace(settings, "\n"+old+"\n", "\n"+new+"\n", 1)
	}
	if err := os.WriteFile(settingsFile, []byte(settings), 0o640); err != nil {
		t.Fatal(err)
	}
	// Every command finds its settings there, as imagevet config says.
	cfgOut := run(t, "setpriv", "--reuid", "imagevet", "--regid", "imagevet", "--clear-groups", "--",
		"/usr/bin/imagevet", "config", "watch")
	if !regexp.MustCompile(`(?m)^watch\.catalog +IMAGEVET_CATALOG +` + regexp.QuoteMeta(catalogDir) + ` +` + settingsFile + `:\d+ `).MatchString(cfgOut) {
		t.Errorf("imagevet config watch, as user imagevet, does not take the catalog from %s:\n%s", settingsFile, cfgOut)
	}

	for _, u := range units {
		t.Run(strings.TrimSuffix(u.name, ".service"), func(t *testing.T) {
			unit := readUnit(t, "/lib/systemd/system/"+u.name)
			if u.name == "imagevet-worker.service" {
				libvirtAccess(t, unit)
			}
			env := unit.environment(t)
			p := startAs(t, unit.user, unit.groups, env, unit.execStart)
			if u.healthLine == "" { // publish: up when it says it serves its consumer
				waitFor(t, p, func() error {
					if !strings.Contains(p.log.String(), `msg="publisher serving"`) {
						return fmt.Errorf("no \"publisher serving\" in its log yet")
					}
					return nil
				})
				return
			}
			waitFor(t, p, func() error { return healthy("http://" + addrs[u.name] + "/healthz") })
		})
	}
	if t.Failed() {
		return
	}

	// dpkg -r keeps settings and state; dpkg -P removes them.
	run(t, "dpkg", "-r", "imagevet")
	for _, f := range []string{"/etc/imagevet/imagevet.yaml", "/var/lib/imagevet"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after dpkg -r: %s is gone (%v); Debian policy keeps configuration and state until purge", f, err)
		}
	}
	for _, f := range []string{"/usr/bin/imagevet", "/lib/systemd/system/imagevet-worker.service"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("after dpkg -r: %s is still there", f)
		}
	}
	run(t, "dpkg", "-P", "imagevet")
	for _, f := range []string{"/etc/imagevet", "/var/lib/imagevet", "/var/cache/imagevet/images"} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("after dpkg -P: %s is still there", f)
		}
	}
}

// testCatalog is one family whose feed (%s) is on loopback.
const testCatalog = `families:
  debian-12:
    name: Debian 12 Bookworm
    feed:
      kind: debian
      url: %s/bookworm/
      arch: amd64
      artefact: debian-12-genericcloud-{arch}-{version}.qcow2
    job:
      machine: {firmware: bios, vcpus: 1, memory_mib: 512}
      guest: {user: debian}
`

func unitNames() []string {
	var n []string
	for _, u := range units {
		n = append(n, u.name)
	}
	return n
}

// unit is what the test reads of a systemd unit (or drop-in): enough to run its
// ExecStart as systemd would.
type unit struct {
	path        string
	user        string
	groups      []string
	execStart   []string
	environment func(t *testing.T) []string
	envFiles    []string
	env         []string
}

// readUnit parses path's [Service] section. ExecStart has no quoting or
// specifiers in our units; a reset (empty ExecStart=) is honoured.
func readUnit(t *testing.T, path string) *unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := &unit{path: path}
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != "[Service]" {
			continue
		}
		switch k {
		case "User":
			u.user = v
		case "SupplementaryGroups":
			u.groups = strings.Fields(v)
		case "ExecStart":
			u.execStart = strings.Fields(v)
		case "Environment":
			u.env = append(u.env, v)
		case "EnvironmentFile":
			u.envFiles = append(u.envFiles, v)
		}
	}
	u.environment = func(t *testing.T) []string {
		t.Helper()
		env := append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, u.env...)
		for _, f := range u.envFiles {
			optional := strings.HasPrefix(f, "-")
			data, err := os.ReadFile(strings.TrimPrefix(f, "-"))
			if err != nil {
				if optional && os.IsNotExist(err) {
					continue
				}
				t.Fatalf("%s: EnvironmentFile %s: %v", path, f, err)
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				l := strings.TrimSpace(sc.Text())
				if l == "" || strings.HasPrefix(l, "#") {
					continue
				}
				if !strings.Contains(l, "=") {
					t.Fatalf("%s: %q is not VARIABLE=value", f, l)
				}
				env = append(env, l) // later entries win, as in systemd
			}
		}
		return env
	}
	if len(u.execStart) == 0 {
		t.Fatalf("%s: no ExecStart", path)
	}
	return u
}

// proc is a unit's main process as the test runs it.
type proc struct {
	cmd  *exec.Cmd
	log  *testenv.LogBuffer
	done chan error
}

// exited returns why the process ended, or nil while it runs.
func (p *proc) exited() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("exited: %v", err)
	default:
		return nil
	}
}

// startAs runs argv as user (with the unit's supplementary groups, no new
// privileges) and stops it with SIGTERM when t ends.
func startAs(t *testing.T, user string, groups, env []string, argv []string) *proc {
	t.Helper()
	if user == "" {
		t.Fatalf("%v: the unit names no User", argv)
	}
	args := []string{"--reuid", user, "--regid", user, "--no-new-privs"}
	if len(groups) > 0 {
		args = append(args, "--groups", strings.Join(groups, ","))
	} else {
		args = append(args, "--clear-groups")
	}
	cmd := exec.Command("setpriv", append(append(args, "--"), argv...)...)
	cmd.Env = env
	cmd.Dir = "/"
	p := &proc{cmd: cmd, log: &testenv.LogBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("setpriv %v: %v", argv, err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", argv[0], p.log.String())
		}
	})
	return p
}

// waitFor polls ready for up to a minute while p runs.
func waitFor(t *testing.T, p *proc, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var err error
	for time.Now().Before(deadline) {
		if err = ready(); err == nil {
			return
		}
		if xerr := p.exited(); xerr != nil {
			t.Fatalf("%v: %v\n%s", p.cmd.Args, xerr, p.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%v not ready after a minute: %v\n%s", p.cmd.Args, err, p.log.String())
}
