package publish

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
)

// Openrc files as Keystone's install guide and Horizon write them (Horizon's asks
// for the password when sourced). @AUTH@, @PASSWORD@, @PROJECT_ID@ are filled in.
const (
	keystoneOpenrc = `export OS_USERNAME=admin
export OS_PASSWORD=@PASSWORD@
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_AUTH_URL=@AUTH@
export OS_IDENTITY_API_VERSION=3
export OS_IMAGE_API_VERSION=2
`
	horizonOpenrc = `#!/usr/bin/env bash
export OS_AUTH_URL=@AUTH@
export OS_PROJECT_ID=@PROJECT_ID@
export OS_PROJECT_NAME="admin"
export OS_USER_DOMAIN_NAME="Default"
if [ -z "$OS_USER_DOMAIN_NAME" ]; then unset OS_USER_DOMAIN_NAME; fi
export OS_PROJECT_DOMAIN_ID="default"
if [ -z "$OS_PROJECT_DOMAIN_ID" ]; then unset OS_PROJECT_DOMAIN_ID; fi
unset OS_TENANT_ID
unset OS_TENANT_NAME
export OS_USERNAME="admin"
echo "Please enter your OpenStack Password for project $OS_PROJECT_NAME as user $OS_USERNAME: "
read -sr OS_PASSWORD_INPUT
export OS_PASSWORD=$OS_PASSWORD_INPUT
export OS_REGION_NAME="RegionOne"
if [ -z "$OS_REGION_NAME" ]; then unset OS_REGION_NAME; fi
export OS_INTERFACE=public
export OS_IDENTITY_API_VERSION=3
`
)

// sourceOpenrc writes an openrc file, sources it in bash (with stdin for Horizon's
// password prompt) in an environment without OS_* variables, and returns the OS_*
// variables it left.
func sourceOpenrc(t *testing.T, text, stdin string, subst map[string]string) map[string]string {
	t.Helper()
	for k, v := range subst {
		text = strings.ReplaceAll(text, k, v)
	}
	path := filepath.Join(t.TempDir(), "openrc.sh")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", `. "$1" >/dev/null && env -0`, "bash", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("source %s: %v", path, err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OS_") {
			env[k] = v
		}
	}
	return env
}

