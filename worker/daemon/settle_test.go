package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

func TestDecideRun(t *testing.T) {
	pass := jobs.Result{Verdict: jobs.VerdictPass}
	fail := jobs.Result{Verdict: jobs.VerdictFail, Reason: "no ssh"}
	retryable := jobs.Result{Verdict: jobs.VerdictError, Retryable: true, Reason: "libvirtd down"}
	badJob := jobs.Result{Verdict: jobs.VerdictError, Reason: "bad job"}
	cases := []struct {
		name       string
		end        runEnd
		action     action
		state      stateEnd
		delay      time.Duration
		reported   bool
		reasonHas  string
		whyHas     string
		reportedAs jobs.Verdict
	}{
		{name: "pass is reported and acked", end: runEnd{res: pass, attempts: 1, maxDeliver: 3},
			action: actionAck, state: stateForget, reported: true, reportedAs: jobs.VerdictPass},
		{name: "fail is reported and acked", end: runEnd{res: fail, attempts: 1, maxDeliver: 3},
			action: actionAck, state: stateForget, reported: true, reasonHas: "no ssh", reportedAs: jobs.VerdictFail},
		{name: "a verdict survives shutdown", end: runEnd{res: fail, shutdown: true, attempts: 1, maxDeliver: 3},
			action: actionAck, state: stateForget, reported: true, reportedAs: jobs.VerdictFail},
		{name: "cancelled by an operator reports nothing", end: runEnd{res: pass, cancelled: true, attempts: 1, maxDeliver: 3},
			action: actionCancelled, state: stateForget},
		{name: "shutdown hands an unfinished job back", end: runEnd{res: retryable, shutdown: true, worker: "w1", attempts: 1, maxDeliver: 3},
			action: actionShutdown, state: stateHandBack, whyHas: "worker w1 shut down"},
		{name: "retryable with attempts left goes back after its delay", end: runEnd{res: retryable, attempts: 2, maxDeliver: 3, retryDelay: 40 * time.Second},
			action: actionRetry, state: stateRetrying, delay: 40 * time.Second, whyHas: "libvirtd down"},
		{name: "retryable on the last attempt is reported", end: runEnd{res: retryable, attempts: 3, maxDeliver: 3},
			action: actionAck, state: stateForget, reported: true, reasonHas: "gave up after 3 attempts: libvirtd down", reportedAs: jobs.VerdictError},
		{name: "a bad job is reported and terminated", end: runEnd{res: badJob, attempts: 1, maxDeliver: 3},
			action: actionTerm, state: stateForget, reported: true, reasonHas: "bad job", reportedAs: jobs.VerdictError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := decideRun(c.end)
			if s.action != c.action || s.state != c.state || s.delay != c.delay {
				t.Fatalf("got action %v state %v delay %v, want %v %v %v", s.action, s.state, s.delay, c.action, c.state, c.delay)
			}
			if (s.result != nil) != c.reported {
				t.Fatalf("reported = %v, want %v", s.result != nil, c.reported)
			}
			if s.result != nil && (s.result.Verdict != c.reportedAs || !strings.Contains(s.result.Reason, c.reasonHas)) {
				t.Fatalf("reported %s %q, want %s containing %q", s.result.Verdict, s.result.Reason, c.reportedAs, c.reasonHas)
			}
			if !strings.Contains(s.why, c.whyHas) {
				t.Fatalf("why %q, want it to contain %q", s.why, c.whyHas)
			}
		})
	}
}

func TestDecideAdmission(t *testing.T) {
	final := func(reason string) jobs.Result {
		return jobs.Result{Verdict: jobs.VerdictError, Retryable: true, Reason: reason}
	}
	s := decideAdmission(admissionEnd{shutdown: true, attempts: 3, maxDeliver: 3, final: final})
	if s.action != actionShutdown || s.state != stateHandBack || s.result != nil {
		t.Fatalf("shutdown: %+v", s)
	}
	s = decideAdmission(admissionEnd{worker: "w1", needMiB: 4096, attempts: 3, maxDeliver: 3, final: final})
	if s.action != actionAck || s.result == nil || !strings.Contains(s.result.Reason, "no worker could give 4096 MiB of memory in 3 attempts") {
		t.Fatalf("last attempt: %+v", s)
	}
	s = decideAdmission(admissionEnd{worker: "w1", needMiB: 4096, attempts: 1, maxDeliver: 3, retry: time.Minute, final: final})
	if s.action != actionAdmission || s.delay != time.Minute || s.state != stateRetrying || s.result != nil ||
		s.why != "worker w1 could not give 4096 MiB of memory" {
		t.Fatalf("attempts left: %+v", s)
	}
}

// The deliveries metric keeps its labels.
func TestActionLabels(t *testing.T) {
	want := map[action]string{actionAck: "ack", actionTerm: "term", actionDuplicate: "duplicate", actionCancelled: "cancelled",
		actionRetry: "nak", actionShutdown: "shutdown", actionAdmission: "admission", 0: "action(0)"}
	for a, w := range want {
		if a.String() != w {
			t.Errorf("%d: %q, want %q", int(a), a.String(), w)
		}
	}
}
