package guest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// CloudInitWant is what the seed asked cloud-init to apply. Empty fields are not
// checked.
type CloudInitWant struct {
	InstanceID string
	Hostname   string
	// Datasource is the expected datasource, e.g. "NoCloud", "ConfigDrive" or
	// "DataSourceNoCloud"; compared case-insensitively as a prefix of the name
	// cloud-init reports ("DataSourceNoCloud [seed=/dev/sr0]" is nocloud).
	Datasource string
	// PollInterval between completion readings in the guest (default 500ms).
	PollInterval time.Duration
	// FailOnDeprecated makes deprecation notices (cloud-init 23.4+ "degraded"
	// with only DEPRECATED entries) fail the check; by default they are reported
	// in the detail only, since images' own configs commonly trigger them.
	FailOnDeprecated bool
	// ReportTimeout bounds the final report run when ctx has ended (default 20s).
	ReportTimeout time.Duration
}

// cloudInitPoll tells whether cloud-init has finished without starting Python
// (cloud-init status itself takes seconds under emulation). It waits in the
// guest, reading every %s for up to %d rounds, so the check learns of the end
// within one interval without a round trip per reading. Its first line is one
// word; once cloud-init is done (or disabled) cloudInitReport follows in the same
// session, which spares the verdict a round trip after cloud-init's end.
const cloudInitPoll = `n=0
while :; do
if [ -e /run/cloud-init/result.json ]; then echo finished
elif [ -e /run/cloud-init/disabled ] || [ -e /etc/cloud/cloud-init.disabled ]; then echo disabled
elif [ "$n" -ge %d ]; then echo waiting; exit 0
else n=$((n+1)); sleep %s 2>/dev/null || sleep 1; continue
fi
break
done
`

// pollScript is cloudInitPoll reading every interval for about within, followed
// by the report.
func pollScript(interval, within time.Duration) string {
	rounds := max(1, int(within/interval))
	secs := strconv.FormatFloat(interval.Seconds(), 'f', -1, 64)
	return fmt.Sprintf(cloudInitPoll, rounds, secs) + cloudInitReport
}

// reportEnd is cloudInitReport's last line: a poll answer that holds it holds the
// whole report.
const reportEnd = "@@end"

// cloudInitReport gathers everything the verdict needs in one round trip. It
// reads result.json and status.json itself, which every cloud-init since 0.7.7
// writes, rather than depending on status output formats (--format json is
// missing before 22.x; 23.4+ adds extended_status and exit code 2). It asks
// cloud-init status (Python: 10 s and more under emulation) only when cloud-init
// has not written result.json, its final word: disabled, or still running at the
// deadline.
const cloudInitReport = `if [ ! -e /run/cloud-init/result.json ]; then echo @@status; cloud-init status --long 2>&1; fi
echo @@result; cat /run/cloud-init/result.json 2>/dev/null
echo @@status-json; cat /run/cloud-init/status.json 2>/dev/null
echo @@instance-id; cat /var/lib/cloud/data/instance-id 2>/dev/null || cloud-init query instance_id 2>/dev/null
echo @@hostname; cat /proc/sys/kernel/hostname 2>/dev/null || hostname
echo @@log; { cat /var/log/cloud-init.log 2>/dev/null || sudo -n cat /var/log/cloud-init.log 2>/dev/null; } | grep -E '\[(WARNING|ERROR|CRITICAL)\]' | tail -n 20
echo ` + reportEnd

// ciResult is /run/cloud-init/result.json.
type ciResult struct {
	V1 struct {
		Datasource        *string             `json:"datasource"`
		Errors            []string            `json:"errors"`
		RecoverableErrors map[string][]string `json:"recoverable_errors"`
	} `json:"v1"`
}

// ciStage is one stage entry of /run/cloud-init/status.json.
type ciStage struct {
	Errors            []string            `json:"errors"`
	RecoverableErrors map[string][]string `json:"recoverable_errors"`
	Start             *float64            `json:"start"`
	Finished          *float64            `json:"finished"`
}

// ciState is what the report says.
type ciState struct {
	statusOut   string
	status      string // "done", "running", "error", "disabled", "not run"…
	extended    string // 23.4+: "degraded done", "error - done"…
	bootCode    string
	result      *ciResult
	datasource  string
	stage       string // running stage from status.json
	errors      []string
	recoverable map[string][]string
	instanceID  string
	hostname    string
	log         string
}

