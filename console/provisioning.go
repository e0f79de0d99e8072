package console

import "regexp"

// Milestone names of provisioning stages that stall: the console says the stage
// waits for something (systemd's line for a start job still running, or the
// provisioning tool giving up on a source), which may or may not come.
const (
	MilestoneIgnitionStalled  = "ignition-stalled"
	MilestoneCloudInitStalled = "cloud-init-stalled"
	// MilestoneCloudInitConfig is cloud-init's config stage starting: its init
	// stages (init-local, init) are over.
	MilestoneCloudInitConfig = "cloud-init-modules-config"
)

// Activity names: the latest line showing a provisioning stage at work.
const (
	ActivityIgnition  = "ignition-activity"
	ActivityCloudInit = "cloud-init-activity"
)

// RunningJob matches systemd's line that a start job is still running, on the
// console ("A start job is running for …") or from its journal ("Job UNIT/start
// running (…)"): repeated every half second while the job runs.
var RunningJob = regexp.MustCompile(`A start job is running for |Job \S+/start running`)

// ProvisioningStage is a first-boot provisioning stage as the console shows it: the
// milestones of its start, of its completion and of a stall, and its own lines. A
// stage that started, stalled and has not completed a while later never will: the
// login watch (worker/login.go) fails the job naming it.
type ProvisioningStage struct {
	// Name names the stage in a reason.
	Name string
	// Provisioning is the guest.provisioning value of the jobs whose check judges it.
	Provisioning string
	// Start, Stall: milestone names; Done: any of these milestones means it
	// completed; Activity: the activity check of its latest sign of work.
	Start, Stall, Activity string
	Done                   []string
	// Lines matches the console lines that are the stage's own (its log, systemd's
	// lines about its units); Words captures, in group 1, what the tool itself said.
	Lines, Words *regexp.Regexp
}

// ProvisioningStages are the provisioning stages the console rows of
// DefaultRules follow: Ignition in the initramfs, cloud-init's init stages.
func ProvisioningStages() []ProvisioningStage {
	re := regexp.MustCompile
	return []ProvisioningStage{
		{Name: "Ignition", Provisioning: "ignition",
			Start: MilestoneIgnitionStart, Stall: MilestoneIgnitionStalled, Activity: ActivityIgnition,
			Done:  []string{MilestoneIgnitionComplete},
			Lines: re(`\bignition\[\d+\]: |ignition-[\w-]+\.service|Ignition \(`),
			Words: re(`\bignition\[\d+\]: (.+)$`)},
		{Name: "cloud-init's init stage", Provisioning: "cloud-init",
			Start: MilestoneCloudInitStart, Stall: MilestoneCloudInitStalled, Activity: ActivityCloudInit,
			Done:  []string{MilestoneCloudInitConfig, MilestoneCloudInitFinal, MilestoneCloudInitDone},
			Lines: re(`\bcloud-init\[\d+\]: |cloud-init(-local)?\.service|Initial cloud-init job|Cloud-init: (Local|Network) Stage`),
			Words: re(`\bcloud-init\[\d+\]: (?:\d{4}-\d\d-\d\d [\d:,]+ - )?(.+)$`)},
	}
}

// provisioningChecks are the console rows of the provisioning stages' stalls and
// activity. Activity is what the stage itself says and systemd starting or finishing
// its units, not systemd's line that a job is still running: a slow stage keeps
// saying something; one that waits for what never comes falls silent.
//
// Stalls:
// systemd says a start job is still running once it ran for a few seconds without
// other status output ("A start job is running for …", or its journal's "Job
// UNIT/start running (…)" when the journal goes to the console); Ignition logs
// giving up on one of its config sources (with the OpenStack platform it waits for
// the config drive as long as for the metadata service: a source that failed may be
// all there was).
func provisioningChecks() []Rule {
	re := regexp.MustCompile
	return []Rule{
		{Name: MilestoneIgnitionStalled, Kind: Milestone,
			Pattern: re(`A start job is running for (ignition-[\w-]+\.service|.*\bIgnition \()|Job ignition-[\w-]+\.service/start running|\bignition\[\d+\]: (failed to fetch config from |timed out while fetching config from )`),
			Reason:  "Ignition stalled"},
		{Name: MilestoneCloudInitStalled, Kind: Milestone,
			Pattern: re(`A start job is running for (cloud-init(-local)?\.service|Initial cloud-init job|Cloud-init: (Local|Network) Stage)|Job cloud-init(-local)?\.service/start running`),
			Reason:  "cloud-init's init stage stalled"},
		{Name: MilestoneCloudInitConfig, Kind: Milestone, Pattern: re(`Cloud-init v\. \S+ running 'modules:config'`), Reason: "cloud-init config stage started"},
		{Name: ActivityIgnition, Kind: Activity,
			Pattern: re(`\bignition\[\d+\]: |(Starting|Started|Finished) .*(ignition-[\w-]+\.service|Ignition \()`), Reason: "Ignition at work"},
		{Name: ActivityCloudInit, Kind: Activity,
			Pattern: re(`\bcloud-init\[\d+\]: |Cloud-init v\. |(Starting|Started|Finished) .*(cloud-init(-local)?\.service|Initial cloud-init job|Cloud-init: (Local|Network) Stage)`), Reason: "cloud-init at work"},
	}
}
