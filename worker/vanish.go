package worker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm"
)

// vanishInterval is how often a booted machine is checked for still running.
const vanishInterval = 2 * time.Second

// powerOffLines are what a Linux guest prints when it powers itself off or halts.
var powerOffLines = []string{"reboot: Power down", "reboot: System halted", "System halted", "Power down"}

// watchMachine notices, within vanishInterval, a machine that stopped running while
// its job still needs it, and stops the guest stages with why: a guest that powered
// itself off (its console says so) is the image's fault; a machine destroyed or
// killed from outside (another process, an operator, the emulator dying) is a
// retryable infrastructure error naming the machine, never the image's fault. A
// hypervisor that cannot answer (libvirtd restarting) is not a stopped machine.
func (j *jobRun) watchMachine(ctx context.Context, m vm.Machine, stop context.CancelCauseFunc) {
	everyTick(ctx, vanishInterval, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		running, err := m.Running(cctx)
		cancel()
		if err != nil || running || ctx.Err() != nil {
			return false
		}
		stop(j.stoppedCause(m))
		return true
	})
}

// stoppedCause says why machine m, found no longer running, stopped: the guest
// powering itself off (its console says so) is the image's fault; anything else
// (destroyed from outside, its emulator killed) is a retryable infrastructure error
// naming the machine. Every path that finds a stopped machine asks this, so which
// one notices first never changes the verdict.
func (j *jobRun) stoppedCause(m vm.Machine) error {
	tail := j.con.Tail(20)
	for _, l := range powerOffLines {
		if strings.Contains(tail, l) {
			return &ImageFault{Check: jobs.CheckBoot, Reason: "the guest powered itself off (console: " + strings.TrimSpace(lastLineWith(tail, l)) + ")"}
		}
	}
	j.log.Warn("machine vanished", "domain", m.Name())
	return &vm.Error{Op: "watch", Machine: m.Name(), Retryable: true,
		Err: fmt.Errorf("%w: it stopped without the guest powering off (destroyed from outside, or its emulator killed)", vm.ErrVanished)}
}

func lastLineWith(s, sub string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return sub
}
