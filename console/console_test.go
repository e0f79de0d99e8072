package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// scan runs a watch over a finished log file and returns it closed.
func scan(t *testing.T, content string) *Console {
	t.Helper()
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Watch(context.Background(), path, DefaultRules())
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return c
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKernelPanic(t *testing.T) {
	c := scan(t, readTestdata(t, "panic.log"))
	m, ok := c.Fatal()
	if !ok {
		t.Fatal("no fatal match for a kernel panic")
	}
	if m.Check != "kernel-panic" {
		t.Errorf("check = %q, want kernel-panic (the root-mount line is part of the panic line)", m.Check)
	}
	if !strings.Contains(m.Line, "VFS: Unable to mount root fs on unknown-block(0,0)") {
		t.Errorf("line = %q", m.Line)
	}
	if got := m.String(); !strings.HasPrefix(got, "kernel panic: [") || strings.Contains(got, "\n") {
		t.Errorf("String() = %q, want one line starting with the reason", got)
	}
	select {
	case fm := <-c.Failed():
		if fm.Check != m.Check {
			t.Errorf("Failed() delivered %q, Fatal() says %q", fm.Check, m.Check)
		}
	default:
		t.Error("Failed() delivered nothing")
	}
	if _, ok := c.Milestone(MilestoneKernel); !ok {
		t.Error("kernel milestone not seen")
	}
	if !strings.Contains(c.Tail(3), "end Kernel panic") {
		t.Errorf("tail misses the last line: %q", c.Tail(3))
	}
}

func TestEmergencyMode(t *testing.T) {
	c := scan(t, readTestdata(t, "emergency.log"))
	m, ok := c.Fatal()
	if !ok || m.Check != "emergency-mode" {
		t.Fatalf("fatal = %+v, %v; want emergency-mode", m, ok)
	}
	if !strings.HasPrefix(m.Line, "You are in emergency mode.") {
		t.Errorf("line = %q", m.Line)
	}
	var failedUnit bool
	for _, w := range c.Warnings() {
		if w.Check == "systemd-failed-unit" {
			failedUnit = true
			if strings.ContainsRune(w.Line, 0x1b) {
				t.Errorf("escape sequences left in %q", w.Line)
			}
			if !strings.HasPrefix(w.Line, "[FAILED] Failed to mount data.mount") {
				t.Errorf("cleaned line = %q", w.Line)
			}
		}
	}
	if !failedUnit {
		t.Errorf("the failed mount was not recorded as a warning: %+v", c.Warnings())
	}
	// The unterminated prompt is part of the tail.
	if !strings.HasSuffix(c.Tail(0), "Press Enter to continue.") {
		t.Errorf("tail end = %q", c.Tail(2))
	}
}

func TestGoodDebianBoot(t *testing.T) {
	c := scan(t, readTestdata(t, "debian-good.log"))
	if m, ok := c.Fatal(); ok {
		t.Fatalf("good boot judged fatal: %s", m)
	}
	var names []string
	for _, m := range c.Milestones() {
		names = append(names, m.Check)
	}
	want := []string{MilestoneFirmware, MilestoneBootloader, MilestoneKernel, MilestoneInitramfsStarted, MilestoneInit,
		MilestoneCloudInitStart, MilestoneCloudInitConfig, MilestoneCloudInitFinal, MilestoneSSHHostKeys, MilestoneCloudInitDone, MilestoneLoginPrompt}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("milestones\n got %v\nwant %v", names, want)
	}
	warn := map[string]bool{}
	for _, w := range c.Warnings() {
		warn[w.Check] = true
	}
	for _, w := range []string{"kernel-bug", "kernel-stall", "systemd-failed-unit"} {
		if !warn[w] {
			t.Errorf("warning %s not recorded: %+v", w, c.Warnings())
		}
	}
	if m, _ := c.Milestone(MilestoneLoginPrompt); m.Line != "vet-job1 login:" && m.Line != "vet-job1 login: " {
		t.Errorf("login prompt line = %q", m.Line)
	}
	if strings.Contains(c.Tail(0), "\x1b") || strings.Contains(c.Tail(0), "\r") {
		t.Error("tail keeps escapes or carriage returns")
	}
}

