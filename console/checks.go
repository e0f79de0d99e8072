package console

import (
	"regexp"
	"time"
)

// Kind says what a console check match means for the job.
type Kind int

// Check kinds.
const (
	// Fatal matches end the job: the image cannot boot correctly.
	Fatal Kind = iota
	// Warning matches are recorded and reported but do not fail the job.
	Warning
	// Milestone matches mark boot progress; the first match of each is timed.
	Milestone
	// Activity matches mark something still at work; the latest match of each is
	// kept (Console.Latest).
	Activity
)

// String names the kind for logs and reports.
func (k Kind) String() string {
	switch k {
	case Fatal:
		return "fatal"
	case Warning:
		return "warning"
	case Milestone:
		return "milestone"
	case Activity:
		return "activity"
	}
	return "unknown"
}

// Rule is one row of the console table: a pattern and what a match means.
//
// When After is set the check is contextual: Pattern only counts on a line at most
// Within lines after a line matching After (the After line itself included). This
// is how a Python traceback fails the job only when it is cloud-init's.
type Rule struct {
	Name    string
	Kind    Kind
	Pattern *regexp.Regexp
	// Reason is the one-line explanation reported with a match.
	Reason string
	After  *regexp.Regexp
	Within int
	// Await, on a Fatal check, names another Fatal check that explains this one in
	// the guest's own words and may reach the console a little later (a logger
	// forwarding to the console lags the line of the service manager): the job
	// then fails at once when the awaited one comes, or with this one after
	// AwaitFor (or when the console ends), whichever is first.
	Await    string
	AwaitFor time.Duration
}

// FatalStarvedTimer is the fatal check of a guest kernel that found no working
// timer at boot ("IO-APIC + timer doesn't work"): under emulation, the sign of a
// host that starved the guest of CPU while the kernel calibrated its timers.
const FatalStarvedTimer = "starved-timer"

// Milestone names used by DefaultRules.
const (
	MilestoneFirmware         = "firmware"
	MilestoneBootloader       = "bootloader"
	MilestoneKernel           = "kernel"
	MilestoneInit             = "init"
	MilestoneCloudInitStart   = "cloud-init-start"
	MilestoneCloudInitFinal   = "cloud-init-modules-final"
	MilestoneCloudInitDone    = "cloud-init-finished"
	MilestoneSSHHostKeys      = "ssh-host-keys"
	MilestoneLoginPrompt      = "login-prompt"
	MilestoneInitramfsStarted = "initramfs"
	// MilestoneBootFinished is another init's own end-of-boot line (systemd's
	// multi-user target, busybox's console prompt). Rows added for other inits
	// (Ignition, vendor agents) that mark the end of their boot use this name.
	MilestoneBootFinished = "boot-finished"
	// MilestoneNoDatasource is cloud-init saying it found no datasource and fell
	// back to DataSourceNone: it read none of the seed.
	MilestoneNoDatasource = "cloud-init-no-datasource"
)

// BootEndMilestones returns the milestones that say a guest finished booting:
// a login prompt, another init's own end of boot, cloud-init finished. The
// worker's login watch and starved-host rule and the job page's boot bar read
// the end of boot from the same list.
func BootEndMilestones() []string {
	return []string{MilestoneLoginPrompt, MilestoneBootFinished, MilestoneCloudInitDone}
}

