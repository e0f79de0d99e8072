package worker

import (
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// parseConfig registers the worker flags with env as the environment, parses
// args and validates.
func parseConfig(t *testing.T, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.WorkerID = "cfg"
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs, func(k string) string { return env[k] })
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// Every value that does not parse or cannot work is an error naming the flag or
// variable and the value; nothing is silently replaced by a default.
func TestConfigStrict(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"tcg factor env not a number", map[string]string{"IMAGEVET_TCG_FACTOR": "abc"}, nil, `IMAGEVET_TCG_FACTOR="abc": not a number`},
		{"tcg factor flag not a number", nil, []string{"--tcg-factor", "abc"}, `invalid value "abc" for flag -tcg-factor: not a number: "abc"`},
		{"tcg factor zero", nil, []string{"--tcg-factor", "0"}, "tcg-factor: 0 must be between 1 and 100"},
		{"max total zero", nil, []string{"--max-total", "0"}, "max-total: 0s must be at least 1s (it would refuse every job)"},
		{"max boot env", map[string]string{"IMAGEVET_MAX_BOOT": "forever"}, nil, `IMAGEVET_MAX_BOOT="forever": not a duration like 90m`},
		{"max command flag", nil, []string{"--max-command", "1y"}, `invalid value "1y" for flag -max-command: not a duration like 90m: "1y"`},
		{"accel", map[string]string{"IMAGEVET_ACCEL": "hvf"}, nil, `accel: "hvf" must be auto, kvm or tcg`},
		{"state dir", nil, []string{"--state-dir", "rel"}, `state-dir: "rel" must be an absolute path`},
		{"cache max env", map[string]string{"IMAGEVET_CACHE_MAX": "lots"}, nil, `IMAGEVET_CACHE_MAX="lots": not a size like 20G or 512M: "lots"`},
		{"cache max zero", nil, []string{"--cache-max", "0"}, "cache-max: 0 bytes: at least 1M (one image must fit)"},
		{"cache max negative", nil, []string{"--cache-max", "-5G"}, `invalid value "-5G" for flag -cache-max: not a size like 20G or 512M: "-5G"`},
		{"keyring missing", nil, []string{"--keyring", "/nonexistent/keys.gpg"}, "keyring: open /nonexistent/keys.gpg: no such file or directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseConfig(t, c.env, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
	cfg, err := parseConfig(t, map[string]string{"IMAGEVET_MAX_TOTAL": "2h", "IMAGEVET_TCG_FACTOR": "4", "IMAGEVET_CACHE_MAX": "20GiB"}, "--max-boot", "5m")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxTimeouts.Total.D() != 2*time.Hour || cfg.MaxTimeouts.Boot.D() != 5*time.Minute || cfg.TCGFactor != 4 ||
		cfg.MaxTimeouts.CloudInit.D() != DefaultMaxCloudInit || cfg.CacheMax != 20<<30 {
		t.Errorf("config = %+v", cfg)
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

// --image-root replaces IMAGEVET_IMAGE_ROOTS instead of adding to it: the list
// bounds what jobs may read, so a flag must be able to narrow it.
func TestImageRootFlagsReplaceTheVariable(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"/srv/a", "/srv/b"}},
		{[]string{"--image-root", "/srv/c"}, []string{"/srv/c"}},
		{[]string{"--image-root", "/srv/c", "--image-root", "/srv/d"}, []string{"/srv/c", "/srv/d"}},
	} {
		c := DefaultConfig()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c.RegisterFlags(fs, func(k string) string {
			if k == "IMAGEVET_IMAGE_ROOTS" {
				return "/srv/a:/srv/b"
			}
			return ""
		})
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if strings.Join(c.ImageRoots, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%v: image roots %q, want %q", tc.args, c.ImageRoots, tc.want)
		}
	}
}