// getty's prompt ends without a newline, so a kernel-timestamped line printed
// before the next read shares its line: still a login prompt.
func TestLoginPromptSharedLine(t *testing.T) {
	for line, want := range map[string]bool{
		"vet-debian12 login: [   67.807527] cloud-init[437]: Cloud-init v. 22.4.2 running 'modules:config'": true,
		"vet-debian12 login: ":                     true,
		"Last login: Tue Dec  1 09:33:04 on ttyS0": false,
		"vet login: incorrect":                     false,
	} {
		c := scan(t, line+"\n")
		if _, got := c.Milestone(MilestoneLoginPrompt); got != want {
			t.Errorf("%q: login prompt %v, want %v", line, got, want)
		}
	}
}

func TestTracebacks(t *testing.T) {
	cloudInit := strings.Join([]string{
		"[   55.3] cloud-init[530]: Cloud-init v. 23.1.2 running 'init' at Mon, 04 Mar 2024 10:11:26 +0000. Up 55.10 seconds.",
		"[   55.9] cloud-init[530]: Traceback (most recent call last):",
		`[   55.9] cloud-init[530]:   File "/usr/lib/python3/dist-packages/cloudinit/cmd/main.py", line 767, in status_wrapper`,
		"[   55.9] cloud-init[530]:     ret = functor(name, args)",
		"[   55.9] cloud-init[530]: KeyError: 'network'",
		"",
	}, "\r\n")
	c := scan(t, cloudInit)
	if m, ok := c.Fatal(); !ok || m.Check != "cloud-init-traceback" {
		t.Fatalf("cloud-init traceback: fatal = %+v, %v", m, ok)
	}

	other := strings.Join([]string{
		"[   60.1] Traceback (most recent call last):",
		`[   60.1]   File "/usr/bin/unattended-upgrade", line 2460, in <module>`,
		"[   60.1] ValueError: bad value",
		"",
	}, "\r\n") + strings.Repeat("filler\r\n", 50) + "Cloud-init v. 23.1.2 running 'modules:final' at Mon\r\n"
	c = scan(t, other)
	if m, ok := c.Fatal(); ok {
		t.Fatalf("harmless traceback judged fatal: %s", m)
	}
	if len(c.Warnings()) != 1 || c.Warnings()[0].Check != "python-traceback" {
		t.Errorf("warnings = %+v, want one python-traceback", c.Warnings())
	}
}

func TestPrompts(t *testing.T) {
	for _, tc := range []struct{ text, check string }{
		{"error: unknown filesystem.\r\nEntering rescue mode...\r\ngrub rescue> ", "grub-rescue"},
		{"You are in rescue mode. After logging in, type \"journalctl -xb\" to view\r\n", "rescue-mode"},
		{"error: unknown filesystem.\r\ngrub rescue> ", "grub-rescue"},
		{"Gave up waiting for root file system device.  Common problems:\r\n", "root-mount"},
		{"ALERT!  UUID=1234-abcd does not exist.  Dropping to a shell!\r\n", "root-mount"},
		{"BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) built-in shell (ash)\r\n\r\n(initramfs) ", "initramfs-shell"},
		{"Booting from Hard Disk...\r\nBoot failed: not a bootable disk\r\n\r\nNo bootable device.\r\n", "no-bootable-device"},
		{"BdsDxe: failed to load Boot0001 \"UEFI Misc Device\"\r\nUEFI Interactive Shell v2.2\r\n", "uefi-shell"},
		{"[  120.1] dracut-initqueue[301]: Warning: dracut-initqueue timeout - starting timeout scripts\r\n[  180.2] dracut-initqueue[301]: Warning: Could not boot.\r\nStarting Dracut Emergency Shell...\r\n", "dracut-emergency"},
		{"Give root password for maintenance\r\n(or press Control-D to continue): ", "emergency-mode"},
	} {
		c := scan(t, tc.text)
		m, ok := c.Fatal()
		if !ok || m.Check != tc.check {
			t.Errorf("%q: fatal = %q (%v), want %q", tc.text, m.Check, ok, tc.check)
		}
	}
}

