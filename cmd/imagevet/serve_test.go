package main

import (
	"strings"
	"testing"
)

// serve refuses settings that would expose the page unguarded or cannot work,
// naming the setting, before it connects to anything.
func TestServeRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "0.0.0.0:8080"}, `listen "0.0.0.0:8080": not a loopback address; give --token-file (IMAGEVET_WEB_TOKEN_FILE)`},
		{[]string{"--listen", "8080"}, `listen "8080": want host:port`},
		{[]string{"--tls-cert", "cert.pem"}, "tls: certificate and key go together"},
		{[]string{"--nats", ""}, "nats: no server URL"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		code, _, errOut := runCmd(t, cmdServe, tc.args...)
		if code != exitError || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, code, errOut, tc.want)
		}
	}
}
