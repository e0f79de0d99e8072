package packaging

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/internal/testenv"
)

// installed reports whether Debian package pkg is installed.
func installed(pkg string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", pkg).Output()
	return err == nil && strings.Contains(string(out), "install ok installed")
}

// run runs a command that must succeed and returns its output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func uidOf(t *testing.T, name string) int {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dial reports whether something accepts TCP connections on addr.
func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// healthy reports whether url answers 200.
func healthy(url string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// stateDir makes dir for uid as systemd's StateDirectory= would, unless it exists;
// a directory it made is removed when t ends.
func stateDir(t *testing.T, dir string, uid int) {
	t.Helper()
	if _, err := os.Stat(dir); err == nil {
		return
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, -1); err != nil {
		t.Fatal(err)
	}
}

// libvirtAccess checks that the unit's user, with its supplementary groups, may use
// qemu:///system, as the worker must. libvirtd asks polkit unless scripts/setup-host
// gave the libvirt group the socket (hosts without a system bus, such as build
// hosts without systemd); that takes effect when libvirtd next starts.
func libvirtAccess(t *testing.T, u *unit) {
	t.Helper()
	args := []string{"--reuid", u.user, "--regid", u.user, "--groups", strings.Join(u.groups, ","), "--",
		"virsh", "-c", "qemu:///system", "version"}
	out, err := exec.Command("setpriv", args...).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "libvirtd refuses user %s in groups %v (restart libvirtd after scripts/setup-host "+
			"when this host has no system bus): %v: %s", u.user, u.groups, err, strings.TrimSpace(string(out)))
	}
}
