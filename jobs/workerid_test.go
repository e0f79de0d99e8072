package jobs

import "testing"

// One worker-id rule: what WorkerIDFrom makes is valid, and only that.
func TestWorkerID(t *testing.T) {
	for in, want := range map[string]string{"hv1.example.org": "hv1-example-org", "Host_A": "host-a",
		"-x-": "x", "0123456789abcdef0123456789abcdef-more": "0123456789abcdef0123456789abcdef", "ä": ""} {
		if got := WorkerIDFrom(in); got != want {
			t.Errorf("WorkerIDFrom(%q) = %q, want %q", in, got, want)
		}
	}
	for _, ok := range []string{"w1", "hv1-example-org", "0123456789abcdef0123456789abcdef"} {
		if err := ValidWorkerID(ok); err != nil {
			t.Errorf("ValidWorkerID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Host", "a b", "hv1.example.org", "0123456789abcdef0123456789abcdef0", "-x"} {
		if err := ValidWorkerID(bad); err == nil {
			t.Errorf("ValidWorkerID(%q) accepted it", bad)
		}
	}
	if err := ValidWorkerID(DefaultWorkerID()); err != nil {
		t.Errorf("the default %q: %v", DefaultWorkerID(), err)
	}
}
