// Package testenv is what the tests share about their environment: a prerequisite
// that is missing (a Debian package, root, a kernel file system) skips a test on a
// developer's machine and fails it under CI (CI=true), where scripts/setup-host has
// installed everything and a skipped test would prove nothing.
package testenv

import (
	"fmt"
	"os"
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
