package jobs

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// OneLine folds every run of white space in s (line breaks included) into one
// space, so output of several lines reads as one reason; max > 0 bounds it in bytes
// (see Bound).
func OneLine(s string, max int) string {
	return Bound(strings.Join(strings.Fields(s), " "), max)
}

// FirstLine is s's first non-blank line, trimmed; max > 0 bounds it in bytes (see
// Bound).
func FirstLine(s string, max int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return Bound(s, max)
}

// Bound cuts s to at most max bytes (max <= 0: no bound), at a character boundary,
// ending a cut string with "…".
func Bound(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	const ellipsis = "…"
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if cut <= 0 {
		return ellipsis
	}
	return s[:cut] + ellipsis
}

// HumanBytes renders a byte count for people, in the largest binary unit below it
// ("512 B", "1.5 KiB", "330.2 MiB").
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit || m <= -unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
