package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/watch/feed"
)

// testdata/applications2.txt is guestfish's inspect-list-applications2 of the
// debian12 fixture, cut to four packages (bsdutils has an epoch).
func TestParseApplications(t *testing.T) {
	out, err := os.ReadFile("testdata/applications2.txt")
	if err != nil {
		t.Fatal(err)
	}
	got := parseApplications(out)
	want := []jobs.Package{
		{Name: "adduser", Version: "3.134", Arch: "all"},
		{Name: "apt", Version: "2.6.2", Arch: "amd64"},
		{Name: "base-files", Version: "12.4+deb12u15", Arch: "amd64"},
		{Name: "bsdutils", Version: "1:2.38.1-5+deb12u3", Arch: "amd64"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("parseApplications =\n%+v\nwant\n%+v", got, want)
	}
	if got := parseApplications(nil); len(got) != 0 {
		t.Fatalf("no output: %+v", got)
	}
}

func TestParseStats(t *testing.T) {
	list := []byte("[0] = {\n  st_dev: 2049\n  st_ino: 12\n  st_mode: 16877\n  st_nlink: 3\n  st_size: 4096\n}\n" +
		"[1] = {\n  st_dev: 2049\n  st_ino: 13\n  st_mode: 33188\n  st_size: 1030\n}\n" +
		"[2] = {\n  st_dev: 2049\n  st_mode: 41471\n  st_size: 7\n}\n" +
		"[3] = {\n  st_dev: 2049\n  st_mode: 35309\n  st_size: 10\n}\n")
	stats, err := parseStats(list)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		mode fs.FileMode
		size int64
	}{
		{fs.ModeDir | 0o755, 4096},
		{0o644, 1030},
		{fs.ModeSymlink | 0o777, 7},
		{fs.ModeSetuid | 0o755, 10},
	}
	if len(stats) != len(want) {
		t.Fatalf("parseStats: %d entries, want %d", len(stats), len(want))
	}
	for i, w := range want {
		if stats[i].mode() != w.mode || stats[i].size != w.size {
			t.Errorf("entry %d: %v %d, want %v %d", i, stats[i].mode(), stats[i].size, w.mode, w.size)
		}
	}
	// lstatns of one path prints the fields without the list's brackets.
	one, err := parseStats([]byte("st_dev: 2049\nst_ino: 2\nst_mode: 33261\nst_size: 5\n"))
	if err != nil || len(one) != 1 || one[0].mode() != 0o755 || one[0].size != 5 {
		t.Fatalf("one entry: %+v, %v", one, err)
	}
	if _, err := parseStats([]byte("st_mode: 1\n")); err == nil {
		t.Fatal("st_mode before st_dev: no error")
	}
	if _, err := parseStats([]byte("st_dev: 1\nst_mode: x\n")); err == nil {
		t.Fatal("st_mode not a number: no error")
	}
}

func TestParseMountpoints(t *testing.T) {
	got := parseMountpoints([]byte("/boot/efi: /dev/sda15\n/: /dev/sda1\n"))
	want := [][2]string{{"/", "/dev/sda1"}, {"/boot/efi", "/dev/sda15"}}
	if !slices.Equal(got, want) {
		t.Fatalf("parseMountpoints = %v, want %v", got, want)
	}
}

func TestParseOSRelease(t *testing.T) {
	m := parseOSRelease([]byte("# comment\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nVERSION_CODENAME=trixie\nID='debian'\n"))
	if m["PRETTY_NAME"] != "Debian GNU/Linux 13 (trixie)" || m["VERSION_CODENAME"] != "trixie" || m["ID"] != "debian" {
		t.Fatalf("parseOSRelease = %v", m)
	}
}

func TestKernelOrder(t *testing.T) {
	kernels := []string{"6.1.0-9-cloud-amd64", "6.1.0-10-cloud-amd64", "5.10.0-28-amd64", "6.12.3"}
	slices.SortFunc(kernels, func(a, b string) int { return feed.CompareVersions(b, a) })
	want := []string{"6.12.3", "6.1.0-10-cloud-amd64", "6.1.0-9-cloud-amd64", "5.10.0-28-amd64"}
	if !slices.Equal(kernels, want) {
		t.Fatalf("newest first: %v, want %v", kernels, want)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/hostname":  `"/etc/hostname"`,
		`a "b" \c`:       `"a \"b\" \\c"`,
		"new\nline\ttab": `"new\x0aline\x09tab"`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestErrorLine(t *testing.T) {
	for in, want := range map[string]string{
		"*stdin*:19: libguestfs: error: pread: open: /etc/x: No such file or directory": "pread: open: /etc/x: No such file or directory",
		"libguestfs: warning: something":                                                "",
		"imagevet-err-1: unknown command":                                               "imagevet-err-1: unknown command",
		"  ":                                                                            "",
	} {
		if got := errorLine(in); got != want {
			t.Errorf("errorLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// Without guestfish the inspection says so at once.
func TestInspectWithoutGuestfish(t *testing.T) {
	ins := Inspect(t.Context(), "/nonexistent.qcow2", "qcow2", Config{Guestfish: "/nonexistent/guestfish", Nice: true})
	if !strings.Contains(ins.Error, "/nonexistent/guestfish") || ins.Distro != "" || ins.Fault != jobs.FaultWorker {
		t.Fatalf("inspection without guestfish: %+v; want the worker's fault", *ins)
	}
}

// A guestfish that dies under a command: the error says what it said last.
func TestSessionEndedSaysWhy(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "guestfish")
	script := "#!/bin/sh\necho 'libguestfs: error: could not create appliance through libvirt' >&2\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ins := Inspect(t.Context(), "/nonexistent.qcow2", "qcow2", Config{Guestfish: fake})
	if !strings.Contains(ins.Error, "guestfish run: ") || !strings.Contains(ins.Error, "could not create appliance through libvirt") {
		t.Fatalf("error %q: want the run command and guestfish's last words", ins.Error)
	}
	if ins.Fault != jobs.FaultWorker {
		t.Errorf("fault %q: an appliance that does not start is the worker's", ins.Fault)
	}
}

// Whose an inspection's error is: the session's and the appliance's launch are
// the worker's; libguestfs's answers about the file are the image's.
func TestFaultOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&SessionError{Op: "inspect-os", Err: context.DeadlineExceeded}, jobs.FaultWorker},
		{fmt.Errorf("hygiene: %w", &SessionError{Op: "pread", Err: io.ErrUnexpectedEOF}), jobs.FaultWorker},
		{&CommandError{Command: "run", Message: "could not create appliance"}, jobs.FaultWorker},
		{&NoOSError{Filesystems: 2}, jobs.FaultImage},
		{&CommandError{Command: "inspect-os", Message: "mount: unknown filesystem type"}, jobs.FaultImage},
		{errors.Join(fmt.Errorf("packages: %w", &CommandError{Command: "inspect-list-applications2", Message: "x"})), jobs.FaultImage},
	} {
		if got := faultOf(c.err); got != c.want {
			t.Errorf("faultOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}
