package guest

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// These tests script the guest with fakeRunner: they test the judgement, not Ignition
// (the flatcar-like fixture's integration tests boot the real one).

func ignitionGuest(result, cloudInit, users, paths string) *fakeRunner {
	return &fakeRunner{steps: []step{{match: "@@result", out: CommandResult{Stdout: "@@result\n" + result +
		"\n@@cloud-init\n" + cloudInit + "\n@@users\n" + users + "\n@@paths\n" + paths +
		"\n@@journal\nignition[612]: warning at $.storage: unused key\n@@end\n"}}}}
}

func TestCheckIgnition(t *testing.T) {
	want := IgnitionWant{Users: []string{"core"}, Paths: []string{"/etc/hostname", "/etc/motd"}}
	const done = `{"provisioningDate":"2026-12-01T01:02:03Z","provisioningBootID":"x","userConfigProvided":true}`
	for name, tc := range map[string]struct {
		guest  *fakeRunner
		want   IgnitionWant
		status Status
		reason string
	}{
		"pass":             {ignitionGuest(done, "", "core", "/etc/hostname\n/etc/motd"), want, StatusPass, "Ignition completed (/etc/.ignition-result.json from 2026-12-01T01:02:03Z)"},
		"console only":     {ignitionGuest("", "", "core", "/etc/hostname\n/etc/motd"), IgnitionWant{Users: want.Users, Paths: want.Paths, ConsoleComplete: true}, StatusPass, "\"Ignition Complete\" on the console"},
		"cloud-init image": {ignitionGuest("", "present", "core", "/etc/hostname"), want, StatusFail, "provisions itself with cloud-init, not Ignition"},
		"never ran":        {ignitionGuest("", "", "", ""), want, StatusFail, "Ignition did not run on this boot"},
		"no user config":   {ignitionGuest(`{"provisioningDate":"x","userConfigProvided":false}`, "", "core", ""), want, StatusFail, "without our config"},
		"missing user":     {ignitionGuest(done, "", "", "/etc/hostname\n/etc/motd"), want, StatusFail, "user(s) core"},
		"missing file":     {ignitionGuest(done, "", "core", "/etc/hostname"), want, StatusFail, "/etc/motd of its config is missing"},
	} {
		t.Run(name, func(t *testing.T) {
			res := CheckIgnition(context.Background(), tc.guest, tc.want)
			if res.Status != tc.status || !strings.Contains(res.Reason, tc.reason) {
				t.Fatalf("got %s %q, want %s …%s", res.Status, res.Reason, tc.status, tc.reason)
			}
			if !strings.Contains(res.Detail, "unused key") {
				t.Errorf("detail lacks Ignition's journal: %q", res.Detail)
			}
		})
	}
	// Users and paths reach the guest quoted.
	g := ignitionGuest(done, "", "", "")
	CheckIgnition(context.Background(), g, IgnitionWant{Users: []string{"a'b"}, Paths: []string{"/x y"}})
	if len(g.calls) != 1 || !strings.Contains(g.calls[0], "/x y") {
		t.Fatalf("calls = %q", g.calls)
	}
	broken := &fakeRunner{steps: []step{{match: "@@result", err: errors.New("connection lost")}}}
	if res := CheckIgnition(context.Background(), broken, want); res.Status != StatusError || res.Err == nil {
		t.Errorf("a broken connection is an error, not a verdict: %+v", res)
	}
}

// Ignition's journal on a good OpenStack first boot: fetch-offline's "resource requires
// networking" and a GET tried before the network was up are routine, not failures;
// a real failure and a config warning stay in the detail.
func TestCheckIgnitionJournalKeepsRealFailures(t *testing.T) {
	const done = `{"provisioningDate":"2026-12-01T01:02:03Z","userConfigProvided":true}`
	journal := strings.Join([]string{
		`Dec 07 12:00:01 localhost ignition[412]: failed to fetch config: resource requires networking`,
		`Dec 07 12:00:05 localhost ignition[470]: GET error: Get "http://169.254.169.254/openstack/latest/user_data": dial tcp 169.254.169.254:80: connect: network is unreachable`,
		`Dec 07 12:00:07 localhost ignition[470]: GET result: OK`,
		`Dec 07 12:00:08 localhost ignition[470]: warning at $.storage: unused key`,
		`Dec 07 12:00:09 localhost ignition[471]: failed to fetch config from config drive (config-2): context canceled`,
		`Dec 07 12:00:10 localhost ignition[480]: GET error: Get "http://example/extra.ign": dial tcp: lookup example: no such host`,
	}, "\n")
	g := &fakeRunner{steps: []step{{match: "@@result", out: CommandResult{Stdout: "@@result\n" + done +
		"\n@@cloud-init\n\n@@users\ncore\n@@paths\n@@journal\n" + journal + "\n@@end\n"}}}}
	res := CheckIgnition(context.Background(), g, IgnitionWant{Users: []string{"core"}})
	if res.Status != StatusPass {
		t.Fatalf("got %s %q", res.Status, res.Reason)
	}
	for _, routine := range []string{"resource requires networking", "network is unreachable", "GET result"} {
		if strings.Contains(res.Detail, routine) {
			t.Errorf("detail lists a routine line (%q) among Ignition's errors:\n%s", routine, res.Detail)
		}
	}
	for _, real := range []string{"unused key", "config drive (config-2)", "no such host"} {
		if !strings.Contains(res.Detail, real) {
			t.Errorf("detail lacks %q:\n%s", real, res.Detail)
		}
	}
}
