package jobs

import (
	"slices"
	"testing"
)

func TestHygieneLevels(t *testing.T) {
	var none HygieneLevels
	if got := none.Level(RuleSharedHostKeys); got != LevelFail {
		t.Errorf("default of %s = %q, want fail", RuleSharedHostKeys, got)
	}
	if got := none.Level(RuleShellHistory); got != LevelWarn {
		t.Errorf("default of %s = %q, want warn", RuleShellHistory, got)
	}
	set := HygieneLevels{RuleMachineID: LevelOff, RuleShellHistory: LevelFail}
	if got := set.Level(RuleMachineID); got != LevelOff {
		t.Errorf("set %s = %q, want off", RuleMachineID, got)
	}
	if got := set.Level(RuleShellHistory); got != LevelFail {
		t.Errorf("set %s = %q, want fail", RuleShellHistory, got)
	}
	if got := set.Level("no-such-rule"); got != LevelOff {
		t.Errorf("unknown rule's level = %q, want off", got)
	}
	if errs := set.Validate("checks.hygiene"); len(errs) != 0 {
		t.Errorf("valid levels refused: %v", errs)
	}
	errs := HygieneLevels{"b-bad": "off", "a-bad": "warn", RuleNetRules: "loud"}.Validate("x")
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path)
	}
	if want := []string{"x.a-bad", "x.b-bad", "x.net-rules"}; !slices.Equal(paths, want) {
		t.Errorf("problems at %v, want %v (sorted, each field named)", paths, want)
	}
}

// The defaults: fail on shared host keys, machine id, password accounts,
// sshd password logins and authorized_keys; warn on the rest.
func TestHygieneDefaults(t *testing.T) {
	fail := []string{RuleSharedHostKeys, RuleMachineID, RulePasswordAccount, RuleSSHPasswordAuth, RuleAuthorizedKeys}
	seen := map[string]bool{}
	for _, r := range HygieneRules {
		if seen[r.Name] {
			t.Errorf("rule %s listed twice", r.Name)
		}
		seen[r.Name] = true
		want := LevelWarn
		if slices.Contains(fail, r.Name) {
			want = LevelFail
		}
		if r.Default != want || r.About == "" {
			t.Errorf("rule %s: default %q, want %q (and an About)", r.Name, r.Default, want)
		}
	}
}
