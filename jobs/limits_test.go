package jobs

import (
	"errors"
	"testing"
	"time"
)

func TestWithinMax(t *testing.T) {
	max := Timeouts{Boot: Duration(10 * time.Minute), Total: Duration(time.Hour), CloudInit: Duration(2 * time.Minute)}
	j := Job{Timeouts: Timeouts{Total: Duration(8760 * time.Hour), Boot: Duration(11 * time.Minute)}}
	_, err := j.WithinMax(max)
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("err = %v, want *InvalidError", err)
	}
	want := "invalid job: timeouts.boot: 11m0s exceeds this worker's maximum 10m0s; timeouts.total: 8760h0m0s exceeds this worker's maximum 1h0m0s"
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}

	// Within the maxima: values kept; defaults above a maximum lowered to it,
	// others left for WithDefaults; an unbounded field stays as written.
	j = Job{Timeouts: Timeouts{Total: Duration(time.Hour), Fetch: Duration(5 * time.Hour)}}
	got, err := j.WithinMax(max)
	if err != nil {
		t.Fatal(err)
	}
	if got.Timeouts.Total.D() != time.Hour || got.Timeouts.Fetch.D() != 5*time.Hour ||
		got.Timeouts.CloudInit.D() != 2*time.Minute || got.Timeouts.Boot != 0 {
		t.Errorf("timeouts = %+v", got.Timeouts)
	}
	if got = got.WithDefaults(); got.Timeouts.Boot.D() != DefaultBoot || got.Timeouts.CloudInit.D() != 2*time.Minute {
		t.Errorf("after defaults: %+v", got.Timeouts)
	}
}
