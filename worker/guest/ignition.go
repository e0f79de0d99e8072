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
	var users, paths []string
	for _, u := range want.Users {
		users = append(users, shellQuote(u))
	}
	for _, p := range want.Paths {
		paths = append(paths, shellQuote(p))
	}
	script := fmt.Sprintf(`echo @@result; cat %[1]s 2>/dev/null || sudo -n cat %[1]s 2>/dev/null
echo @@cloud-init; command -v cloud-init >/dev/null 2>&1 && echo present
echo @@users; for u in %[2]s; do getent passwd "$u" >/dev/null 2>&1 && echo "$u"; done
echo @@paths; for p in %[3]s; do { [ -e "$p" ] || [ -L "$p" ] || sudo -n test -e "$p"; } 2>/dev/null && echo "$p"; done
echo @@journal; { journalctl -b -q --no-pager -t ignition 2>/dev/null || sudo -n journalctl -b -q --no-pager -t ignition 2>/dev/null; } | grep -iE 'error|fail|warn|crit|GET result: OK' | tail -n 200
echo @@end`, IgnitionResultFile, strings.Join(users, " "), strings.Join(paths, " "))
	out, err := r.Run(ctx, shScript(script))
	res.Duration = time.Since(start)
	if err != nil {
		res.Status, res.Err = StatusError, err
		res.Reason = jobs.OneLine("could not read Ignition's results in the guest: "+err.Error(), 400)
		return res
	}
	sec := sections(out.Stdout)
	raw := strings.TrimSpace(sec["result"])
	journal := ignitionProblems(sec["journal"], 10)
	var detail strings.Builder
	fmt.Fprintf(&detail, "%s: %s\n", IgnitionResultFile, orUnknown(raw))
	if journal != "" {
		fmt.Fprintf(&detail, "--- Ignition's journal: errors and warnings (last 10)\n%s\n", journal)
	}
	res.Detail = strings.TrimSpace(detail.String())
	fail := func(format string, args ...any) CheckResult {
		res.Status, res.Reason = StatusFail, jobs.OneLine(fmt.Sprintf(format, args...), 400)
		return res
	}

	var result ignitionResult
	hasResult := raw != "" && json.Unmarshal([]byte(raw), &result) == nil
	switch {
	case !hasResult && !want.ConsoleComplete && strings.TrimSpace(sec["cloud-init"]) == "present":
		return fail("no Ignition result (%s) and the image has cloud-init: it provisions itself with cloud-init, not Ignition as the job's guest.provisioning says", IgnitionResultFile)
	case !hasResult && !want.ConsoleComplete:
		return fail("Ignition did not run on this boot: no %s and no \"Ignition Complete\" on the console", IgnitionResultFile)
	case hasResult && result.UserConfigProvided != nil && !*result.UserConfigProvided:
		return fail("Ignition ran without our config: it found no user config on the config drive or at the metadata service")
	}
	got := map[string]bool{}
	for _, line := range strings.Split(sec["users"]+"\n"+sec["paths"], "\n") {
		got[strings.TrimSpace(line)] = true
	}
	var missingUsers, missingPaths []string
	for _, u := range want.Users {
		if !got[u] {
			missingUsers = append(missingUsers, u)
		}
	}
	for _, p := range want.Paths {
		if !got[p] {
			missingPaths = append(missingPaths, p)
		}
	}
	switch {
	case len(missingUsers) > 0:
		return fail("Ignition completed but the user(s) %s of its config do not exist", strings.Join(missingUsers, ", "))
	case len(missingPaths) > 0:
		return fail("Ignition completed but %s of its config is missing", strings.Join(missingPaths, ", "))
	}
	proof := "\"Ignition Complete\" on the console"
	if hasResult {
		proof = IgnitionResultFile
		if result.ProvisioningDate != "" {
			proof += " from " + result.ProvisioningDate
		}
	}
	res.Status = StatusPass
	res.Reason = jobs.OneLine(fmt.Sprintf("Ignition completed (%s); users %s and %d files of its config are there",
		proof, strings.Join(want.Users, ", "), len(want.Paths)), 400)
	return res
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
