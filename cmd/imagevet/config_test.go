package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// cli runs one imagevet command in-process with the given environment and stdin,
// returning its exit code and standard error.
func cli(t *testing.T, vars map[string]string, stdin string, args ...string) (int, string) {
	t.Helper()
	code, _, stderr := cliIO(t, vars, stdin, args...)
	return code, stderr
}

// cliIO is cli also returning standard output. Without IMAGEVET_CONFIG in vars
// the command reads no configuration file (not this host's).
func cliIO(t *testing.T, vars map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader(stdin), Getenv: func(k string) string {
		if k == "IMAGEVET_CONFIG" && vars[k] == "" {
			return os.DevNull
		}
		return vars[k]
	}}
	code := dispatch(context.Background(), args, env)
	return code, out.String(), errOut.String()
}

// Every flag or variable value that is invalid, or zero where zero would silently
// mean the default, stops the command with exit 2 and a message naming the flag or
// variable and the value. The worker never gets as far as connecting anywhere.
func TestConfigurationSaysWhatItMeans(t *testing.T) {
	for _, c := range []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"log level flag", nil, []string{"worker", "--log-level", "loud"}, `log-level: "loud": want debug, info, warn or error`},
		{"log level env", map[string]string{"IMAGEVET_LOG_LEVEL": "verbose"}, []string{"worker"}, `log-level: "verbose": want debug, info, warn or error`},
		{"run log level", nil, []string{"run", "--log-level", "loud", "-"}, `log-level: "loud"`},
		{"grace zero", nil, []string{"worker", "--grace", "0"}, "--grace (IMAGEVET_GRACE): 0 is not accepted; the default is 2m0s"},
		{"memory reserve zero env", map[string]string{"IMAGEVET_MEMORY_RESERVE_MIB": "0"}, []string{"worker"}, "--memory-reserve (IMAGEVET_MEMORY_RESERVE_MIB): 0 is not accepted; the default is 1024"},
		{"nats port zero", nil, []string{"worker", "--nats-port", "0"}, "--nats-port (IMAGEVET_NATS_PORT): 0 is not accepted; the default is 4222"},
		{"concurrency not a number", map[string]string{"IMAGEVET_CONCURRENCY": "many"}, []string{"worker"}, `IMAGEVET_CONCURRENCY="many": not an integer`},
		{"tcg factor env", map[string]string{"IMAGEVET_TCG_FACTOR": "abc"}, []string{"worker"}, `IMAGEVET_TCG_FACTOR="abc": not a number`},
		{"max total zero", nil, []string{"worker", "--max-total", "0s"}, "max-total: 0s must be at least 1s"},
		{"max boot env", map[string]string{"IMAGEVET_MAX_BOOT": "1 hour"}, []string{"run", "-"}, `IMAGEVET_MAX_BOOT="1 hour": not a duration like 90s`},
		{"submit wait timeout zero", nil, []string{"submit", "--wait", "--timeout", "0", "job.json"}, "--timeout (IMAGEVET_SUBMIT_TIMEOUT): 0 is not accepted; the default is 1h0m0s"},
		{"publish os-timeout zero", nil, []string{"publish", "--os-timeout", "0"}, "--os-timeout (IMAGEVET_OS_TIMEOUT): 0 is not accepted; the default is 2m0s"},
		{"watch attempts zero", nil, []string{"watch", "--attempts", "0"}, "--attempts (IMAGEVET_WATCH_ATTEMPTS): 0 is not accepted; the default is 3"},
		{"run boot-timeout zero", nil, []string{"run", "--boot-timeout", "0", "-"}, "--boot-timeout: must be positive; leave it out to keep the default"},
		{"grace flag not a duration", nil, []string{"worker", "--grace", "soon"}, `--grace "soon": not a duration like 90s`},
		{"tcg factor flag", nil, []string{"worker", "--tcg-factor", "abc"}, `--tcg-factor "abc": not a number`},
		{"cache max env", map[string]string{"IMAGEVET_CACHE_MAX": "lots"}, []string{"worker"}, `IMAGEVET_CACHE_MAX="lots": not a size like 20G or 512M`},
		{"cache max negative", nil, []string{"run", "--cache-max", "-5G", "-"}, `--cache-max "-5G": not a size like 20G or 512M`},
		{"log json env", map[string]string{"IMAGEVET_LOG_JSON": "sure"}, []string{"serve"}, `IMAGEVET_LOG_JSON="sure": not true or false`},
		{"watch request-timeout zero env", map[string]string{"IMAGEVET_WATCH_REQUEST_TIMEOUT": "0s"}, []string{"watch"}, "--request-timeout (IMAGEVET_WATCH_REQUEST_TIMEOUT): 0 is not accepted; the default is 1m0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stderr := cli(t, c.vars, `{"version":1}`, c.args...)
			if code != exitError || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 containing %q", code, stderr, c.want)
			}
		})
	}
}

// `imagevet run -` reads the job from standard input, like submit -.
func TestRunReadsStdin(t *testing.T) {
	code, stderr := cli(t, nil, `{"version":1,"id":"from-stdin","image":{"source":"x.qcow2","format":"qcow2"},"guest":{"user":"debian"},"bogus":1}`, "run", "-")
	if code != exitError || !strings.Contains(stderr, `imagevet run: -: invalid job: bogus: unknown field`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// The README says every worker setting has an IMAGEVET_* fallback: each flag of
// `imagevet worker` names its variable in its help.
func TestEveryWorkerFlagHasAnEnvironmentFallback(t *testing.T) {
	_, help := cli(t, nil, "", "worker", "-h")
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	flags := flagLine.FindAllStringSubmatchIndex(help, -1)
	if len(flags) < 20 {
		t.Fatalf("only %d flags in the help:\n%s", len(flags), help)
	}
	for i, m := range flags {
		end := len(help)
		if i+1 < len(flags) {
			end = flags[i+1][0]
		}
		if entry := help[m[0]:end]; !strings.Contains(entry, "IMAGEVET_") {
			t.Errorf("flag -%s has no IMAGEVET_* fallback in its help: %q", help[m[2]:m[3]], entry)
		}
	}
}

// watch --interval 0 is one error: the jitter, bounded by the interval, is not
// judged against a zero that was refused.
func TestWatchIntervalZeroIsOneError(t *testing.T) {
	code, stderr := cli(t, nil, "", "watch", "--interval", "0")
	want := "imagevet watch: --interval (IMAGEVET_WATCH_INTERVAL): 0 is not accepted; the default is 24h0m0s\n"
	if code != exitError || stderr != want {
		t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}
}
