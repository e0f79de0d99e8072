package libvirt

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/imagevet/imagevet/worker/vm"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func goldenSpec() vm.Spec {
	return vm.Spec{
		Name:         vm.DomainName("imagevet", "worker-1", "job-42"),
		Worker:       "worker-1",
		Job:          "job-42",
		Disk:         "/var/lib/imagevet/jobs/job-42/disk.qcow2",
		Seed:         "/var/lib/imagevet/jobs/job-42/seed.iso",
		VCPUs:        2,
		MemoryMiB:    1024,
		MAC:          "52:54:00:AB:CD:EF",
		ConsoleLog:   "/var/lib/imagevet/jobs/job-42/console.log",
		MetadataAddr: "127.0.0.1:8775",
	}
}

func TestDomainGolden(t *testing.T) {
	uefi := &firmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/usr/share/OVMF/OVMF_VARS_4M.fd"}
	cases := []struct {
		name    string
		accel   string
		mutate  func(*vm.Spec)
		fw      *firmware
		backing []backingFile
	}{
		{"bios-tcg-cdrom", vm.AccelTCG, func(s *vm.Spec) {}, nil, []backingFile{{"/var/cache/imagevet/images/sha256-ab12.qcow2", "qcow2"}}},
		{"bios-kvm-cdrom", vm.AccelKVM, func(s *vm.Spec) {}, nil, []backingFile{{"/var/cache/imagevet/images/sha256-ab12.raw", "raw"}}},
		{"uefi-tcg-cdrom", vm.AccelTCG, func(s *vm.Spec) {
			s.Firmware = vm.FirmwareUEFI
			s.NVRAM = "/var/lib/imagevet/jobs/job-42/nvram.fd"
		}, uefi, nil},
		{"uefi-kvm-disk", vm.AccelKVM, func(s *vm.Spec) {
			s.Firmware = vm.FirmwareUEFI
			s.NVRAM = "/var/lib/imagevet/jobs/job-42/nvram.fd"
			s.SeedBus = vm.SeedDisk
		}, uefi, nil},
		{"bios-q35-tcg-cdrom", vm.AccelTCG, func(s *vm.Spec) { s.Machine = vm.MachineQ35 }, nil, nil},
		{"bios-tcg-disk-nometadata", vm.AccelTCG, func(s *vm.Spec) {
			s.SeedBus = vm.SeedDisk
			s.MetadataAddr = ""
			s.MAC = ""
		}, nil, nil},
		{"bios-tcg-noseed", vm.AccelTCG, func(s *vm.Spec) {
			s.Seed = ""
		}, nil, []backingFile{{"/c/top.qcow2", "qcow2"}, {"/c/base.raw", "raw"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := goldenSpec()
			c.mutate(&s)
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			d, err := buildDomain(domainParams{Spec: s, UUID: "6f1c0a52-3d2e-4b8a-9c1d-2e3f4a5b6c7d", Accel: c.accel, SSHPort: 40022, UEFI: c.fw, Backing: c.backing})
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got += "\n"
			path := filepath.Join("testdata", c.name+".xml")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("domain XML differs from %s (run with -update to accept):\n%s", path, got)
			}
			// The document must parse back to the same definition.
			var back libvirtxml.Domain
			if err := back.Unmarshal(got); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if back.Name != s.Name || back.Devices.Serials[0].Log.File != s.ConsoleLog {
				t.Errorf("round trip lost name or console log")
			}
		})
	}
}

func TestDomainSafetyProperties(t *testing.T) {
	s := goldenSpec()
	d, err := buildDomain(domainParams{Spec: s, UUID: "6f1c0a52-3d2e-4b8a-9c1d-2e3f4a5b6c7d", Accel: vm.AccelTCG, SSHPort: 40022})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Devices.Interfaces) != 0 {
		t.Error("domain has a libvirt network interface; guests must only use restricted slirp")
	}
	if len(d.Devices.Graphics) != 0 || len(d.Devices.Videos) != 0 {
		t.Error("domain has graphics")
	}
	args := d.QEMUCommandline.Args
	var netdev string
	for i := range args {
		if args[i].Value == "-netdev" && i+1 < len(args) {
			netdev = args[i+1].Value
		}
	}
	for _, want := range []string{"restrict=on", "hostfwd=tcp:127.0.0.1:40022-:22", "net=169.254.169.0/24", "host=169.254.169.1",
		"guestfwd=tcp:169.254.169.254:80-tcp:127.0.0.1:8775,,reconnect=1"} {
		if !strings.Contains(netdev, want) {
			t.Errorf("netdev %q lacks %q", netdev, want)
		}
	}
	// libvirt's own seccomp policy stays: no capability dropped but the CPU
	// read-back one, no -sandbox of ours, and no command run per connection.
	for _, c := range d.QEMUCapabilities.Del {
		if c.Name != "cpu-unavailable-features" {
			t.Errorf("domain drops libvirt capability %q", c.Name)
		}
	}
	for _, a := range args {
		if a.Value == "-sandbox" || strings.Contains(a.Value, "cmd:") {
			t.Errorf("qemu argument %q", a.Value)
		}
	}
	if d.CPU.Mode != "maximum" || d.Type != "qemu" {
		t.Errorf("tcg domain: type %q cpu %q", d.Type, d.CPU.Mode)
	}
}

func TestOptEscape(t *testing.T) {
	if got := optEscape("a,b,,c"); got != "a,,b,,,,c" {
		t.Errorf("optEscape = %q", got)
	}
}

func TestFindFirmware(t *testing.T) {
	dir := t.TempDir()
	code, vars := filepath.Join(dir, "CODE.fd"), filepath.Join(dir, "VARS.fd")
	missing := firmware{filepath.Join(dir, "nope.fd"), filepath.Join(dir, "nope-vars.fd")}
	if _, err := findFirmware([]firmware{missing}); !strings.Contains(err.Error(), "ovmf package") {
		t.Errorf("missing firmware error = %v", err)
	}
	os.WriteFile(code, []byte("code"), 0o644)
	os.WriteFile(vars, []byte("template-vars"), 0o644)
	fw, err := findFirmware([]firmware{missing, {code, vars}})
	if err != nil || fw.Code != code {
		t.Fatalf("findFirmware = %v, %v", fw, err)
	}
	nv := filepath.Join(dir, "nvram.fd")
	if err := ensureNVRAM(nv, vars); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(nv); string(b) != "template-vars" {
		t.Errorf("nvram = %q", b)
	}
	os.WriteFile(nv, []byte("guest-written"), 0o600)
	if err := ensureNVRAM(nv, vars); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(nv); string(b) != "guest-written" {
		t.Errorf("existing nvram overwritten: %q", b)
	}
}
