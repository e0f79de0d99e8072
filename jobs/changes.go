package jobs

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// What a regression measures (Changes.Regressed).
const (
	MeasureSize        = "size"
	MeasureVirtualSize = "virtual_size"
	MeasureBoot        = "boot"
)

// Previous names the release compared with: its version, else its job id.
func (c *Changes) Previous() string { return cmp.Or(c.PreviousVersion, c.PreviousJob) }

// Summary says the changes in one line for people: "since 20261110-1: +3 −1 ~12
// packages, kernel A → B, size +4 %, boot +35 % (regression)". What one side did
// not record is left out.
func (c *Changes) Summary() string {
	var parts []string
	if n := len(c.Added) + len(c.Removed) + len(c.Upgraded); n > 0 {
		p := fmt.Sprintf("+%d −%d ~%d packages", len(c.Added), len(c.Removed), len(c.Upgraded))
		if down := c.Downgrades(); down > 0 {
			p += fmt.Sprintf(" (%d downgraded)", down)
		}
		parts = append(parts, p)
	}
	if c.KernelBefore != c.KernelAfter {
		parts = append(parts, "kernel "+c.KernelBefore+" → "+c.KernelAfter)
	}
	growth := func(name, measure string, before, after int64, always bool) {
		if before <= 0 || after <= 0 || (!always && before == after) {
			return
		}
		p := fmt.Sprintf("%s %+d %%", name, int(math.Round(float64(after-before)*100/float64(before))))
		if slices.Contains(c.Regressed, measure) {
			p += " (regression)"
		}
		parts = append(parts, p)
	}
	growth("size", MeasureSize, c.SizeBefore, c.SizeAfter, true)
	growth("virtual size", MeasureVirtualSize, c.VirtualSizeBefore, c.VirtualSizeAfter, false)
	growth("boot", MeasureBoot, int64(c.BootBefore), int64(c.BootAfter), true)
	growth("time to verdict", "", int64(c.VerdictBefore), int64(c.VerdictAfter), false)
	if len(parts) == 0 {
		parts = append(parts, "nothing to compare")
	}
	return "since " + c.Previous() + ": " + strings.Join(parts, ", ")
}

// Downgrades counts the packages whose version went back.
func (c *Changes) Downgrades() int {
	n := 0
	for _, u := range c.Upgraded {
		if u.Downgrade {
			n++
		}
	}
	return n
}
