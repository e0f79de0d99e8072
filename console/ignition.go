package console

import (
	"regexp"
	"time"
)

// IgnitionWordsWait is how long a failed Ignition service waits for Ignition's own
// "Ignition failed: …" line before it fails the job with systemd's words.
const IgnitionWordsWait = 10 * time.Second

// Milestone names of Ignition's first boot (Flatcar-style images).
const (
	MilestoneIgnitionStart    = "ignition-start"
	MilestoneIgnitionComplete = "ignition-complete"
)

// ignitionChecks are the console rows for images that Ignition provisions in the
// initramfs. Ignition logs "Ignition failed: <why>" when a stage fails (seen on the
// console when the initramfs journal is forwarded there, as flatcar-like does on its
// first boot); systemd's line for the failed ignition-*.service follows, then the
// emergency mode its OnFailure= asks for. journald forwards Ignition's line to the
// console asynchronously, so it can come after systemd's: a failed ignition-*
// service waits up to IgnitionWordsWait for Ignition's own words, and the reason
// carries them whenever the console shows them.
func ignitionChecks() []Rule {
	re := regexp.MustCompile
	return []Rule{
		{Name: "ignition-failed", Kind: Fatal, Pattern: re(`\bIgnition failed: |Ignition has failed\. Please ensure your config is valid`), Reason: "Ignition could not provision the machine (the initramfs stops in emergency mode)"},
		{Name: "ignition-stage-failed", Kind: Fatal, Pattern: re(`Failed to start (ignition-|.*- Ignition \()`), Reason: "an Ignition stage failed (the initramfs stops in emergency mode)",
			Await: "ignition-failed", AwaitFor: IgnitionWordsWait},
		{Name: MilestoneIgnitionStart, Kind: Milestone, Pattern: re(`\bignition\[\d+\]: Ignition (\S+ )?v?\d+\.\d+|Starting .*Ignition \(fetch-offline\)`), Reason: "Ignition started"},
		{Name: MilestoneIgnitionComplete, Kind: Milestone, Pattern: re(`Reached target .*Ignition Complete`), Reason: "Ignition completed"},
	}
}
