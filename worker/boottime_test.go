package worker

import (
	"testing"

	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// A passing job records the stages a release's boot time is measured by
// (inspect.BootTime: from the boot stage's start to the ssh stage's end), what its
// family's next release is compared with.
func TestPassRecordsTheBootTimeReleasesAreComparedBy(t *testing.T) {
	addr, key := sshServerKey(t)
	hv := &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	res, took := runFake(t, hv, loginJob("boottime"))
	if res.Verdict != jobs.VerdictPass {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if bt := inspect.BootTime(res); bt <= 0 || bt > took {
		t.Errorf("boot time %s (the job took %s) from stages %+v", bt, took, res.Stages)
	}
	if vt := inspect.VerdictTime(res); vt <= 0 || vt > took {
		t.Errorf("time to verdict %s (the job took %s)", vt, took)
	}
}