// parseCloudInitReport reads cloudInitReport's output: cloud-init status's
// fields, then status.json's, then result.json's, the final word once written.
func parseCloudInitReport(out string) ciState {
	sec := sections(out)
	st := ciState{statusOut: strings.TrimSpace(sec["status"]), recoverable: map[string][]string{}}
	st.status, st.extended, st.bootCode = parseStatusLong(st.statusOut)
	if raw := strings.TrimSpace(sec["result"]); raw != "" {
		var r ciResult
		if json.Unmarshal([]byte(raw), &r) == nil {
			st.result = &r
		}
	}
	st.readStatusJSON(strings.TrimSpace(sec["status-json"]))
	st.applyResult()
	st.instanceID = strings.TrimSpace(sec["instance-id"])
	st.hostname = strings.TrimSpace(sec["hostname"])
	st.log = strings.TrimSpace(sec["log"])
	return st
}

// parseStatusLong reads the fields of cloud-init status --long that the verdict
// uses (extended_status and boot_status_code only from 23.4 on).
func parseStatusLong(out string) (status, extended, bootCode string) {
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimLeft(line, "."), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "status":
			status = strings.TrimSpace(v)
		case "extended_status":
			extended = strings.TrimSpace(v)
		case "boot_status_code":
			bootCode = strings.TrimSpace(v)
		}
	}
	return status, extended, bootCode
}

// readStatusJSON takes from status.json (raw, empty when there is none) the
// datasource, the running stage, and every stage's errors and recoverable errors,
// stages in name order.
func (st *ciState) readStatusJSON(raw string) {
	var status struct {
		V1 map[string]json.RawMessage `json:"v1"`
	}
	if raw == "" || json.Unmarshal([]byte(raw), &status) != nil {
		return
	}
	var stageErrors []string
	for _, k := range slices.Sorted(maps.Keys(status.V1)) {
		v := status.V1[k]
		switch k {
		case "datasource":
			json.Unmarshal(v, &st.datasource)
		case "stage":
			json.Unmarshal(v, &st.stage)
		default:
			var s ciStage
			if json.Unmarshal(v, &s) == nil {
				stageErrors = append(stageErrors, s.Errors...)
				for lvl, msgs := range s.RecoverableErrors {
					st.recoverable[lvl] = append(st.recoverable[lvl], msgs...)
				}
			}
		}
	}
	st.errors = stageErrors
}

// applyResult lets result.json, once cloud-init wrote it, override what the
// status said: its errors, datasource and recoverable errors, and the status
// itself when cloud-init status gave none.
func (st *ciState) applyResult() {
	r := st.result
	if r == nil {
		return
	}
	st.errors = r.V1.Errors
	if st.status == "" {
		st.status = "done"
		if len(r.V1.Errors) > 0 {
			st.status = "error"
		}
	}
	if r.V1.Datasource != nil {
		st.datasource = *r.V1.Datasource
	}
	if r.V1.RecoverableErrors != nil {
		st.recoverable = r.V1.RecoverableErrors
	}
}

// finished reports whether cloud-init has run all its stages.
func (st ciState) finished() bool {
	return st.result != nil || st.status == "done" || st.status == "error"
}

// normalizeDatasource turns "DataSourceNoCloud [seed=/dev/sr0]", "NoCloud" or
// "nocloud" into "nocloud".
func normalizeDatasource(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), " ")
	s = strings.ToLower(s)
	return strings.TrimPrefix(s, "datasource")
}

