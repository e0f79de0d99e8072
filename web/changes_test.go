package web

import (
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// TestJobPageSaysWhatChangedSinceThePreviousRelease: the job page has the changes
// since the family's previous release (summary, each regression, before and after,
// the packages), and no such section on a family's first release.
func TestJobPageSaysWhatChangedSinceThePreviousRelease(t *testing.T) {
	url := serveRecordedPanic(t, func(r *jobs.Result) {
		r.JobID = "d12-1120"
		r.Inspection = &jobs.Inspection{Changes: &jobs.Changes{PreviousJob: "d12-1110", PreviousVersion: "20261110-1",
			PreviousAt: time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC),
			Added:      []jobs.Package{{Name: "zstd", Version: "1.5.4+dfsg2-5", Arch: "amd64"}},
			Upgraded: []jobs.Upgrade{{Name: "libc6", Arch: "amd64", Before: "2.36-9+deb12u7", After: "2.36-9+deb12u9"},
				{Name: "libssl3", Arch: "amd64", Before: "3.0.15-1~deb12u1", After: "3.0.14-1~deb12u2", Downgrade: true}},
			KernelBefore: "6.1.0-27-cloud-amd64", KernelAfter: "6.1.0-28-cloud-amd64",
			SizeBefore: 400 << 20, SizeAfter: 416 << 20,
			BootBefore: jobs.Duration(40 * time.Second), BootAfter: jobs.Duration(54 * time.Second),
			Regressions: []string{"boot time 40s → 54s (+35 %, beyond the family's <30> %)"}, Regressed: []string{jobs.MeasureBoot}}}
	})
	body := jobPage(t, url, "d12-1120")
	for _, want := range []string{
		`<section class="changes"><h2>Since 20261110-1</h2>`,
		`<p class="changes-line">since 20261110-1: &#43;1 −0 ~2 packages (1 downgraded), kernel 6.1.0-27-cloud-amd64 → 6.1.0-28-cloud-amd64, size &#43;4 %, boot &#43;35 % (regression)</p>`,
		`<li><span class="v error">regression</span> boot time 40s → 54s (&#43;35 %, beyond the family&#39;s &lt;30&gt; %)</li>`,
		`Compared with job <a href="/jobs/d12-1110">d12-1110</a> (release 20261110-1)`,
		`<tr><th>kernel</th><td>6.1.0-27-cloud-amd64</td><td>6.1.0-28-cloud-amd64</td></tr>`,
		`<tr><th>boot (domain start to SSH)</th><td>40.0s</td><td>54.0s</td></tr>`,
		`<tr class="added"><td>zstd:amd64</td><td>-</td><td>1.5.4&#43;dfsg2-5</td></tr>`,
		`<tr class="downgraded"><td>libssl3:amd64</td><td>3.0.15-1~deb12u1</td><td>3.0.14-1~deb12u2 (downgrade)</td></tr>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("job page lacks %s", want)
		}
	}
	if code, body := get(t, url+"/jobs/tiny-panic"); code != 200 || strings.Contains(body, `class="changes"`) {
		t.Error("a job without a previous release shows changes")
	}
}
