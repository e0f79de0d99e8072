package libvirt

import (
	"errors"
	"strings"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
)

func TestKernelEnded(t *testing.T) {
	for _, c := range []struct {
		log  string
		want bool
	}{
		{"[    0.000000] Linux version 6.1.0-57-cloud-amd64\n[    1.2] VFS: Unable to mount root fs on unknown-block(0,0)\n", true},
		{"[    1.3] Kernel panic - not syncing: VFS: Unable to mount root fs\n", true},
		{"[    0.000000] Linux version 6.1.0\n[    0.1] smpboot: CPU0: Intel\n", false},
		{"", false},
	} {
		if got := kernelEnded([]byte(c.log)); got != c.want {
			t.Errorf("kernelEnded(%q) = %v, want %v", c.log, got, c.want)
		}
	}
}

func TestProbeReasonsQuoteTheGuest(t *testing.T) {
	if got := lastLine([]byte("a\n  [ 0.5] smpboot: CPU0  \n\n")); got != "[ 0.5] smpboot: CPU0" {
		t.Errorf("lastLine = %q", got)
	}
	if got := lastLine([]byte(strings.Repeat("x", 400))); len(got) > 170 {
		t.Errorf("lastLine is not bounded: %d bytes", len(got))
	}
	err := golibvirt.Error{Code: 1, Message: "internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: kvm.c:3183: Assertion failed"}
	if got := firstErrorLine(err); got != "internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" {
		t.Errorf("firstErrorLine = %q", got)
	}
	if got := firstErrorLine(errors.New("one\ntwo")); got != "one" {
		t.Errorf("firstErrorLine = %q", got)
	}
}

func TestProbeDomainBootsTheKernelWithoutARoot(t *testing.T) {
	d := probeDomain("imagevet-kvmprobe-x", "00000000-0000-0000-0000-000000000001", "/boot/vmlinuz-6.1", "/tmp/c.log")
	doc, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`type="kvm"`, `mode="host-passthrough"`, "<kernel>/boot/vmlinuz-6.1</kernel>", "panic=-1", "<on_reboot>destroy</on_reboot>", `file="/tmp/c.log"`} {
		if !strings.Contains(doc, want) {
			t.Errorf("probe domain lacks %s:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "<disk") {
		t.Errorf("probe domain has a disk:\n%s", doc)
	}
}