// CheckCloudInit waits, under ctx, for cloud-init to finish and judges it: no
// errors, no degraded state (warnings; deprecations only with FailOnDeprecated),
// the wanted datasource, instance id and hostname applied. An image without
// cloud-init is skipped; a disabled cloud-init (it detected no datasource) fails.
// When ctx ends before cloud-init finishes, the check fails with the stage it was
// in, read with a short context of its own.
func CheckCloudInit(ctx context.Context, r Runner, want CloudInitWant) CheckResult {
	start := time.Now()
	if want.PollInterval <= 0 {
		want.PollInterval = 500 * time.Millisecond
	}
	if want.ReportTimeout <= 0 {
		want.ReportTimeout = 20 * time.Second
	}
	res := CheckResult{Name: NameCloudInit}
	done := func(s Status, reason, detail string) CheckResult {
		res.Status, res.Reason, res.Detail, res.Duration = s, jobs.OneLine(reason, 400), strings.TrimSpace(detail), time.Since(start)
		return res
	}
	runErr := func(what string, err error) CheckResult {
		res.Err = err
		return done(StatusError, fmt.Sprintf("could not %s: %v", what, err), "")
	}

	out, err := r.Run(ctx, shScript(`command -v cloud-init >/dev/null 2>&1 && echo present || echo absent`))
	if err != nil {
		return runErr("look for cloud-init in the guest", err)
	}
	if strings.TrimSpace(out.Stdout) == "absent" {
		return done(StatusSkip, "image has no cloud-init", "")
	}

	state, report := "waiting", ""
	for state == "waiting" {
		out, err := r.Run(ctx, shScript(pollScript(want.PollInterval, 20*time.Second)))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return runErr("poll cloud-init status", err)
		}
		first, rest, _ := strings.Cut(out.Stdout, "\n")
		state = strings.TrimSpace(first)
		if state != "waiting" {
			if _, whole := sections(rest)[strings.TrimPrefix(reportEnd, "@@")]; whole {
				report = rest
			}
			break
		}
		t := time.NewTimer(want.PollInterval)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil {
			break
		}
	}

	if report == "" {
		// The deadline came first, or the poll's answer lacks its report's end.
		rctx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), want.ReportTimeout)
			defer cancel()
		}
		out, err := r.Run(rctx, shScript(cloudInitReport))
		if err != nil {
			if ctx.Err() != nil {
				res.Err = errors.Join(context.Cause(ctx), err)
				return done(StatusFail, "cloud-init did not finish before the deadline (and the guest did not answer a status query)", "")
			}
			return runErr("read cloud-init's results", err)
		}
		report = out.Stdout
	}
	st := parseCloudInitReport(report)
	return judgeCloudInit(st, want, ctx.Err() != nil, done)
}

// judgeCloudInit is the check's verdict on cloud-init's report (st); deadline
// says ctx ended before cloud-init finished.
func judgeCloudInit(st ciState, want CloudInitWant, deadline bool, done func(Status, string, string) CheckResult) CheckResult {
	detail := st.detail()
	if reason, failed := st.failure(want, deadline); failed {
		return done(StatusFail, reason, detail)
	}
	return done(StatusPass, st.passReason(), detail)
}

// failure is why cloud-init fails the check, first found of: its run did not end
// well, it did not apply the seed, it finished degraded.
func (st ciState) failure(want CloudInitWant, deadline bool) (string, bool) {
	if reason, failed := st.runFailure(want.Datasource, deadline); failed {
		return reason, true
	}
	if reason, failed := st.seedFailure(want); failed {
		return reason, true
	}
	if lvl, msg, ok := st.degraded(want.FailOnDeprecated); ok {
		return fmt.Sprintf("cloud-init finished degraded: %s: %s", lvl, jobs.FirstLine(msg, 0)), true
	}
	return "", false
}

// runFailure is why cloud-init's run fails the check: it is disabled (it detected
// no datasource; wantDatasource names the one the seed offered), it has not
// finished, or it reported an error.
func (st ciState) runFailure(wantDatasource string, deadline bool) (string, bool) {
	switch {
	case st.disabled():
		return fmt.Sprintf("cloud-init is disabled (%s): it did not detect the %s datasource", orUnknown(st.bootCode), cmp.Or(wantDatasource, "any")), true
	case !st.finished() && deadline:
		return fmt.Sprintf("cloud-init did not finish before the deadline (%s)", st.progress()), true
	case !st.finished():
		return fmt.Sprintf("cloud-init reports it is not finished (%s)", st.progress()), true
	case len(st.errors) > 0:
		return "cloud-init reported an error: " + jobs.FirstLine(st.errors[0], 0), true
	case st.status == "error":
		return "cloud-init reported an error: status: error", true
	}
	return "", false
}

// disabled reports whether cloud-init is disabled: its status says so, or, before
// it finished, its boot status code.
func (st ciState) disabled() bool {
	return st.status == "disabled" || (!st.finished() && strings.HasPrefix(st.bootCode, "disabled"))
}

// progress says where an unfinished cloud-init is: its status and running stage.
func (st ciState) progress() string {
	where := st.status
	if st.stage != "" {
		where += ", in stage " + st.stage
	}
	if where == "" {
		where = "no status"
	}
	return where
}

