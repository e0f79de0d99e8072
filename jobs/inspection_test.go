package jobs

import (
	"testing"
	"time"
)

func TestInspectionSummary(t *testing.T) {
	for _, tc := range []struct {
		in   Inspection
		want string
	}{
		{Inspection{Distro: "debian", Version: "12.15", Codename: "bookworm", Arch: "x86_64", PackageFormat: "deb",
			Kernels: []string{"6.1.0-28-cloud-amd64", "6.1.0-27-cloud-amd64"}, Packages: make([]Package, 224), Took: Duration(25123 * time.Millisecond)},
			"debian 12.15 (bookworm) x86_64, kernel 6.1.0-28-cloud-amd64, 224 deb packages, took 25.1s"},
		{Inspection{Error: "libguestfs recognises no operating system in the image (1 file systems)", Took: Duration(18 * time.Second)},
			"could not tell what the image is: libguestfs recognises no operating system in the image (1 file systems) (took 18s)"},
		{Inspection{Distro: "fedora", Version: "43", Error: "packages: guestfish inspect-list-applications2: out of memory"},
			"fedora 43, took 0s, incomplete: packages: guestfish inspect-list-applications2: out of memory"},
		{Inspection{}, "could not tell what the image is: no operating system recognised (took 0s)"},
	} {
		if got := tc.in.Summary(); got != tc.want {
			t.Errorf("Summary() = %q, want %q", got, tc.want)
		}
	}
}
