package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// Every value that cannot work is an error naming the setting and the value;
// nothing is silently replaced by a default. (Values that do not parse are the
// settings table's: cmd/imagevet.)
func TestConfigValidateNamesTheSetting(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"tcg factor zero", func(c *Config) { c.TCGFactor = 0 }, "tcg-factor: 0 must be between 1 and 100"},
		{"max total zero", func(c *Config) { c.MaxTimeouts.Total = 0 }, "max-total: 0s must be at least 1s (it would refuse every job)"},
		{"accel", func(c *Config) { c.Accel = "hvf" }, `accel: "hvf" must be auto, kvm or tcg`},
		{"state dir", func(c *Config) { c.StateDir = "rel" }, `state-dir: "rel" must be an absolute path`},
		{"cache max zero", func(c *Config) { c.CacheMax = 0 }, "cache-max: 0 bytes: at least 1M (one image must fit)"},
		{"keyring missing", func(c *Config) { c.Keyring = "/nonexistent/keys.gpg" }, "keyring: open /nonexistent/keys.gpg: no such file or directory"},
		{"domain prefix", func(c *Config) { c.DomainPrefix = "" }, "domain-prefix: must not be empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.WorkerID = "cfg"
			c.set(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.WorkerID = "cfg"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
}

// ParseBytes reads the sizes the settings table's cache-max takes, and refuses
// the rest.
func TestConfigParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"20G": 20 << 30, "20GiB": 20 << 30, "512M": 512 << 20, "1048576": 1 << 20, "1T": 1 << 40} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "-5G", ""} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
	if got := FormatBytes(DefaultCacheMax); got != "20G" {
		t.Errorf("FormatBytes(DefaultCacheMax) = %q", got)
	}
}

// A job asking for more time than the operator allows is a bad job naming the
// field and the maximum, refused before anything is fetched.
func TestRunRefusesTimeoutsAboveMax(t *testing.T) {
	imgs := &fakeImages{}
	hv := &fake.Hypervisor{}
	cfg := DefaultConfig()
	cfg.WorkerID, cfg.StateDir, cfg.Accel = "unit", t.TempDir(), "tcg"
	cfg.MaxTimeouts.Total = jobs.Duration(time.Hour)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := NewRunner(cfg, imgs, hv, nil)
	defer r.Close()
	job := testJob("greedy")
	job.Timeouts.Total = jobs.Duration(8760 * time.Hour)
	res := r.Run(context.Background(), job, 1, nil)
	want := "invalid job: timeouts.total: 8760h0m0s exceeds this worker's maximum 1h0m0s"
	if res.Verdict != jobs.VerdictError || res.Retryable || res.Reason != want {
		t.Fatalf("got %s retryable=%v %q, want %q", res.Verdict, res.Retryable, res.Reason, want)
	}
	if imgs.fetches != 0 || len(hv.Machines()) != 0 {
		t.Fatal("a refused job fetched or booted")
	}
}
