// Package testenv is what the tests share about their environment: a prerequisite
// that is missing (a Debian package, root, a kernel file system) skips a test on a
// developer's machine and fails it under CI (CI=true), where scripts/setup-host has
// installed everything and a skipped test would prove nothing.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CI reports whether the tests run under CI, where every prerequisite must be there.
func CI() bool { return os.Getenv("CI") == "true" }

// Missing skips t because a prerequisite is missing, or fails it under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("CI: prerequisite missing: %s", msg)
	}
	t.Skip(msg)
}

// Tmpfs mounts a tmpfs of size bytes (mode 0755) on a new temporary directory for
// the rest of t and returns it: how a test gets a file system it can fill. It needs
// root (Missing otherwise); t's cleanup unmounts it.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	opts := fmt.Sprintf("size=%d,mode=0755", size)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "imagevet-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// LoadAverage is the host's load average over 1, 5 and 15 minutes
// (/proc/loadavg): benchmarks log it beside their figures on a shared host.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}
