package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/retry"

	"github.com/imagevet/imagevet/queue"
)

// action is what happens to a delivered job message once the daemon is done with
// it. Its String is the deliveries metric's label.
type action int

const (
	// actionAck: the result was reported (pass, fail, or a final error); acked.
	actionAck action = iota + 1
	// actionTerm: the result was reported (a bad job, never retried); terminated.
	actionTerm
	// actionDuplicate: the job was reported before and is not run again; acked.
	actionDuplicate
	// actionCancelled: an operator cancelled the job and reported it; acked.
	actionCancelled
	// actionRetry: the attempt failed for a passing reason, or the queue could not
	// be read or written; redelivered after the delay.
	actionRetry
	// actionShutdown: the worker is shutting down; handed back at once without
	// using an attempt up.
	actionShutdown
	// actionAdmission: this host could not give the job's memory; redelivered after
	// the delay, for another worker.
	actionAdmission
)

var actionNames = [...]string{
	actionAck: "ack", actionTerm: "term", actionDuplicate: "duplicate", actionCancelled: "cancelled",
	actionRetry: "nak", actionShutdown: "shutdown", actionAdmission: "admission",
}

func (a action) String() string {
	if a <= 0 || int(a) >= len(actionNames) {
		return fmt.Sprintf("action(%d)", int(a))
	}
	return actionNames[a]
}

// stateEnd is how the job's entry in the job-state bucket ends with a settlement.
type stateEnd int

const (
	stateClosed   stateEnd = iota // left as the attempt last wrote it
	stateForget                   // removed: the job is done
	stateRetrying                 // waiting for its retry; the attempt counts
	stateHandBack                 // queued again; the attempt does not count
)

// settlement is the daemon's decision about one delivery: what to report, how the
// job's state ends and what happens to the message. finish carries it out.
type settlement struct {
	action action
	delay  time.Duration // before redelivery, for the nak actions
	result *jobs.Result  // reported before the message is settled; nil reports nothing
	state  stateEnd
	why    string // the job state's last error, for stateRetrying and stateHandBack
}

// reported settles a delivery by reporting res, then acking or terminating.
func reported(res jobs.Result, a action) settlement {
	return settlement{action: a, result: &res, state: stateForget}
}

// runEnd is what the daemon knows when a runner has returned.
type runEnd struct {
	res        jobs.Result
	cancelled  bool // by `imagevet cancel`, which reported the job itself
	shutdown   bool // the jobs' context was cancelled by the worker's shutdown
	worker     string
	attempts   int // attempts used, this one included
	maxDeliver int
	retryDelay time.Duration // the nak delay after this attempt
}

// decideRun settles an attempt that ran. A verdict (pass or fail) is always
// reported; an error is reported unless shutdown interrupted it (another worker
// takes the job) or it is retryable with attempts left.
func decideRun(e runEnd) settlement {
	verdict := e.res.Verdict == jobs.VerdictPass || e.res.Verdict == jobs.VerdictFail
	switch {
	case e.cancelled:
		return settlement{action: actionCancelled, state: stateForget}
	case e.shutdown && !verdict:
		return settlement{action: actionShutdown, state: stateHandBack, why: "worker " + e.worker + " shut down mid-job"}
	case verdict:
		return reported(e.res, actionAck)
	case e.res.Retryable && e.attempts < e.maxDeliver:
		return settlement{action: actionRetry, delay: e.retryDelay, state: stateRetrying, why: e.res.Reason}
	case e.res.Retryable:
		res := e.res
		res.Reason = fmt.Sprintf("gave up after %d attempts: %s", e.attempts, res.Reason)
		return reported(res, actionAck)
	default:
		return reported(e.res, actionTerm)
	}
}

// admissionEnd is what the daemon knows when a job could not be admitted.
type admissionEnd struct {
	shutdown   bool // admission gave up because the worker is shutting down
	worker     string
	needMiB    int64
	attempts   int // attempts used, this one included
	maxDeliver int
	retry      time.Duration // AdmissionRetry
	// final is the error result reported when no attempt is left.
	final func(reason string) jobs.Result
}

