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
		{[]string{"--os-cloud", "east=@RegionOne"}, nil, `os-cloud: "east=@RegionOne" is not [NAME=]ENTRY[@REGION]`},
		{[]string{"--os-cloud", "a=prod", "--os-region", "R1,R2"}, nil, "names one cloud but --os-region lists 2 regions"},
		{[]string{"--os-cloud", "prod@R1", "--os-cloud", "prod@R2"}, nil, `two clouds are named "prod"`},
		{[]string{"--os-cloud", "Prod Cloud"}, nil, `cloud name "prod cloud"`},
		{[]string{"--import-converts", "east=maybe"}, nil, `import-converts: "maybe" is not auto, yes or no`},
		{[]string{"--cloud", "east"}, nil, "cloud: needs --job"},
		{nil, map[string]string{"OS_INSECURE": "sometimes"}, "OS_INSECURE"},
		{nil, nil, "OS_AUTH_URL: not set"},
		{nil, map[string]string{"OS_AUTH_URL": "https://k:5000/v3", "OS_USERNAME": "u", "OS_PASSWORD": "p", "OS_PROJECT_NAME": "x",
			"OS_USER_DOMAIN_NAME": "Default"}, "OS_PROJECT_DOMAIN_NAME: OS_PROJECT_NAME \"x\" needs its domain"},
	} {
		var out, errb bytes.Buffer
		env := Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return tc.env[k] }}
		code := cmdPublish(context.Background(), tc.args, env)
		if code != exitError || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v %v: exit %d, stderr %q, want %q", tc.args, tc.env, code, errb.String(), tc.want)
		}
	}
}

func TestPublishCloudsExpand(t *testing.T) {
	for _, tc := range []struct {
		specs   []string
		regions string
		want    string // name=entry@region, space-separated
	}{
		{nil, "", "default=@"},
		{nil, "RegionOne,RegionTwo", "regionone=@RegionOne regiontwo=@RegionTwo"},
		{[]string{"prod"}, "", "prod=prod@"},
		{[]string{"prod"}, "RegionOne,RegionTwo", "prod-regionone=prod@RegionOne prod-regiontwo=prod@RegionTwo"},
		{[]string{"east=prod@RegionOne", "west=prod@RegionTwo", "lab"}, "", "east=prod@RegionOne west=prod@RegionTwo lab=lab@"},
	} {
		c := publishConfig{cloudSpecs: tc.specs, regions: tc.regions}
		creds, err := c.clouds()
		if err != nil {
			t.Errorf("%v %q: %v", tc.specs, tc.regions, err)
			continue
		}
		var got []string
		for _, cr := range creds {
			got = append(got, cr.Name+"="+cr.Cloud+"@"+cr.Region)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%v %q: %v, want %s", tc.specs, tc.regions, got, tc.want)
		}
	}
}
