package jobs

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestOneLineAndFirstLine(t *testing.T) {
	if got := OneLine("  a\n\tb  \r\n c ", 0); got != "a b c" {
		t.Errorf("OneLine = %q", got)
	}
	if got := FirstLine("\n\n  first line  \r\nsecond", 0); got != "first line" {
		t.Errorf("FirstLine = %q", got)
	}
	if got := FirstLine("", 10); got != "" {
		t.Errorf("FirstLine of nothing = %q", got)
	}
}

func TestBoundCutsAtACharacterAndSaysSo(t *testing.T) {
	if got := Bound("short", 10); got != "short" {
		t.Errorf("Bound kept %q", got)
	}
	s := strings.Repeat("é", 100) // two bytes each
	for _, max := range []int{1, 4, 5, 50, 51} {
		got := Bound(s, max)
		if len(got) > max && got != "…" || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
			t.Errorf("Bound(%d) = %q (%d bytes)", max, got, len(got))
		}
	}
	if got := OneLine(strings.Repeat("x ", 300), 100); len(got) > 100 || !strings.HasSuffix(got, "…") {
		t.Errorf("OneLine bounded = %q", got)
	}
}
