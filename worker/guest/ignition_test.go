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