func TestReadEnvOpenrcForms(t *testing.T) {
	auth := "https://keystone.example.test:5000/v3"
	ks := sourceOpenrc(t, keystoneOpenrc, "", map[string]string{"@AUTH@": auth, "@PASSWORD@": "'s3cret with space'"})
	hz := sourceOpenrc(t, horizonOpenrc, "pw-from-prompt\n", map[string]string{"@AUTH@": auth, "@PROJECT_ID@": "p-123"})
	if hz["OS_PASSWORD"] != "pw-from-prompt" || ks["OS_PROJECT_DOMAIN_NAME"] != "Default" {
		t.Fatalf("sourced: %v %v", ks, hz)
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	minimal := map[string]string{"OS_AUTH_URL": auth}
	cases := []struct {
		name  string
		env   map[string]string
		check func(EnvAuth) bool
	}{
		{"keystone v3 openrc: user and project domain by name", ks, func(e EnvAuth) bool {
			a := e.Auth
			return a.Username == "admin" && a.Password == "s3cret with space" && a.DomainName == "Default" && a.DomainID == "" &&
				a.Scope.ProjectName == "admin" && a.Scope.DomainName == "Default" && a.Scope.DomainID == ""
		}},
		{"horizon openrc: project id and name, user domain by name, project domain by id", hz, func(e EnvAuth) bool {
			a := e.Auth
			return a.Password == "pw-from-prompt" && a.DomainName == "Default" && a.Scope.ProjectID == "p-123" &&
				a.Scope.ProjectName == "" && a.Scope.DomainID == "" && e.Region == "RegionOne" && e.Interface == "public"
		}},
		{"project name without project id, domain given once (OS_DOMAIN_NAME)", with(ks, "OS_USER_DOMAIN_NAME", "", "OS_PROJECT_DOMAIN_NAME", "", "OS_DOMAIN_NAME", "corp"), func(e EnvAuth) bool {
			a := e.Auth
			return a.DomainName == "corp" && a.Scope.ProjectName == "admin" && a.Scope.DomainName == "corp"
		}},
		{"domain ids (OS_DOMAIN_ID)", with(ks, "OS_USER_DOMAIN_NAME", "", "OS_PROJECT_DOMAIN_NAME", "", "OS_DOMAIN_ID", "d1"), func(e EnvAuth) bool {
			return e.Auth.DomainID == "d1" && e.Auth.Scope.DomainID == "d1" && e.Auth.Scope.ProjectName == "admin"
		}},
		{"an id wins over a name for the same domain", with(ks, "OS_USER_DOMAIN_ID", "default"), func(e EnvAuth) bool {
			return e.Auth.DomainID == "default" && e.Auth.DomainName == ""
		}},
		{"OS_TENANT_NAME", with(ks, "OS_PROJECT_NAME", "", "OS_TENANT_NAME", "legacy"), func(e EnvAuth) bool {
			return e.Auth.Scope.ProjectName == "legacy"
		}},
		{"domain scope without a project", with(ks, "OS_PROJECT_NAME", "", "OS_DOMAIN_NAME", "corp"), func(e EnvAuth) bool {
			return e.Auth.Scope.DomainName == "corp" && e.Auth.Scope.ProjectName == "" && e.Auth.DomainName == "Default"
		}},
		{"user id needs no domain", with(minimal, "OS_USER_ID", "u1", "OS_PASSWORD", "x", "OS_PROJECT_ID", "p1"), func(e EnvAuth) bool {
			return e.Auth.UserID == "u1" && e.Auth.Username == "" && e.Auth.Scope.ProjectID == "p1"
		}},
		{"application credential by id", with(minimal, "OS_AUTH_TYPE", "v3applicationcredential", "OS_APPLICATION_CREDENTIAL_ID", "ac1", "OS_APPLICATION_CREDENTIAL_SECRET", "sec"), func(e EnvAuth) bool {
			return e.Auth.ApplicationCredentialID == "ac1" && e.Auth.ApplicationCredentialSecret == "sec" && e.Auth.Scope == nil
		}},
		{"application credential by name, type inferred", with(minimal, "OS_APPLICATION_CREDENTIAL_NAME", "ci", "OS_APPLICATION_CREDENTIAL_SECRET", "sec", "OS_USERNAME", "bot", "OS_USER_DOMAIN_ID", "default"), func(e EnvAuth) bool {
			return e.Auth.ApplicationCredentialName == "ci" && e.Auth.Username == "bot" && e.Auth.DomainID == "default"
		}},
		{"token", with(minimal, "OS_AUTH_TYPE", "token", "OS_TOKEN", "gAAAA", "OS_PROJECT_ID", "p1"), func(e EnvAuth) bool {
			return e.Auth.TokenID == "gAAAA" && e.Auth.Scope.ProjectID == "p1"
		}},
		{"CA, insecure, interface, region", with(ks, "OS_CACERT", "/etc/ssl/ca.pem", "OS_INSECURE", "True", "OS_ENDPOINT_TYPE", "internalURL", "OS_REGION_NAME", "RegionTwo"), func(e EnvAuth) bool {
			return e.CACert == "/etc/ssl/ca.pem" && e.Insecure && e.Interface == "internal" && e.Region == "RegionTwo"
		}},
	}
	for _, c := range cases {
		e, err := ReadEnv(func(k string) string { return c.env[k] })
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !c.check(e) {
			t.Errorf("%s: %+v scope %+v", c.name, e, e.Auth.Scope)
		}
	}

	bad := []struct {
		env   map[string]string
		field string
	}{
		{map[string]string{}, "OS_AUTH_URL"},
		{with(ks, "OS_IDENTITY_API_VERSION", "2.0"), "OS_IDENTITY_API_VERSION"},
		{with(ks, "OS_USER_DOMAIN_NAME", ""), "OS_USER_DOMAIN_NAME"},
		{with(ks, "OS_PROJECT_DOMAIN_NAME", ""), "OS_PROJECT_DOMAIN_NAME"},
		{with(ks, "OS_PASSWORD", ""), "OS_PASSWORD"},
		{with(ks, "OS_USERNAME", ""), "OS_USERNAME"},
		{with(ks, "OS_INSECURE", "maybe"), "OS_INSECURE"},
		{with(ks, "OS_INTERFACE", "private"), "OS_INTERFACE"},
		{with(ks, "OS_AUTH_TYPE", "v3oidcpassword"), "OS_AUTH_TYPE"},
		{with(minimal, "OS_AUTH_TYPE", "v3applicationcredential", "OS_APPLICATION_CREDENTIAL_ID", "ac1"), "OS_APPLICATION_CREDENTIAL_SECRET"},
		{with(minimal, "OS_APPLICATION_CREDENTIAL_NAME", "ci", "OS_APPLICATION_CREDENTIAL_SECRET", "s"), "OS_USERNAME"},
		{with(minimal, "OS_AUTH_TYPE", "v3token"), "OS_TOKEN"},
	}
	for _, b := range bad {
		_, err := ReadEnv(func(k string) string { return b.env[k] })
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != b.field || Retryable(err) {
			t.Errorf("%v: error %v, want a ConfigError naming %s", b.env, err, b.field)
		}
	}
}

func TestNoEndpointIsRecognised(t *testing.T) {
	// gophercloud returns a pointer (openstack/endpoint.go); a value is matched too.
	for _, err := range []error{&gophercloud.ErrEndpointNotFound{}, gophercloud.ErrEndpointNotFound{}} {
		if !isNoEndpoint(errors.Join(errors.New("compute"), err)) {
			t.Errorf("%T not recognised", err)
		}
	}
	if isNoEndpoint(errors.New("connection refused")) {
		t.Error("another error taken for a missing endpoint")
	}
}