// decideAdmission settles a job this host could not give its memory: handed back
// on shutdown, reported once its attempts are used up, else back to the queue.
func decideAdmission(e admissionEnd) settlement {
	switch {
	case e.shutdown:
		return settlement{action: actionShutdown, state: stateHandBack}
	case e.attempts >= e.maxDeliver:
		return reported(e.final(fmt.Sprintf("no worker could give %d MiB of memory in %d attempts", e.needMiB, e.attempts)), actionAck)
	default:
		return settlement{action: actionAdmission, delay: e.retry, state: stateRetrying,
			why: fmt.Sprintf("worker %s could not give %d MiB of memory", e.worker, e.needMiB)}
	}
}

// finish carries out a settlement: it stops the heartbeat, ends the job's state,
// reports the result if there is one, and only then settles the message. A result
// that cannot be reported hands the job back, so the next delivery reports it.
func (d *Daemon) finish(stop context.Context, q *queue.Queue, dl *delivery, s settlement) {
	dl.hb()
	if dl.stage != nil {
		switch s.state {
		case stateRetrying:
			dl.stage.retrying(stop, s.why)
		case stateHandBack:
			dl.stage.handBack(stop, s.why)
		default:
			dl.stage.close()
		}
	}
	if s.result != nil && !d.report(stop, q, dl, *s.result) {
		d.settle(dl.msg, actionRetry, d.cfg.AdmissionRetry, dl.log)
		return
	}
	d.settle(dl.msg, s.action, s.delay, dl.log)
	if s.state == stateForget && dl.jobID != "" {
		ctx, cancel := opContext(stop)
		defer cancel()
		if err := q.ForgetJobState(ctx, dl.jobID, dl.seq); err != nil {
			dl.log.Debug("job state not removed", "err", err)
		}
	}
}

// report publishes the result (console log, results stream, status). Publishing is
// retried for as long as the job's lease can be kept (NATS restarting, a leader
// election); false means it could not be reported.
func (d *Daemon) report(stop context.Context, q *queue.Queue, dl *delivery, res jobs.Result) bool {
	log := dl.log
	var published bool
	// Reports still go out during shutdown: the tries end with their own deadline only.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(stop), max(2*time.Minute, 2*d.ackWait))
	defer cancel()
	err := reportRetry.Do(ctx, func(int) error {
		var err error
		published, err = d.publish(stop, q, res, dl.replaces, log)
		return err
	}, func(try int, err error) bool {
		log.Warn("publishing the result failed", "try", try, "err", err)
		return true
	})
	if err != nil {
		log.Error("result not published, handing the job back", "err", err)
		return false
	}
	if published {
		d.m.jobs.WithLabelValues(string(res.Verdict)).Inc()
	}
	log.Info("job reported", "verdict", res.Verdict, "failed_check", res.FailedCheck,
		"reason", res.Reason, "published", published)
	return true
}

// reportRetry paces the tries of a report.
var reportRetry = retry.Policy{Initial: time.Second, Max: 10 * time.Second, Jitter: 0.2}

// settle acks, naks (after delay) or terminates a message as the action says, and
// counts it.
func (d *Daemon) settle(msg jetstream.Msg, a action, delay time.Duration, log *slog.Logger) {
	var err error
	switch a {
	case actionAck, actionDuplicate, actionCancelled:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = msg.DoubleAck(ctx)
		cancel()
	case actionTerm:
		err = msg.Term()
	default:
		err = msg.NakWithDelay(delay)
	}
	d.m.deliveries.WithLabelValues(a.String()).Inc()
	if err != nil {
		// The server redelivers after AckWait; dedupe on run covers a lost ack.
		log.Warn("settling the job failed", "action", a, "err", err)
	}
}