// DefaultRules returns the console table used for every job: fatal boot
// failures, recorded warnings and boot milestones. It returns a fresh slice the
// caller may extend.
//
// Decisions worth knowing:
//   - A Python traceback is fatal only when it is cloud-init's (a cloudinit source
//     path or "cloud-init" within 40 lines after "Traceback"); other programs'
//     tracebacks are warnings.
//   - Kernel BUG/Oops, soft lockups and RCU stalls are warnings: under TCG they are
//     common and often harmless, and a guest that really broke fails the SSH check.
//   - systemd "Failed to start" is a warning: many images carry units that fail
//     without consequence (e.g. a missing optional device).
//   - dracut's "starting timeout scripts" is a warning; the emergency shell that
//     follows when root never appears is fatal.
func DefaultRules() []Rule {
	re := regexp.MustCompile
	return append([]Rule{
		// Fatal: the guest will not get anywhere useful.
		// Before kernel-panic, whose line it is too: a guest kernel that finds no
		// working timer was starved of CPU by its host (emulation on a busy host),
		// which the worker reports as the host's fault.
		{Name: FatalStarvedTimer, Kind: Fatal, Pattern: re(`IO-APIC \+ timer doesn't work|timer doesn't work through Interrupt-remapped IO-APIC`), Reason: "the kernel found no working timer"},
		{Name: "kernel-panic", Kind: Fatal, Pattern: re(`Kernel panic - not syncing`), Reason: "kernel panic"},
		{Name: "root-mount", Kind: Fatal, Pattern: re(`VFS: Unable to mount root fs|Failed to mount /sysroot|Gave up waiting for root (file system|device)|ALERT! .* does not exist\.\s+Dropping to a shell`), Reason: "the root file system could not be mounted"},
		{Name: "emergency-mode", Kind: Fatal, Pattern: re(`You are in emergency mode|Give root password for maintenance|Entering emergency mode|Cannot open access to console, the root account is locked`), Reason: "the guest dropped into emergency mode"},
		{Name: "rescue-mode", Kind: Fatal, Pattern: re(`You are in rescue mode`), Reason: "the guest dropped into rescue mode"},
		{Name: "dracut-emergency", Kind: Fatal, Pattern: re(`dracut-emergency|dracut:/#|dracut.*Warning: Could not boot|Starting Dracut Emergency Shell`), Reason: "dracut could not find the root device and started its emergency shell"},
		{Name: "initramfs-shell", Kind: Fatal, Pattern: re(`^\(initramfs\)\s*`), Reason: "the initramfs dropped to its busybox shell"},
		{Name: "cloud-init-traceback", Kind: Fatal, After: re(`Traceback \(most recent call last\)`), Within: 40, Pattern: re(`/cloudinit/|cloud-init`), Reason: "cloud-init crashed with a Python traceback"},
		{Name: "cloud-init-stage-failed", Kind: Fatal, Pattern: re(`failed run of stage (init|init-local|modules-\w+)`), Reason: "a cloud-init stage failed"},
		{Name: "grub-rescue", Kind: Fatal, Pattern: re(`grub rescue>|^Entering rescue mode\.\.\.`), Reason: "GRUB could not find its modules or config and stopped at grub rescue"},
		{Name: "no-bootable-device", Kind: Fatal, Pattern: re(`No bootable device|Boot failed: not a bootable disk|Boot failed: could not read the boot disk|No bootable medium found|No bootable option or device was found`), Reason: "the firmware found nothing bootable on the disk (wrong firmware type for the image?)"},
		{Name: "uefi-shell", Kind: Fatal, Pattern: re(`UEFI Interactive Shell v|^Shell> `), Reason: "the UEFI firmware found nothing bootable and started its shell (BIOS-only image on UEFI?)"},

		// Warnings: recorded with the result.
		{Name: "kernel-bug", Kind: Warning, Pattern: re(`\bBUG: |\bOops: |general protection fault|Call Trace:`), Reason: "the kernel reported a BUG or Oops"},
		{Name: "kernel-stall", Kind: Warning, Pattern: re(`soft lockup|rcu_sched self-detected stall|rcu: INFO: rcu_\w+ (self-)?detected stall`), Reason: "the kernel reported a CPU stall (common under emulation)"},
		{Name: "systemd-failed-unit", Kind: Warning, Pattern: re(`Failed to start |\[FAILED\]`), Reason: "a systemd unit failed to start"},
		{Name: "dracut-timeout", Kind: Warning, Pattern: re(`dracut-initqueue.*timeout`), Reason: "dracut timed out waiting for a device"},
		{Name: "python-traceback", Kind: Warning, Pattern: re(`Traceback \(most recent call last\)`), Reason: "a Python program crashed"},
		{Name: "uefi-boot-option-failed", Kind: Warning, Pattern: re(`BdsDxe: failed to load Boot`), Reason: "the UEFI firmware could not load a boot option"},

		// Milestones: boot stage timings.
		{Name: MilestoneFirmware, Kind: Milestone, Pattern: re(`SeaBIOS \(version|BdsDxe: loading Boot|UEFI firmware \(version`), Reason: "firmware started"},
		{Name: MilestoneBootloader, Kind: Milestone, Pattern: re(`GNU GRUB|Booting from Hard Disk|Loading Linux|ISOLINUX|SYSLINUX|EXTLINUX`), Reason: "bootloader started"},
		{Name: MilestoneKernel, Kind: Milestone, Pattern: re(`Linux version \d`), Reason: "kernel started"},
		{Name: MilestoneInitramfsStarted, Kind: Milestone, Pattern: re(`Run /init as init process|Loading, please wait|dracut-\d+.*starting`), Reason: "initramfs started"},
		{Name: MilestoneInit, Kind: Milestone, Pattern: re(`Welcome to (?:[^G]|G[^R]).*!|Run /sbin/init as init process|INIT: version|systemd\[1\]: systemd \d+`), Reason: "init started"},
		{Name: MilestoneCloudInitStart, Kind: Milestone, Pattern: re(`Cloud-init v\. \S+ running 'init(-local)?'`), Reason: "cloud-init started"},
		{Name: MilestoneSSHHostKeys, Kind: Milestone, Pattern: re(`-----BEGIN SSH HOST KEY (KEYS|FINGERPRINTS)-----`), Reason: "SSH host keys printed"},
		{Name: MilestoneCloudInitFinal, Kind: Milestone, Pattern: re(`Cloud-init v\. \S+ running 'modules:final'`), Reason: "cloud-init final stage started"},
		{Name: MilestoneCloudInitDone, Kind: Milestone, Pattern: re(`Cloud-init v\. \S+ finished at`), Reason: "cloud-init finished"},
		{Name: MilestoneLoginPrompt, Kind: Milestone, Pattern: re(`^\S+ login:(\s*$|\s+\[\s*\d+\.\d+\] )`), Reason: "login prompt"},
		{Name: MilestoneBootFinished, Kind: Milestone, Pattern: re(`Reached target .*(Multi-User System|multi-user\.target)|Please press Enter to activate this console`), Reason: "init reached the end of boot"},
		{Name: MilestoneNoDatasource, Kind: Milestone, Pattern: re(`Datasource DataSourceNone\b|Used fallback datasource`), Reason: "cloud-init used no datasource"},
	}, append(ignitionChecks(), provisioningChecks()...)...)
}