// seedFailure is why what cloud-init applied is not the job's seed: another
// datasource (or none), instance id or hostname than want's.
func (st ciState) seedFailure(want CloudInitWant) (string, bool) {
	if want.Datasource != "" {
		got := normalizeDatasource(st.datasource)
		if got == "" || got == "none" {
			return fmt.Sprintf("cloud-init found no datasource (%s), want %s", orUnknown(st.datasource), want.Datasource), true
		}
		if !strings.HasPrefix(got, normalizeDatasource(want.Datasource)) {
			return fmt.Sprintf("cloud-init used %s, want %s", firstWord(st.datasource), want.Datasource), true
		}
	}
	if want.InstanceID != "" && st.instanceID != want.InstanceID {
		if st.instanceID == "" {
			return "cloud-init recorded no instance id", true
		}
		return fmt.Sprintf("instance id is %q, want %q: cloud-init did not apply this job's seed", st.instanceID, want.InstanceID), true
	}
	if want.Hostname != "" && !sameHost(st.hostname, want.Hostname) {
		return fmt.Sprintf("hostname is %q, want %q: cloud-init did not set it", st.hostname, want.Hostname), true
	}
	return "", false
}

// passReason names the datasource cloud-init finished from and counts its
// deprecation notices.
func (st ciState) passReason() string {
	reason := "cloud-init finished from " + firstWord(st.datasource)
	if n := len(st.recoverable["DEPRECATED"]); n > 0 {
		reason += fmt.Sprintf(" (%d deprecation notices)", n)
	}
	return reason
}

// degraded returns the first recoverable error that fails the check.
func (st ciState) degraded(failOnDeprecated bool) (level, msg string, ok bool) {
	levels := make([]string, 0, len(st.recoverable))
	for lvl, msgs := range st.recoverable {
		if len(msgs) > 0 && (lvl != "DEPRECATED" || failOnDeprecated) {
			levels = append(levels, lvl)
		}
	}
	if len(levels) == 0 {
		if strings.HasPrefix(st.extended, "degraded") && len(st.recoverable) == 0 {
			return "degraded", st.extended, true
		}
		return "", "", false
	}
	// The most severe level first.
	rank := func(l string) int {
		return slices.Index([]string{"CRITICAL", "ERROR", "WARNING", "DEPRECATED"}, l)
	}
	sort.Slice(levels, func(i, j int) bool {
		ri, rj := rank(levels[i]), rank(levels[j])
		if ri < 0 {
			ri = 99
		}
		if rj < 0 {
			rj = 99
		}
		return ri < rj || (ri == rj && levels[i] < levels[j])
	})
	return levels[0], st.recoverable[levels[0]][0], true
}

func (st ciState) detail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "status: %s", orUnknown(st.status))
	if st.extended != "" {
		fmt.Fprintf(&b, " (%s)", st.extended)
	}
	fmt.Fprintf(&b, "\ndatasource: %s\ninstance-id: %s\nhostname: %s\n", orUnknown(st.datasource), orUnknown(st.instanceID), orUnknown(st.hostname))
	for _, e := range st.errors {
		fmt.Fprintf(&b, "error: %s\n", strings.TrimSpace(e))
	}
	lvls := make([]string, 0, len(st.recoverable))
	for l := range st.recoverable {
		lvls = append(lvls, l)
	}
	sort.Strings(lvls)
	for _, l := range lvls {
		for _, m := range st.recoverable[l] {
			fmt.Fprintf(&b, "%s: %s\n", strings.ToLower(l), jobs.OneLine(m, 400))
		}
	}
	if st.log != "" {
		fmt.Fprintf(&b, "--- cloud-init.log warnings and errors (last 20)\n%s\n", st.log)
	}
	if st.statusOut != "" {
		fmt.Fprintf(&b, "--- cloud-init status --long\n%s\n", st.statusOut)
	}
	return b.String()
}

func orUnknown(s string) string {
	if strings.TrimSpace(s) == "" {
		return "unknown"
	}
	return s
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(strings.TrimSpace(s), " ")
	return orUnknown(w)
}

// sameHost compares hostnames case-insensitively, accepting a short name for a
// fully qualified one either way.
func sameHost(got, want string) bool {
	got, want = strings.ToLower(strings.TrimSpace(got)), strings.ToLower(strings.TrimSpace(want))
	if got == "" {
		return false
	}
	if got == want {
		return true
	}
	short := func(s string) string { h, _, _ := strings.Cut(s, "."); return h }
	return short(got) == short(want)
}
