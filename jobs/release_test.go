package jobs

import (
	"strings"
	"testing"
)

func TestReleaseJobID(t *testing.T) {
	d1 := "sha512:" + strings.Repeat("ab", 64)
	d2 := "sha512:" + strings.Repeat("cd", 64)
	a := ReleaseJobID("ubuntu-24.04", "20261120.1", d1)
	if a != "ubuntu-24-04-20261120-1-abababababab" || !ValidJobID(a) {
		t.Errorf("id %q", a)
	}
	if ReleaseJobID("ubuntu-24.04", "20261120.1", d1) != a {
		t.Error("not deterministic")
	}
	if ReleaseJobID("ubuntu-24.04", "20261120.1", d2) == a {
		t.Error("a respin with another digest must get its own id")
	}
	long := ReleaseJobID(strings.Repeat("f", 64), strings.Repeat("9.", 60)+"x", d1)
	if !ValidJobID(long) || len(long) > 128 {
		t.Errorf("long id %q (%d)", long, len(long))
	}
	if long == ReleaseJobID(strings.Repeat("f", 64), strings.Repeat("9.", 60)+"y", d1) {
		t.Error("shortened ids collide")
	}
	if id := ReleaseJobID("c", "0.6.3+build/../x", "sha256:"+strings.Repeat("0", 64)); !ValidJobID(id) {
		t.Errorf("id %q", id)
	}
}

func TestDecodeReleaseRecordRefusesNewerVersions(t *testing.T) {
	if _, err := DecodeReleaseRecord([]byte(`{"version": 99, "family": "x"}`)); err == nil {
		t.Error("newer version accepted")
	}
	r, err := DecodeReleaseRecord([]byte(`{"version": 1, "family": "x", "release": "1", "state": "queued"}`))
	if err != nil || r.Family != "x" || r.State != ReleaseQueued {
		t.Errorf("%+v %v", r, err)
	}
}
