package console

import "regexp"

// Milestone names of Ignition's first boot (Flatcar-style images).
const (
	MilestoneIgnitionStart    = "ignition-start"
	MilestoneIgnitionComplete = "ignition-complete"
)

// ignitionChecks are the console rows for images that Ignition provisions in the
// initramfs. Ignition logs "Ignition failed: <why>" when a stage fails (seen on the
// console when the initramfs journal is forwarded there, as flatcar-like does on its
// first boot); systemd's line for the failed ignition-*.service follows, then the
// emergency mode its OnFailure= asks for. The first of them fails the job, so the
// reason carries Ignition's own words whenever the console shows them.
func ignitionChecks() []ConsoleCheck {
	re := regexp.MustCompile
	return []ConsoleCheck{
		{Name: "ignition-failed", Kind: Fatal, Pattern: re(`\bIgnition failed: |Ignition has failed\. Please ensure your config is valid`), Reason: "Ignition could not provision the machine (the initramfs stops in emergency mode)"},
		{Name: "ignition-stage-failed", Kind: Fatal, Pattern: re(`Failed to start (ignition-|.*- Ignition \()`), Reason: "an Ignition stage failed (the initramfs stops in emergency mode)"},
		{Name: MilestoneIgnitionStart, Kind: Milestone, Pattern: re(`\bignition\[\d+\]: Ignition (\S+ )?v?\d+\.\d+|Starting .*Ignition \(fetch-offline\)`), Reason: "Ignition started"},
		{Name: MilestoneIgnitionComplete, Kind: Milestone, Pattern: re(`Reached target .*Ignition Complete`), Reason: "Ignition completed"},
	}
}
