package jobs

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Hygiene rules: what the hygiene check reports about an image, each at the level
// (LevelFail, LevelWarn, LevelOff) the job sets, or else the rule's default.
const (
	// RuleSharedHostKeys: SSH host keys in the image that the booted server still
	// presents, so every tenant's server shares one host identity.
	RuleSharedHostKeys = "shared-host-keys"
	// RuleHostKeys: SSH host keys in the image that the first boot replaced.
	RuleHostKeys = "host-keys"
	// RuleMachineID: a filled /etc/machine-id, duplicated on every server.
	RuleMachineID = "machine-id"
	// RulePasswordAccount: root or another account with a usable password.
	RulePasswordAccount = "password-account"
	// RuleSSHPasswordAuth: sshd's configuration enables password logins.
	RuleSSHPasswordAuth = "ssh-password-auth"
	// RuleAuthorizedKeys: someone's authorized_keys left in the image.
	RuleAuthorizedKeys = "authorized-keys"
	// RuleCloudInitState: cloud-init's instance state from the build.
	RuleCloudInitState = "cloud-init-state"
	// RuleShellHistory: non-empty shell (and other interactive) histories.
	RuleShellHistory = "shell-history"
	// RuleDHCPLeases: DHCP leases from the build's network.
	RuleDHCPLeases = "dhcp-leases"
	// RuleNetRules: udev's persistent net rules, pinning the build's MAC addresses.
	RuleNetRules = "net-rules"
	// RuleWorldWritableEtc: world-writable files under /etc.
	RuleWorldWritableEtc = "world-writable-etc"
	// RulePrivateKeys: private keys under /root or /home.
	RulePrivateKeys = "private-keys"
)

// HygieneRule is one hygiene rule with its default level and what it means.
type HygieneRule struct {
	Name    string
	Default string
	About   string
}

// HygieneRules lists every hygiene rule, in the order findings are reported.
var HygieneRules = []HygieneRule{
	{RuleSharedHostKeys, LevelFail, "SSH host keys in the image that the booted server still presents"},
	{RuleMachineID, LevelFail, "a filled /etc/machine-id"},
	{RulePasswordAccount, LevelFail, "an account with a usable password in /etc/shadow"},
	{RuleSSHPasswordAuth, LevelFail, "sshd's configuration enables password logins"},
	{RuleAuthorizedKeys, LevelFail, "authorized_keys of any user"},
	{RuleHostKeys, LevelWarn, "SSH host keys in the image that the first boot replaced"},
	{RuleCloudInitState, LevelWarn, "cloud-init instance state from the build"},
	{RuleShellHistory, LevelWarn, "shell and other interactive histories"},
	{RuleDHCPLeases, LevelWarn, "DHCP leases"},
	{RuleNetRules, LevelWarn, "persistent net rules"},
	{RuleWorldWritableEtc, LevelWarn, "world-writable files under /etc"},
	{RulePrivateKeys, LevelWarn, "private keys under /root or /home"},
}

// HygieneRuleNames lists the rules' names in report order.
func HygieneRuleNames() []string {
	names := make([]string, len(HygieneRules))
	for i, r := range HygieneRules {
		names[i] = r.Name
	}
	return names
}

// HygieneLevelNames are the levels a rule may be set to.
var HygieneLevelNames = []string{LevelFail, LevelWarn, LevelOff}

// HygieneLevels sets hygiene rules' levels by rule name; a rule it does not name
// keeps its default. A family sets them in the catalog, a job in checks.hygiene.
type HygieneLevels map[string]string

// Level is the level the rule is at: the one set, or the rule's default (LevelOff
// for a name that is no rule).
func (l HygieneLevels) Level(rule string) string {
	if v, ok := l[rule]; ok {
		return v
	}
	for _, r := range HygieneRules {
		if r.Name == rule {
			return r.Default
		}
	}
	return LevelOff
}

// Validate reports every unknown rule or level, each naming its field under path
// ("checks.hygiene"), or nil.
func (l HygieneLevels) Validate(path string) []FieldError {
	var p problems
	l.validate(&p, path)
	return p
}

func (l HygieneLevels) validate(p *problems, path string) {
	names := HygieneRuleNames()
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		field := fmt.Sprintf("%s.%s", path, k)
		if !slices.Contains(names, k) {
			p.add(field, "unknown hygiene rule %q (known: %s)", k, strings.Join(names, ", "))
			continue
		}
		if v := l[k]; !slices.Contains(HygieneLevelNames, v) {
			p.add(field, "%q: must be fail, warn or off", v)
		}
	}
}
