package inspect

import (
	"slices"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

func TestIdentity(t *testing.T) {
	trixie := &jobs.Inspection{Distro: "debian", Version: "13.2", Codename: "trixie", Arch: "x86_64"}
	bookworm := &jobs.Inspection{Distro: "debian", Version: "12.15", Codename: "bookworm", Arch: "x86_64"}
	noble := &jobs.Inspection{Distro: "ubuntu", Version: "24.4", Codename: "noble", Arch: "aarch64"}
	props := func(kv ...string) jobs.Publication {
		p := jobs.Publication{Properties: map[string]string{}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i] == "family" {
				p.Family = kv[i+1]
				continue
			}
			p.Properties[kv[i]] = kv[i+1]
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		ins    *jobs.Inspection
		pub    jobs.Publication
		status jobs.CheckStatus
		reason string
	}{
		{"debian12 as debian 12", bookworm, props("os_distro", "debian", "os_version", "12", "architecture", "x86_64", "family", "debian-12"),
			jobs.StatusPass, "image is debian 12.15 (bookworm) x86_64"},
		{"trixie labelled 12", trixie, props("os_distro", "debian", "os_version", "12", "family", "debian-12"),
			jobs.StatusFail, "image is debian 13.2 (trixie) x86_64, the job says os_version 12, family debian-12"},
		{"codename as version", bookworm, props("os_version", "bookworm"), jobs.StatusPass, ""},
		{"ubuntu 24.04 and arm64 names", noble, props("os_distro", "ubuntu", "os_version", "24.04", "architecture", "arm64", "family", "ubuntu-24.04-arm64"),
			jobs.StatusPass, ""},
		{"an arm64 file in an amd64 family", noble, props("family", "ubuntu-24.04-amd64"), jobs.StatusFail,
			"image is ubuntu 24.4 (noble) aarch64, the job says family ubuntu-24.04-amd64"},
		{"another distribution", bookworm, props("os_distro", "ubuntu"), jobs.StatusFail,
			"image is debian 12.15 (bookworm) x86_64, the job says os_distro ubuntu"},
		{"wrong architecture", bookworm, props("architecture", "aarch64"), jobs.StatusFail, ""},
		{"no claims", bookworm, jobs.Publication{}, jobs.StatusPass, ""},
		{"not inspected", nil, props("os_distro", "debian"), jobs.StatusSkip, "the image was not inspected"},
		{"no OS recognised", &jobs.Inspection{Error: (&NoOSError{Filesystems: 1}).Error()}, props("os_distro", "tiny"),
			jobs.StatusSkip, "the inspection could not tell what the image is: libguestfs recognises no operating system in the image (1 file systems)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Identity(tc.ins, tc.pub)
			if got.Name != jobs.CheckIdentity || got.Status != tc.status || (tc.reason != "" && got.Reason != tc.reason) {
				t.Fatalf("Identity = %s %q, want %s %q", got.Status, got.Reason, tc.status, tc.reason)
			}
		})
	}
}

func TestFill(t *testing.T) {
	ins := &jobs.Inspection{Distro: "debian", Version: "12.15", VersionID: "12", Arch: "x86_64", AdminUser: "debian"}
	if pub, filled := Fill(jobs.Publication{}, ins); len(filled) != 4 || pub.Properties["os_version"] != "12" {
		t.Fatalf("filled %v: %v; want os_version from VERSION_ID", filled, pub.Properties)
	}
	job := jobs.Publication{Properties: map[string]string{"os_distro": "debian", "os_version": "12"}}
	pub, filled := Fill(job, ins)
	if !slices.Equal(filled, []string{"architecture", "os_admin_user"}) {
		t.Fatalf("filled %v", filled)
	}
	if pub.Properties["os_version"] != "12" || pub.Properties["architecture"] != "x86_64" || pub.Properties["os_admin_user"] != "debian" {
		t.Fatalf("properties %v", pub.Properties)
	}
	if len(job.Properties) != 2 {
		t.Fatalf("the job's own map changed: %v", job.Properties)
	}
	if _, filled := Fill(job, &jobs.Inspection{Error: "no OS"}); filled != nil {
		t.Fatalf("filled from no facts: %v", filled)
	}
}