// TestLiveAppend is the contract the worker relies on: a fatal line appended to a
// growing file is reported within 500 ms, also when the file appears late and
// the line is written in pieces.
func TestLiveAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := Watch(ctx, path, DefaultRules())
	defer c.Close()

	time.Sleep(150 * time.Millisecond) // file does not exist yet
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < 20; i++ {
		f.WriteString("[    1.0] booting along nicely\r\n")
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case m := <-c.Failed():
		t.Fatalf("early fatal: %s", m)
	default:
	}
	f.WriteString("[    3.1] Kernel panic - not sync")
	time.Sleep(30 * time.Millisecond)
	written := time.Now()
	f.WriteString("ing: Attempted to kill init! exitcode=0x00000100\r\n")
	select {
	case m := <-c.Failed():
		lat := m.Time.Sub(written)
		t.Logf("reported %v after the write", lat)
		if m.Check != "kernel-panic" {
			t.Errorf("check = %q", m.Check)
		}
		if lat > 500*time.Millisecond {
			t.Errorf("reported after %v, want within 500ms", lat)
		}
	case <-time.After(500 * time.Millisecond):
		t.Fatal("panic line not reported within 500ms")
	}
	if n := strings.Count(c.Tail(0), "booting along nicely"); n != 20 {
		t.Errorf("tail has %d boot lines, want 20", n)
	}
}

func TestTruncateAndReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte(strings.Repeat("old line padding padding\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Watch(context.Background(), path, DefaultRules())
	defer c.Close()
	waitFor(t, func() bool { return strings.Count(c.Tail(0), "old line") == 100 })

	// Truncate in place (a restarted domain reuses the log).
	if err := os.WriteFile(path, []byte("Linux version 6.1 fresh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := c.Milestone(MilestoneKernel); return ok })

	// Replace the file (log rotation).
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte("You are in emergency mode. After logging in\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-c.Failed():
		if m.Check != "emergency-mode" {
			t.Errorf("check = %q", m.Check)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("line in the replaced file not seen")
	}
}

func TestTailBounds(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		b.WriteString(strings.Repeat("x", 500))
		b.WriteString("\n")
	}
	b.WriteString(strings.Repeat("y", 20000)) // an endless line is split
	c := scan(t, b.String())
	tail := c.Tail(0)
	if len(tail) > DefaultTailBytes+maxLine+1 {
		t.Errorf("tail is %d bytes, want bounded near %d", len(tail), DefaultTailBytes)
	}
	if got := strings.Split(c.Tail(5), "\n"); len(got) != 5 {
		t.Errorf("Tail(5) has %d lines", len(got))
	}
	if !strings.HasSuffix(tail, "yyyy") {
		t.Error("tail misses the last bytes")
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain\r":                       "plain",
		"\x1b[0;32m  OK  \x1b[0m] Ok\r": "  OK  ] Ok",
		"a\tb":                          "a b",
		"50%\r100%":                     "50% 100%",
		"\x1b]0;title\x07text":          "text",
		"\x1b(Bbox":                     "box",
		"\x1bcSeaBIOS (version 1.16.2)": "SeaBIOS (version 1.16.2)",
		"\x1b7saved\x1b8":               "saved",
		"\x1bMup":                       "up",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 2s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// GRUB's "Welcome to GRUB!" is the boot loader, not init: init's milestone waits
// for the init system's own welcome.
func TestInitMilestoneIsNotGRUB(t *testing.T) {
	c := scan(t, "Welcome to GRUB!\nLinux version 6.1.0\nWelcome to Debian GNU/Linux 12 (bookworm)!\n")
	m, ok := c.Milestone(MilestoneInit)
	if !ok || !strings.Contains(m.Line, "Debian") {
		t.Errorf("init milestone = %+v, %v; want the Debian welcome line", m, ok)
	}
}

// systemd's line for a failed Ignition service can reach the console before
// Ignition's own (journald forwards it later): the job fails with Ignition's words
// when they follow within the wait, and with systemd's when nothing follows.
func TestIgnitionFailureWaitsForIgnitionsOwnWords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	failed := "[FAILED] Failed to start ignition-fetch-offline.service - Ignition (fetch-offline).\n"
	if err := os.WriteFile(path, []byte("ignition[226]: Ignition Debian 2.14.0\n"+failed), 0o644); err != nil {
		t.Fatal(err)
	}
	c := WatchWith(context.Background(), path, DefaultRules(), Options{PollInterval: 20 * time.Millisecond})
	defer c.Close()
	time.Sleep(300 * time.Millisecond)
	if m, ok := c.Fatal(); ok {
		t.Fatalf("failed with %q before Ignition's own line could come", m.Line)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("ignition[226]: Ignition failed: unsupported config version\n")
	f.Close()
	select {
	case m := <-c.Failed():
		if m.Check != "ignition-failed" || !strings.Contains(m.Line, "unsupported config version") {
			t.Fatalf("fatal %+v, want Ignition's own words", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no verdict after Ignition's own line")
	}

	// Nothing follows: systemd's words once the console ends (or the wait runs out).
	c2 := scan(t, failed)
	if m, ok := c2.Fatal(); !ok || m.Check != "ignition-stage-failed" {
		t.Fatalf("alone, systemd's line gives %+v %v", m, ok)
	}
}

// An awaited explanation that never comes: the waiting match fails the job after
// AwaitFor, while the console is still being followed.
func TestAwaitedExplanationThatNeverComes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("symptom\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checks := []Rule{
		{Name: "symptom", Kind: Fatal, Pattern: regexp.MustCompile(`symptom`), Reason: "s", Await: "cause", AwaitFor: 300 * time.Millisecond},
		{Name: "cause", Kind: Fatal, Pattern: regexp.MustCompile(`cause`), Reason: "c"},
	}
	start := time.Now()
	c := WatchWith(context.Background(), path, checks, Options{PollInterval: 20 * time.Millisecond})
	defer c.Close()
	select {
	case m := <-c.Failed():
		if m.Check != "symptom" || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("fatal %+v after %s", m, time.Since(start))
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the waiting match never failed the job")
	}
}

// A provisioning stage's own lines outlive the tail: a stalled Ignition's words
// are still there after hundreds of other services' status lines, the kept
// lines are bounded and each is clipped.
func TestStageLinesOutliveTheTail(t *testing.T) {
	var b strings.Builder
	b.WriteString("[    2.2] ignition[412]: failed to fetch config from metadata service: unable to fetch resource in time\n")
	for i := range 150 {
		fmt.Fprintf(&b, "[ %4d.0] ignition[470]: GET error: attempt #%d\n", 3+i, i)
	}
	for i := range 300 {
		fmt.Fprintf(&b, "[  *** ] Job ignition-fetch.service/start running (%ds / no limit)\n", i)
	}
	b.WriteString("[  160.0] ignition[470]: " + strings.Repeat("z", 5000) + "\n")
	for i := range 2*DefaultTailLines + 7 {
		fmt.Fprintf(&b, "[ %4d.5] systemd[1]: Starting unit%d.service - Something else...\n", 161+i, i)
	}
	c := scan(t, b.String())
	if strings.Contains(c.Tail(0), "ignition[") {
		t.Fatal("the tail still holds Ignition's lines: the test proves nothing")
	}
	got := c.StageLines("Ignition")
	if len(got) != maxStageLines {
		t.Fatalf("kept %d Ignition lines, want the last %d", len(got), maxStageLines)
	}
	if !strings.Contains(got[len(got)-3], "GET error: attempt #149") || !strings.Contains(got[len(got)-2], "(299s / no limit)") || len(got[len(got)-1]) > 1100 {
		t.Errorf("last lines %q, want attempt #149, the last of systemd's running-job lines, then a clipped line", got[len(got)-3:])
	}
	if l := c.StageLines("cloud-init's init stage"); len(l) != 0 {
		t.Errorf("cloud-init lines %q from an Ignition console", l)
	}
}
