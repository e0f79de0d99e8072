package vm

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

func TestDomainName(t *testing.T) {
	cases := []struct{ prefix, worker, job, want string }{
		{"imagevet", "w1", "job-1", "imagevet-w1--job-1"},
		{"imagevet-", "w1", "job-1", "imagevet-w1--job-1"},
		{"imagevet-test", "w1", "job-1", "imagevet-test-w1--job-1"},
		{"imagevet", "host.example", "0f8e2c1a-5b7d-4e9f-a1b2-c3d4e5f60718", ""},
		{"imagevet", "w1", "Job_1", ""},
		{"imagevet", "w1", strings.Repeat("j", 200), ""},
		{"imagevet", strings.Repeat("w", 100), "j", ""},
		{"imagevet", "", "", ""},
		{"imagevet", "ünïcode", "***", ""},
	}
	for _, c := range cases {
		got := DomainName(c.prefix, c.worker, c.job)
		if len(got) > MaxNameLen {
			t.Errorf("DomainName(%q,%q,%q) = %q: %d chars > %d", c.prefix, c.worker, c.job, got, len(got), MaxNameLen)
		}
		if !strings.HasPrefix(got, WorkerPrefix(c.prefix, c.worker)) {
			t.Errorf("DomainName(%q,%q,%q) = %q lacks worker prefix %q", c.prefix, c.worker, c.job, got, WorkerPrefix(c.prefix, c.worker))
		}
		for _, p := range strings.Split(got, "--") {
			if !nameRE.MatchString(p) {
				t.Errorf("DomainName(%q,%q,%q) = %q: part %q not [a-z0-9-]", c.prefix, c.worker, c.job, got, p)
			}
		}
		if again := DomainName(c.prefix, c.worker, c.job); again != got {
			t.Errorf("not stable: %q then %q", got, again)
		}
		if c.want != "" && got != c.want {
			t.Errorf("DomainName(%q,%q,%q) = %q, want %q", c.prefix, c.worker, c.job, got, c.want)
		}
	}
}

func TestDomainNameDistinct(t *testing.T) {
	seen := map[string]string{}
	ids := []string{"job-1", "job_1", "JOB-1", "job.1", "job--1", strings.Repeat("a", 80) + "1", strings.Repeat("a", 80) + "2"}
	for _, id := range ids {
		n := DomainName("imagevet", "w", id)
		if prev, ok := seen[n]; ok {
			t.Errorf("jobs %q and %q both map to %q", prev, id, n)
		}
		seen[n] = id
	}
}

func TestWorkerPrefixIsolation(t *testing.T) {
	// One worker's sweep prefix must not match another worker's machines.
	workers := []string{"w1", "w1-x", "w1x", "w", "w1--x", "W1"}
	for _, a := range workers {
		for _, b := range workers {
			if a == b {
				continue
			}
			name := DomainName("imagevet", b, "job")
			if strings.HasPrefix(name, WorkerPrefix("imagevet", a)) {
				t.Errorf("worker %q prefix %q matches worker %q machine %q", a, WorkerPrefix("imagevet", a), b, name)
			}
		}
	}
}

func validSpec() Spec {
	return Spec{
		Name: "imagevet-w--j", Disk: "/d/disk.qcow2", Seed: "/d/seed.iso", ConsoleLog: "/d/console.log",
		VCPUs: 1, MemoryMiB: 512, MAC: "52:54:00:12:34:56",
		MetadataAddr: "127.0.0.1:8775",
	}
}

func TestSpecValidate(t *testing.T) {
	if err := validSpec().Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	bad := map[string]func(*Spec){
		"empty name":       func(s *Spec) { s.Name = "" },
		"long name":        func(s *Spec) { s.Name = strings.Repeat("a", 65) },
		"relative disk":    func(s *Spec) { s.Disk = "disk.qcow2" },
		"relative seed":    func(s *Spec) { s.Seed = "seed.iso" },
		"relative console": func(s *Spec) { s.ConsoleLog = "c.log" },
		"zero vcpus":       func(s *Spec) { s.VCPUs = 0 },
		"tiny memory":      func(s *Spec) { s.MemoryMiB = 16 },
		"seed bus":         func(s *Spec) { s.SeedBus = "floppy" },
		"firmware":         func(s *Spec) { s.Firmware = "coreboot" },
		"uefi no nvram":    func(s *Spec) { s.Firmware = FirmwareUEFI },
		"accel":            func(s *Spec) { s.Accel = "hvf" },
		"machine":          func(s *Spec) { s.Machine = "virt" },
		"mac":              func(s *Spec) { s.MAC = "nope" },
		"multicast mac":    func(s *Spec) { s.MAC = "01:00:5e:00:00:01" },
		"metadata no port": func(s *Spec) { s.MetadataAddr = "127.0.0.1" },
		"metadata remote":  func(s *Spec) { s.MetadataAddr = "10.0.0.1:80" },
		"metadata options": func(s *Spec) { s.MetadataAddr = "127.0.0.1:80,server=on" },
		"metadata ipv6":    func(s *Spec) { s.MetadataAddr = "[::1]:80" },
	}
	for name, mutate := range bad {
		s := validSpec()
		mutate(&s)
		err := s.Validate()
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidSpec", name, err)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	inner := fmt.Errorf("dial: %w", ErrUnavailable)
	err := fmt.Errorf("boot job: %w", &Error{Op: "boot", Machine: "m", Retryable: true, Err: inner})
	if !IsRetryable(err) {
		t.Errorf("IsRetryable(%v) = false", err)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("errors.Is(%v, ErrUnavailable) = false", err)
	}
	if IsRetryable(&Error{Op: "boot", Err: ErrInvalidSpec}) {
		t.Error("invalid spec reported retryable")
	}
	if IsRetryable(errors.New("plain")) {
		t.Error("plain error reported retryable")
	}
	if got := (&Error{Op: "boot", Machine: "m", Err: ErrTimeout}).Error(); got != "vm boot m: hypervisor call timed out" {
		t.Errorf("Error() = %q", got)
	}
}

func TestMachineType(t *testing.T) {
	s := validSpec()
	if got := s.MachineType(); got != MachinePC {
		t.Errorf("bios default = %q", got)
	}
	s.Firmware, s.NVRAM = FirmwareUEFI, "/d/nvram.fd"
	if got := s.MachineType(); got != MachineQ35 {
		t.Errorf("uefi default = %q", got)
	}
	s.Machine = MachinePC
	if got := s.MachineType(); got != MachinePC {
		t.Errorf("explicit = %q", got)
	}
}
