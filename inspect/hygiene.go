package inspect

import (
	"fmt"
	"slices"
	"strings"

	"github.com/imagevet/imagevet/jobs"
)

// Boot is what the boot showed that the hygiene rules join with the evidence.
type Boot struct {
	// HostKey is the SHA256 fingerprint ("SHA256:…") of the host key the booted
	// server presented; empty when the boot did not show one (SSH never answered).
	HostKey string
}

// hygieneRow is one rule: the findings it makes of the evidence, before levels.
type hygieneRow struct {
	rule  string
	judge func(ev *jobs.HygieneEvidence, boot Boot) []jobs.Finding
}

// hygieneRows are the rules, in jobs.HygieneRules' order. The host-key rows split
// one piece of evidence between two rules by what the boot showed.
var hygieneRows = []hygieneRow{
	{jobs.RuleSharedHostKeys, sharedHostKeys},
	{jobs.RuleMachineID, machineID},
	{jobs.RulePasswordAccount, passwordAccounts},
	{jobs.RuleSSHPasswordAuth, sshPasswordAuth},
	{jobs.RuleAuthorizedKeys, each(func(ev *jobs.HygieneEvidence) []string { return ev.AuthorizedKeys },
		"someone's authorized_keys: whoever holds those keys logs in to every tenant's server")},
	{jobs.RuleHostKeys, replacedHostKeys},
	{jobs.RuleCloudInitState, each(func(ev *jobs.HygieneEvidence) []string { return ev.CloudInitState },
		"cloud-init's state from the build: per-instance configuration may be taken as done")},
	{jobs.RuleShellHistory, each(func(ev *jobs.HygieneEvidence) []string { return ev.Histories },
		"a history from the build: commands, and sometimes secrets, every tenant can read")},
	{jobs.RuleDHCPLeases, each(func(ev *jobs.HygieneEvidence) []string { return ev.DHCPLeases },
		"a DHCP lease from the build's network")},
	{jobs.RuleNetRules, each(func(ev *jobs.HygieneEvidence) []string { return ev.NetRules },
		"persistent net rules pin the build's MAC addresses: a new server's NIC gets another name")},
	{jobs.RuleWorldWritableEtc, each(func(ev *jobs.HygieneEvidence) []string { return ev.WorldWritableEtc },
		"world-writable: any local user can change the system's configuration")},
	{jobs.RulePrivateKeys, each(func(ev *jobs.HygieneEvidence) []string { return ev.PrivateKeys },
		"a private key shipped to every tenant")},
}

// Hygiene judges the evidence with what the boot showed: one finding per file a
// rule concerns, at the rule's level in levels (unset rules at their default);
// rules at off give none. A nil evidence gives none.
func Hygiene(ev *jobs.HygieneEvidence, boot Boot, levels jobs.HygieneLevels) []jobs.Finding {
	if ev == nil {
		return nil
	}
	var out []jobs.Finding
	for _, row := range hygieneRows {
		level := levels.Level(row.rule)
		if level == jobs.LevelOff {
			continue
		}
		for _, f := range row.judge(ev, boot) {
			f.Rule, f.Level = row.rule, level
			out = append(out, f)
		}
	}
	return out
}

// each makes a row of one finding per path, all with the same detail.
func each(paths func(*jobs.HygieneEvidence) []string, detail string) func(*jobs.HygieneEvidence, Boot) []jobs.Finding {
	return func(ev *jobs.HygieneEvidence, _ Boot) []jobs.Finding {
		var out []jobs.Finding
		for _, p := range paths(ev) {
			out = append(out, jobs.Finding{Path: p, Detail: detail})
		}
		return out
	}
}

// presented is the image's host key file the booted server presented, if any.
func presented(ev *jobs.HygieneEvidence, boot Boot) (jobs.HostKeyFile, bool) {
	if boot.HostKey == "" {
		return jobs.HostKeyFile{}, false
	}
	i := slices.IndexFunc(ev.HostKeys, func(k jobs.HostKeyFile) bool { return k.Fingerprint == boot.HostKey })
	if i < 0 {
		return jobs.HostKeyFile{}, false
	}
	return ev.HostKeys[i], true
}

