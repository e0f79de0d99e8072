package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// Unit tests with the fake hypervisor: a machine destroyed from outside mid-boot
// ends the job within seconds as a retryable infrastructure error; a guest that
// powers itself off fails boot.
func TestAMachineDestroyedFromOutsideIsNoticedAndNotTheImagesFault(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t)}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	onFirstBoot(hv, func(m *fake.Machine) {
		time.Sleep(500 * time.Millisecond)
		m.Destroy(context.Background())
	})
	job := testJob("vanish")
	job.Timeouts.Boot = jobs.Duration(time.Minute)
	job.Timeouts.Total = jobs.Duration(2 * time.Minute)
	start := time.Now()
	res := r.Run(context.Background(), job, 1, nil)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s to notice", took)
	}
	if res.Verdict != jobs.VerdictError || !res.Retryable || !strings.Contains(res.Reason, "vanished") || !strings.Contains(res.Reason, res.Machine) {
		t.Fatalf("got %s retryable=%v %q", res.Verdict, res.Retryable, res.Reason)
	}
	assertCleanedUp(t, cfg, hv)
}

func TestAGuestThatPowersItselfOffFailsBoot(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{{Text: "[    1.0] reboot: Power down"}}}
	r, _ := newTestRunner(t, &fakeImages{}, hv)
	onFirstBoot(hv, func(m *fake.Machine) {
		time.Sleep(500 * time.Millisecond)
		m.Destroy(context.Background()) // on_poweroff=destroy
	})
	job := testJob("poweroff")
	job.Timeouts.Boot = jobs.Duration(time.Minute)
	job.Timeouts.Total = jobs.Duration(2 * time.Minute)
	res := r.Run(context.Background(), job, 1, nil)
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckBoot || !strings.Contains(res.Reason, "powered itself off") {
		t.Fatalf("got %s %s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
}
