package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// NameIgnition is the Ignition check's name, the job's check name.
const NameIgnition = "ignition"

// IgnitionResultFile is where Ignition records, in the provisioned system, that it ran.
const IgnitionResultFile = "/etc/.ignition-result.json"

// IgnitionWant is what the seed's Ignition config asked the image to do. Empty lists
// are not checked.
type IgnitionWant struct {
	// Users the config creates (the login user first).
	Users []string
	// Paths of the files, directories and links the config writes.
	Paths []string
	// ConsoleComplete is set when the console showed Ignition reaching "Ignition
	// Complete": proof it ran, for Ignition releases that write no result file.
	ConsoleComplete bool
}

// ignitionResult is Ignition's result file.
type ignitionResult struct {
	ProvisioningDate   string `json:"provisioningDate"`
	UserConfigProvided *bool  `json:"userConfigProvided"`
}

// CheckIgnition judges Ignition's first boot once SSH answers (Ignition runs in the
// initramfs, so it is over by then): Ignition completed (its result file, or the
// console's "Ignition Complete") with our config, and the users and files of that
// config are there. An image with cloud-init and no trace of Ignition fails naming
// the mismatch with the job's guest.provisioning.
func CheckIgnition(ctx context.Context, r Runner, want IgnitionWant) CheckResult {
	start := time.Now()
	res := CheckResult{Name: NameIgnition}
	out, err := r.Run(ctx, shScript(ignitionScript(want)))
	res.Duration = time.Since(start)
	if err != nil {
		res.Status, res.Err = StatusError, err
		res.Reason = jobs.OneLine("could not read Ignition's results in the guest: "+err.Error(), 400)
		return res
	}
	found := parseIgnitionReport(out.Stdout)
	res.Detail = found.detail()
	res.Status, res.Reason = StatusPass, found.passReason(want)
	if reason, failed := found.failure(want); failed {
		res.Status, res.Reason = StatusFail, reason
	}
	res.Reason = jobs.OneLine(res.Reason, 400)
	return res
}

// ignitionScript reads, in one round trip, what the check judges: Ignition's
// result file, whether the image has cloud-init, which of want's users and paths
// exist, and Ignition's journal lines that may be failures.
func ignitionScript(want IgnitionWant) string {
	var users, paths []string
	for _, u := range want.Users {
		users = append(users, shellQuote(u))
	}
	for _, p := range want.Paths {
		paths = append(paths, shellQuote(p))
	}
	return fmt.Sprintf(`echo @@result; cat %[1]s 2>/dev/null || sudo -n cat %[1]s 2>/dev/null
echo @@cloud-init; command -v cloud-init >/dev/null 2>&1 && echo present
echo @@users; for u in %[2]s; do getent passwd "$u" >/dev/null 2>&1 && echo "$u"; done
echo @@paths; for p in %[3]s; do { [ -e "$p" ] || [ -L "$p" ] || sudo -n test -e "$p"; } 2>/dev/null && echo "$p"; done
echo @@journal; { journalctl -b -q --no-pager -t ignition 2>/dev/null || sudo -n journalctl -b -q --no-pager -t ignition 2>/dev/null; } | grep -iE 'error|fail|warn|crit|GET result: OK' | tail -n 200
echo @@end`, IgnitionResultFile, strings.Join(users, " "), strings.Join(paths, " "))
}

// ignitionFound is what ignitionScript found in the guest.
type ignitionFound struct {
	raw       string          // the result file as read, trimmed
	result    *ignitionResult // nil when there is none or it does not parse
	cloudInit bool            // the image has cloud-init
	present   map[string]bool // the users and paths that exist
	journal   string          // Ignition's real failures and warnings (ignitionProblems)
}

// parseIgnitionReport reads ignitionScript's output.
func parseIgnitionReport(out string) ignitionFound {
	sec := sections(out)
	f := ignitionFound{raw: strings.TrimSpace(sec["result"]), cloudInit: strings.TrimSpace(sec["cloud-init"]) == "present",
		present: map[string]bool{}, journal: ignitionProblems(sec["journal"], 10)}
	var result ignitionResult
	if f.raw != "" && json.Unmarshal([]byte(f.raw), &result) == nil {
		f.result = &result
	}
	for _, line := range strings.Split(sec["users"]+"\n"+sec["paths"], "\n") {
		f.present[strings.TrimSpace(line)] = true
	}
	return f
}

