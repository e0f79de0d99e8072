package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestPublishRefusesBadFlagsNamingThem(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--dry-run"}, nil, "dry-run: needs --job"},
		{[]string{"--job", "a b"}, nil, `job: "a b" is not a job id`},
		{[]string{"--state-dir", "rel"}, nil, "state-dir"},
		{nil, map[string]string{"IMAGEVET_OS_TIMEOUT": "soon"}, "IMAGEVET_OS_TIMEOUT"},
		{[]string{"--os-client-config-file", "/x/clouds.yaml"}, nil, "os-client-config-file: needs --os-cloud"},
		{[]string{"extra"}, nil, "unexpected arguments"},
		{[]string{"--rotate-every", "0s"}, nil, "rotate-every: 0s must be positive"},
		{[]string{"--upload-method", "ftp"}, nil, `upload-method: "ftp" is not auto, import or upload`},
		{nil, map[string]string{"IMAGEVET_PUBLISH_ACK_WAIT": "-1m"}, "ack-wait: -1m0s must be positive"},
	} {
		var out, errb bytes.Buffer
		env := Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return tc.env[k] }}
		code := cmdPublish(context.Background(), tc.args, env)
		if code != exitError || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v %v: exit %d, stderr %q, want %q", tc.args, tc.env, code, errb.String(), tc.want)
		}
	}
}
