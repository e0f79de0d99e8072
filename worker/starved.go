package worker

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/jobs"
)

// A guest emulated on a host with more runnable work than CPUs gets a slice of a
// core: it may still be in its firmware or kernel when the boot deadline comes, or
// its kernel may find no working timer and panic. Neither is the image's fault,
// and a fail would blame it; the job ends in a retryable error naming the host's
// load, and runs again when (or where) there is CPU to spare.

// starvedLoadPerCPU is the one-minute load average per CPU from which a guest
// that had not finished booting at its deadline counts as starved by its host.
const starvedLoadPerCPU = 2.0

// HostStarvedError is a boot the host starved of CPU: the infrastructure's
// fault, worth another try.
type HostStarvedError struct {
	// What says what the guest showed (or had not shown yet).
	What string
	// Load is the host's one-minute load average and CPUs its CPU count, when read.
	Load float64
	CPUs int
}

func (e *HostStarvedError) Error() string {
	if e.CPUs == 0 {
		return e.What + ": the host starved the guest of CPU"
	}
	return fmt.Sprintf("%s while this host's load average was %.1f on %d CPUs: the host, not the image, was too slow; the job runs again",
		e.What, e.Load, e.CPUs)
}

// ErrorClass: the host's fault, and another run may find it less busy.
func (e *HostStarvedError) ErrorClass() (jobs.Class, bool) { return jobs.ClassInfra, true }

// hostLoad returns the host's one-minute load average and CPU count.
func hostLoad() (float64, int, error) {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, 0, fmt.Errorf("/proc/loadavg: empty")
	}
	load, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/loadavg: %w", err)
	}
	return load, runtime.NumCPU(), nil
}

// bootEnded reports whether the console showed the guest finish booting: a login
// prompt, init's end of boot, or cloud-init done.
func bootEnded(con *console.Console) bool {
	for _, name := range console.BootEndMilestones() {
		if _, ok := con.Milestone(name); ok {
			return true
		}
	}
	return false
}

// bootProgress says how far the console showed the boot get: its last milestone
// and when it last wrote, for a reason given at the boot deadline.
func bootProgress(con *console.Console) string {
	what := "the console showed no boot milestone"
	if ms := con.Milestones(); len(ms) > 0 {
		last := ms[len(ms)-1]
		what = fmt.Sprintf("the console's last milestone was %s at %s", last.Reason, secs(last.Elapsed))
	}
	if at, ok := con.LastOutput(); ok {
		what += fmt.Sprintf(", its last output at %s", secs(at))
	} else {
		what += ", and it wrote nothing"
	}
	return what
}

// starvedAtDeadline decides whether a guest that had not finished booting when
// its boot deadline came was starved by its host: the console had not shown the
// end of boot, and the host ran at least starvedLoadPerCPU per CPU.
func starvedAtDeadline(con *console.Console, load float64, cpus int) (*HostStarvedError, bool) {
	if bootEnded(con) || cpus <= 0 || load < starvedLoadPerCPU*float64(cpus) {
		return nil, false
	}
	return &HostStarvedError{What: "the guest had not finished booting at its boot deadline (" + bootProgress(con) + ")",
		Load: load, CPUs: cpus}, true
}