func (f ignitionFound) detail() string {
	var detail strings.Builder
	fmt.Fprintf(&detail, "%s: %s\n", IgnitionResultFile, orUnknown(f.raw))
	if f.journal != "" {
		fmt.Fprintf(&detail, "--- Ignition's journal: errors and warnings (last 10)\n%s\n", f.journal)
	}
	return strings.TrimSpace(detail.String())
}

// failure is why the guest shows Ignition did not provision it with our config:
// it did not run (an image with cloud-init named as such), it ran without our
// config, or a user or path of the config is missing.
func (f ignitionFound) failure(want IgnitionWant) (string, bool) {
	switch {
	case f.result == nil && !want.ConsoleComplete && f.cloudInit:
		return fmt.Sprintf("no Ignition result (%s) and the image has cloud-init: it provisions itself with cloud-init, not Ignition as the job's guest.provisioning says", IgnitionResultFile), true
	case f.result == nil && !want.ConsoleComplete:
		return fmt.Sprintf("Ignition did not run on this boot: no %s and no \"Ignition Complete\" on the console", IgnitionResultFile), true
	case f.result != nil && f.result.UserConfigProvided != nil && !*f.result.UserConfigProvided:
		return "Ignition ran without our config: it found no user config on the config drive or at the metadata service", true
	}
	if missing := f.absent(want.Users); len(missing) > 0 {
		return fmt.Sprintf("Ignition completed but the user(s) %s of its config do not exist", strings.Join(missing, ", ")), true
	}
	if missing := f.absent(want.Paths); len(missing) > 0 {
		return fmt.Sprintf("Ignition completed but %s of its config is missing", strings.Join(missing, ", ")), true
	}
	return "", false
}

// absent lists the names (users or paths) the guest does not have.
func (f ignitionFound) absent(names []string) []string {
	var missing []string
	for _, n := range names {
		if !f.present[n] {
			missing = append(missing, n)
		}
	}
	return missing
}

// passReason gives the proof that Ignition completed (its result file, else the
// console) and what of want's config is there.
func (f ignitionFound) passReason(want IgnitionWant) string {
	proof := "\"Ignition Complete\" on the console"
	if f.result != nil {
		proof = IgnitionResultFile
		if f.result.ProvisioningDate != "" {
			proof += " from " + f.result.ProvisioningDate
		}
	}
	return fmt.Sprintf("Ignition completed (%s); users %s and %d files of its config are there",
		proof, strings.Join(want.Users, ", "), len(want.Paths))
}

// ignitionRoutine are lines of Ignition's journal that read like failures and come on
// every good first boot: they are not reported among its errors.
var ignitionRoutine = []*regexp.Regexp{
	// The fetch-offline stage on a platform whose config needs the network
	// (OpenStack's metadata service): it hands over to the fetch stage.
	regexp.MustCompile(`failed to fetch config: resource requires networking`),
}

var (
	ignitionGetError = regexp.MustCompile(`\bGET error: `)
	ignitionGetOK    = regexp.MustCompile(`\bGET result: OK`)
)

// ignitionProblems keeps the real failures and warnings among Ignition's journal
// lines (the error-like lines and its "GET result: OK" lines), the last n of them:
// routine lines go, and so do GET errors that a later successful GET made good (an
// attempt before the network was up).
func ignitionProblems(journal string, n int) string {
	lines := strings.Split(strings.TrimSpace(journal), "\n")
	var kept []string
	for i, line := range lines {
		line = strings.TrimSpace(line)
		switch {
		case line == "", ignitionGetOK.MatchString(line):
			continue
		case ignitionGetError.MatchString(line) && slices.ContainsFunc(lines[i+1:], ignitionGetOK.MatchString):
			continue
		case slices.ContainsFunc(ignitionRoutine, func(re *regexp.Regexp) bool { return re.MatchString(line) }):
			continue
		}
		kept = append(kept, line)
	}
	if len(kept) > n {
		kept = kept[len(kept)-n:]
	}
	return strings.Join(kept, "\n")
}