// sharedHostKeys: the server presented one of the image's keys, so the first boot
// keeps the image's host keys: every one of them is every server's.
func sharedHostKeys(ev *jobs.HygieneEvidence, boot Boot) []jobs.Finding {
	shown, ok := presented(ev, boot)
	if !ok {
		return keptHostKeys(ev)
	}
	// The presented key first: the check's reason names it.
	out := []jobs.Finding{{Path: shown.Path, Detail: fmt.Sprintf("the booted server presents this %s key (%s): every server made from the image has the same host identity", shown.Type, shown.Fingerprint)}}
	for _, k := range ev.HostKeys {
		if k.Path != shown.Path {
			out = append(out, jobs.Finding{Path: k.Path, Detail: fmt.Sprintf("%s key %s, kept like %s, which the booted server presents: every server made from the image shares it", k.Type, k.Fingerprint, shown.Path)})
		}
	}
	return out
}

// keptHostKeys: host keys in an image whose own cloud-init configuration keeps
// them at first boot (ssh_deletekeys: false). imagevet's seed deletes them, so
// the vetted boot replaced them; a tenant's server, whose user data seldom says
// anything of it, would not.
func keptHostKeys(ev *jobs.HygieneEvidence) []jobs.Finding {
	if ev.KeepsHostKeysAt == "" {
		return nil
	}
	var out []jobs.Finding
	for _, k := range ev.HostKeys {
		out = append(out, jobs.Finding{Path: k.Path, Detail: fmt.Sprintf("%s key %s, which the image's cloud-init keeps at first boot (ssh_deletekeys: false in %s): every server made from the image whose user data does not set ssh_deletekeys presents it (imagevet's seed sets it, so the vetted boot replaced it)",
			k.Type, k.Fingerprint, ev.KeepsHostKeysAt)})
	}
	return out
}

// replacedHostKeys: host keys in the image that the booted server did not
// present (the first boot made its own), or whose fate the boot did not show.
func replacedHostKeys(ev *jobs.HygieneEvidence, boot Boot) []jobs.Finding {
	if _, shared := presented(ev, boot); shared || len(keptHostKeys(ev)) > 0 {
		return nil
	}
	var out []jobs.Finding
	for _, k := range ev.HostKeys {
		d := fmt.Sprintf("%s host key %s in the image; the first boot replaced it (the server presented %s), but every copy of the image carries the private key", k.Type, k.Fingerprint, boot.HostKey)
		if boot.HostKey == "" {
			d = fmt.Sprintf("%s host key %s in the image; the boot did not show whether the first boot replaces it", k.Type, k.Fingerprint)
		}
		out = append(out, jobs.Finding{Path: k.Path, Detail: d})
	}
	return out
}

func machineID(ev *jobs.HygieneEvidence, _ Boot) []jobs.Finding {
	id := strings.TrimSpace(ev.MachineID)
	if id == "" || id == "uninitialized" {
		return nil
	}
	return []jobs.Finding{{Path: "/etc/machine-id", Detail: fmt.Sprintf("machine id %s: every server made from the image has it (DHCP client ids, journald and systemd-networkd collide); leave the file empty", id)}}
}

func passwordAccounts(ev *jobs.HygieneEvidence, _ Boot) []jobs.Finding {
	var out []jobs.Finding
	for _, a := range ev.PasswordAccounts {
		d := fmt.Sprintf("account %s has a usable password hash: the same password opens every server made from the image", a)
		if slices.Contains(ev.EmptyPasswords, a) {
			d = fmt.Sprintf("account %s has an EMPTY password: anything that accepts passwords lets anyone in as %s", a, a)
		}
		out = append(out, jobs.Finding{Path: "/etc/shadow", Detail: d})
	}
	return out
}

// sshPasswordAuth: a configuration line enabling password logins, or sshd's
// built-in default (yes) left in place while accounts have passwords.
func sshPasswordAuth(ev *jobs.HygieneEvidence, _ Boot) []jobs.Finding {
	if ev.SSHPasswordAuth != "yes" {
		return nil
	}
	root := ""
	if ev.SSHPermitRootLogin == "yes" {
		root = ", root's included (PermitRootLogin yes)"
	}
	if ev.SSHPasswordAuthAt != "" {
		path, _, _ := strings.Cut(ev.SSHPasswordAuthAt, ":")
		return []jobs.Finding{{Path: path, Detail: fmt.Sprintf("PasswordAuthentication yes at %s: sshd accepts password logins%s", ev.SSHPasswordAuthAt, root)}}
	}
	if len(ev.PasswordAccounts) == 0 {
		return nil
	}
	return []jobs.Finding{{Path: "/etc/ssh/sshd_config", Detail: fmt.Sprintf("sshd's default PasswordAuthentication yes is left in place and %s has a password: sshd accepts password logins%s",
		strings.Join(ev.PasswordAccounts, ", "), root)}}
}
