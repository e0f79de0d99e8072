package guest

import "testing"

// The expect_output rule a job states: a substring, or a regular expression between
// slashes, matched line by line.
func TestOutputMatcher(t *testing.T) {
	for _, c := range []struct {
		rule, out string
		want      bool
	}{
		{"", "anything", true},
		{"Linux", "GNU/Linux\n", true},
		{"/^Linux$/", "x\nLinux\n", true},
		{"/^Linux$/", "GNU/Linux\n", false},
		{"BSD", "Linux", false},
	} {
		match, err := outputMatcher(c.rule)
		if err != nil {
			t.Fatalf("outputMatcher(%q): %v", c.rule, err)
		}
		if got := match(c.out); got != c.want {
			t.Errorf("rule %q on %q = %v, want %v", c.rule, c.out, got, c.want)
		}
	}
}
