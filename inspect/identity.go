package inspect

import (
	"cmp"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/imagevet/imagevet/jobs"
)

// Glance property names the identity check compares and fills.
const (
	PropOSDistro    = "os_distro"
	PropOSVersion   = "os_version"
	PropArch        = "architecture"
	PropOSAdminUser = "os_admin_user"
)

// distroAliases maps the names a job (Glance's os_distro vocabulary) or
// libguestfs use for one distribution to one name.
var distroAliases = map[string]string{
	"archlinux": "arch", "redhat": "rhel", "redhat-based": "rhel",
	"opensuse-leap": "opensuse", "opensuse-tumbleweed": "opensuse", "suse": "sles",
	"alma": "almalinux", "rockylinux": "rocky", "fedora-coreos": "fedora", "fcos": "fedora",
}

// knownDistros are the distribution names a family name is read for.
var knownDistros = map[string]bool{
	"debian": true, "ubuntu": true, "fedora": true, "rhel": true, "centos": true, "rocky": true,
	"almalinux": true, "opensuse": true, "sles": true, "arch": true, "alpine": true, "oraclelinux": true,
	"flatcar": true, "freebsd": true, "gentoo": true, "mageia": true, "openbsd": true, "netbsd": true,
}

// archAliases maps architecture names (Debian's, Glance's, libguestfs's) to
// Glance's.
var archAliases = map[string]string{
	"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686", "i486": "i686",
	"i586": "i686", "x86": "i686", "ppc64el": "ppc64le", "armhf": "armv7l", "armv7hl": "armv7l",
}

func normDistro(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if a, ok := distroAliases[s]; ok {
		return a
	}
	return s
}

func normArch(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if a, ok := archAliases[s]; ok {
		return a
	}
	return s
}

// Identity judges an inspection against what the job says the image is: its
// publish.properties os_distro, os_version and architecture, and its family
// name's distribution, version and architecture words ("debian-12-amd64"). A
// mismatch fails naming both sides; a claim the job does not make is not
// judged. An inspection that could not tell (no OS recognised, the image
// unreadable, out of time) skips with its reason: without facts there is
// nothing to compare (the worker makes that skip an error when the fault was
// its own, jobs.Inspection.Unfinished).
func Identity(ins *jobs.Inspection, pub jobs.Publication) jobs.CheckResult {
	res := jobs.CheckResult{Name: jobs.CheckIdentity}
	if ins == nil {
		res.Status, res.Reason = jobs.StatusSkip, "the image was not inspected"
		return res
	}
	if ins.Distro == "" {
		res.Status, res.Reason = jobs.StatusSkip, "the inspection could not tell what the image is"
		if ins.Error != "" {
			res.Reason += ": " + ins.Error
		}
		return res
	}
	seen := describe(ins)
	var wrong []string
	if d := pub.Properties[PropOSDistro]; d != "" && normDistro(d) != normDistro(ins.Distro) {
		wrong = append(wrong, fmt.Sprintf("os_distro %s", d))
	}
	if v := pub.Properties[PropOSVersion]; v != "" && !sameVersion(v, ins) {
		wrong = append(wrong, fmt.Sprintf("os_version %s", v))
	}
	if a := pub.Properties[PropArch]; a != "" && ins.Arch != "" && normArch(a) != normArch(ins.Arch) {
		wrong = append(wrong, fmt.Sprintf("architecture %s", a))
	}
	if w := familyMismatch(pub.Family, ins); w != "" {
		wrong = append(wrong, w)
	}
	if len(wrong) > 0 {
		res.Status = jobs.StatusFail
		res.Reason = fmt.Sprintf("image is %s, the job says %s", seen, strings.Join(wrong, ", "))
		return res
	}
	res.Status, res.Reason = jobs.StatusPass, "image is "+seen
	return res
}

// describe names what the inspection found: "debian 13 (trixie) x86_64".
func describe(ins *jobs.Inspection) string {
	s := ins.Distro
	if ins.Version != "" {
		s += " " + ins.Version
	}
	if ins.Codename != "" {
		s += " (" + ins.Codename + ")"
	}
	if ins.Arch != "" {
		s += " " + ins.Arch
	}
	return s
}

// sameVersion reports whether the job's version claim fits the image: each
// numeric component the job names equals the image's ("12" fits 12.15, "22.04"
// fits 22.4), or the claim is the image's codename.
func sameVersion(claim string, ins *jobs.Inspection) bool {
	claim = strings.TrimSpace(claim)
	if ins.Codename != "" && strings.EqualFold(claim, ins.Codename) || ins.VersionID != "" && claim == ins.VersionID {
		return true
	}
	want := strings.Split(claim, ".")
	have := strings.Split(ins.Version, ".")
	if len(want) > len(have) {
		// The image says less than the job: only what it says is compared.
		want = want[:len(have)]
	}
	for i, w := range want {
		wn, err1 := strconv.Atoi(w)
		hn, err2 := strconv.Atoi(have[i])
		if err1 != nil || err2 != nil {
			if w != have[i] {
				return false
			}
			continue
		}
		if wn != hn {
			return false
		}
	}
	return len(want) > 0
}

// familyMismatch reads a family name's words: a distribution name that is not
// the image's, the number after it that is not its major version, or an
// architecture name that is not its architecture; "" when nothing disagrees.
func familyMismatch(family string, ins *jobs.Inspection) string {
	words := strings.FieldsFunc(strings.ToLower(family), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	})
	major, _, _ := strings.Cut(ins.Version, ".")
	for i, w := range words {
		d := normDistro(w)
		if knownDistros[d] {
			if d != normDistro(ins.Distro) {
				return fmt.Sprintf("family %s", family)
			}
			if i+1 < len(words) && isNumber(words[i+1]) && major != "" && words[i+1] != major &&
				!(ins.Codename != "" && words[i+1] == ins.Codename) {
				return fmt.Sprintf("family %s", family)
			}
			continue
		}
		if a := normArch(w); ins.Arch != "" && isArch(a) && a != normArch(ins.Arch) {
			return fmt.Sprintf("family %s", family)
		}
	}
	return ""
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func isArch(a string) bool {
	switch a {
	case "x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l", "riscv64":
		return true
	}
	return false
}

// Fill returns the job's publication with the properties the job leaves empty
// (os_distro, os_version, architecture, os_admin_user) taken from the
// inspection, and the names of those it filled. The job's own map is not
// changed.
func Fill(pub jobs.Publication, ins *jobs.Inspection) (jobs.Publication, []string) {
	if ins == nil || ins.Distro == "" {
		return pub, nil
	}
	props := maps.Clone(pub.Properties)
	if props == nil {
		props = map[string]string{}
	}
	var filled []string
	for _, p := range []struct{ key, val string }{
		{PropOSDistro, normDistro(ins.Distro)},
		{PropOSVersion, cmp.Or(ins.VersionID, ins.Version)},
		{PropArch, normArch(ins.Arch)},
		{PropOSAdminUser, ins.AdminUser},
	} {
		if p.val != "" && props[p.key] == "" {
			props[p.key] = p.val
			filled = append(filled, p.key)
		}
	}
	if len(filled) > 0 {
		pub.Properties = props
	}
	return pub, filled
}
