package worker

import (
	"cmp"
	"context"
	"flag"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// The integration tests boot guests side by side on a host of two cores (this
// machine and CI's). go test's -parallel (GOMAXPROCS: 2) would hold them to two
// tests at a time whatever they do, whether they keep both cores busy or wait
// out a guest's silence; the guest budget below bounds what they boot instead,
// and go test's bound is lifted above it.

const (
	// budgetGuests is how many guests the suite runs at once.
	budgetGuests = 3
	// budgetUnits bounds their vCPUs (a job's machine.vcpus, one more for an
	// inspection's appliance): three Debian-class guests, or two beside a tiny
	// one when one of them is inspected; never two appliances beside a third.
	budgetUnits = 7
	// integrationParallel is go test's -parallel for this package unless the
	// command line sets one: above the guest budget, so that the waiting is
	// the budget's, which serves the heaviest jobs first.
	integrationParallel = 64
	// budgetGather is how long the budget lets the parallel tests queue before it
	// starts any of them (gather): they all resume at once when the sequential
	// ones end, and the longest should go first, not the first to ask.
	budgetGather = 3 * time.Second
	// besideOthersTCGFactor is the TCG factor of the envs that run beside
	// others (newParallelIntegrationEnv): with three guests on two cores a
	// guest gets about two thirds of a core, so its deadlines and the watch's
	// after-boot grace grow by as much over the worker's default 3, as e2e's
	// do (e2e/e2e_test.go, e2eTCGFactor). tiny's 20 s boot budget is 100 s.
	besideOthersTCGFactor = 5
)

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		if err := flag.Set("test.parallel", strconv.Itoa(integrationParallel)); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// guests is the budget every integration test takes its guests from.
var guests = &guestBudget{units: budgetUnits, guests: budgetGuests}

// guestBudget hands out room for guests: units (vCPUs) and guest slots. Waiting
// jobs are served longest first (by boot timeout: Ignition, then Debian, then
// tiny), heaviest first among those, in arrival order among equals, so the long
// boots start early and the short ones fill in after them; a lighter job takes
// room a heavier one cannot use yet.
type guestBudget struct {
	mu      sync.Mutex
	units   int // free vCPUs
	guests  int // free guest slots
	waiting []*budgetWait
	gather  sync.Once
	closed  bool // gathering: nothing starts yet
}

type budgetWait struct {
	units int
	rank  time.Duration // the job's boot timeout: the longest jobs go first
	ready chan struct{}
}

// acquire waits for room for a guest of units vCPUs (at least 1, at most the
// whole budget) and returns the function that gives it back. Waiting jobs with a
// longer rank (boot timeout) go first, then the heavier ones.
func (b *guestBudget) acquire(units int, rank time.Duration) (release func()) {
	units = min(max(units, 1), budgetUnits)
	w := &budgetWait{units: units, rank: rank, ready: make(chan struct{})}
	b.mu.Lock()
	b.waiting = append(b.waiting, w)
	b.grant()
	b.mu.Unlock()
	<-w.ready
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.units += units
			b.guests++
			b.grant()
		})
	}
}

// gatherFirst holds every job back for budgetGather from the first call on, so
// that the tests resuming together all queue before the longest of them starts.
// The parallel tests call it when they resume; later calls do nothing.
func (b *guestBudget) gatherFirst() {
	b.gather.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		time.AfterFunc(budgetGather, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.closed = false
			b.grant()
		})
	})
}

// grant starts every waiting job that fits, longest and heaviest first. b.mu is
// held.
func (b *guestBudget) grant() {
	if b.closed {
		return
	}
	slices.SortStableFunc(b.waiting, func(x, y *budgetWait) int {
		return cmp.Or(cmp.Compare(y.rank, x.rank), cmp.Compare(y.units, x.units))
	})
	kept := b.waiting[:0]
	for _, w := range b.waiting {
		if b.guests > 0 && w.units <= b.units {
			b.units -= w.units
			b.guests--
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	b.waiting = kept
}

// run runs job on env's runner within the guest budget: the job's vCPUs, and one
// more for an inspection's appliance beside the boot. Its timeouts start once the
// budget has room. A retryable error (a host that starved the guest of CPU, a
// libvirt hiccup) runs the job once more, as the daemon would; progress sees the
// events of the attempt whose result is returned.
func (env *integrationEnv) run(t testing.TB, job jobs.Job, progress func(jobs.Progress)) jobs.Result {
	t.Helper()
	defaulted := job.WithDefaults()
	units, rank := defaulted.Machine.VCPUs, defaulted.Timeouts.Boot.D()
	if env.runner.inspect != nil {
		units++
	}
	for attempt := 1; ; attempt++ {
		var (
			mu     sync.Mutex
			events []jobs.Progress
		)
		release := guests.acquire(units, rank)
		res := env.runner.Run(context.Background(), job, attempt, func(p jobs.Progress) {
			mu.Lock()
			events = append(events, p)
			mu.Unlock()
		})
		release()
		if attempt == 1 && res.Verdict == jobs.VerdictError && res.Retryable {
			t.Logf("%s: retryable error (%s: %s): running it again, as the daemon would", job.ID, res.FailedCheck, res.Reason)
			continue
		}
		if progress != nil {
			mu.Lock()
			for _, p := range events {
				progress(p)
			}
			mu.Unlock()
		}
		return res
	}
}
