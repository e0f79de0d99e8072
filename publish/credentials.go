package publish

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
)

// EnvAuth is what the OS_* variables of an openrc file say: how to log in, and which
// endpoints to use.
type EnvAuth struct {
	Auth      gophercloud.AuthOptions
	Region    string // OS_REGION_NAME
	Interface string // OS_INTERFACE (public, internal, admin)
	CACert    string // OS_CACERT
	Cert, Key string // OS_CERT, OS_KEY: a client certificate
	Insecure  bool   // OS_INSECURE: no TLS verification (test clouds only)
}

// ReadEnv reads credentials from OS_* variables as the openstack CLI takes them:
// every form a Keystone v3 openrc or a Horizon openrc sets. Password (OS_USERNAME or
// OS_USER_ID, OS_PASSWORD), application credential (OS_APPLICATION_CREDENTIAL_ID or
// _NAME, _SECRET) or token (OS_TOKEN), chosen by OS_AUTH_TYPE or by which are set;
// user and project domain each by name or id (OS_USER_DOMAIN_*, OS_PROJECT_DOMAIN_*),
// with OS_DOMAIN_* and OS_DEFAULT_DOMAIN_* filling in whichever is missing; the
// project by id or name (OS_PROJECT_*, or the older OS_TENANT_*), an id winning over a
// name as both Horizon sets. OS_DOMAIN_* without a project scopes to that domain.
// Every error is a *ConfigError naming the variable.
func ReadEnv(getenv func(string) string) (EnvAuth, error) {
	env := osEnv(getenv)
	var e EnvAuth
	if err := env.endpoint(&e); err != nil {
		return EnvAuth{}, err
	}
	dom := env.domains()
	scope, err := env.scope(dom)
	if err != nil {
		return EnvAuth{}, err
	}
	if err := env.login(&e.Auth, dom, scope); err != nil {
		return EnvAuth{}, err
	}
	return e, nil
}

// osEnv reads OS_* variables.
type osEnv func(string) string

func (env osEnv) get(k string) string { return strings.TrimSpace(env(k)) }

// first is the first of keys that is set.
func (env osEnv) first(keys ...string) string {
	for _, k := range keys {
		if v := env.get(k); v != "" {
			return v
		}
	}
	return ""
}

func bad(field, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

// endpoint reads where Keystone is and how to reach the endpoints it lists.
func (env osEnv) endpoint(e *EnvAuth) error {
	e.Auth.IdentityEndpoint = env.get("OS_AUTH_URL")
	if e.Auth.IdentityEndpoint == "" {
		return bad("OS_AUTH_URL", "not set: no clouds.yaml entry named (OS_CLOUD) and no openrc variables")
	}
	switch v := env.get("OS_IDENTITY_API_VERSION"); v {
	case "", "3", "3.0", "v3":
	default:
		return bad("OS_IDENTITY_API_VERSION", "%q: only Keystone v3 is supported", v)
	}
	e.Region = env.get("OS_REGION_NAME")
	e.Interface = strings.TrimSuffix(env.first("OS_INTERFACE", "OS_ENDPOINT_TYPE"), "URL")
	switch e.Interface {
	case "", "public", "internal", "admin":
	default:
		return bad("OS_INTERFACE", "%q: must be public, internal or admin", e.Interface)
	}
	e.CACert, e.Cert, e.Key = env.get("OS_CACERT"), env.get("OS_CERT"), env.get("OS_KEY")
	if v := env.get("OS_INSECURE"); v != "" {
		b, err := parseBool(v)
		if err != nil {
			return bad("OS_INSECURE", "%w", err)
		}
		e.Insecure = b
	}
	return nil
}

// envDomains are the user's and the project's domains, each by id or by name.
type envDomains struct{ userID, userName, projID, projName string }

// domains reads the user's and the project's domain; OS_DOMAIN_* and
// OS_DEFAULT_DOMAIN_* fill in whichever is missing (one domain given once).
func (env osEnv) domains() envDomains {
	defID, defName := env.first("OS_DOMAIN_ID", "OS_DEFAULT_DOMAIN_ID", "OS_DEFAULT_DOMAIN"), env.first("OS_DOMAIN_NAME", "OS_DEFAULT_DOMAIN_NAME")
	domain := func(id, name string) (string, string) {
		if id = env.get(id); id != "" {
			return id, ""
		}
		if name = env.get(name); name != "" {
			return "", name
		}
		if defID != "" {
			return defID, ""
		}
		return "", defName
	}
	var d envDomains
	d.userID, d.userName = domain("OS_USER_DOMAIN_ID", "OS_USER_DOMAIN_NAME")
	d.projID, d.projName = domain("OS_PROJECT_DOMAIN_ID", "OS_PROJECT_DOMAIN_NAME")
	return d
}

// scope reads what the token is for: a project by id or name (an id winning, as
// Horizon sets both), the system, or a domain; nil when nothing says.
func (env osEnv) scope(d envDomains) (*gophercloud.AuthScope, error) {
	projectID := env.first("OS_PROJECT_ID", "OS_TENANT_ID")
	projectName := env.first("OS_PROJECT_NAME", "OS_TENANT_NAME")
	switch {
	case projectID != "":
		return &gophercloud.AuthScope{ProjectID: projectID}, nil
	case projectName != "":
		if d.projID == "" && d.projName == "" {
			return nil, bad("OS_PROJECT_DOMAIN_NAME", "OS_PROJECT_NAME %q needs its domain (OS_PROJECT_DOMAIN_NAME or _ID, or OS_DOMAIN_NAME or _ID)", projectName)
		}
		return &gophercloud.AuthScope{ProjectName: projectName, DomainID: d.projID, DomainName: d.projName}, nil
	case strings.EqualFold(env.get("OS_SYSTEM_SCOPE"), "all"):
		return &gophercloud.AuthScope{System: true}, nil
	case env.get("OS_DOMAIN_ID") != "":
		return &gophercloud.AuthScope{DomainID: env.get("OS_DOMAIN_ID")}, nil
	case env.get("OS_DOMAIN_NAME") != "":
		return &gophercloud.AuthScope{DomainName: env.get("OS_DOMAIN_NAME")}, nil
	}
	return nil, nil
}

// authKind is OS_AUTH_TYPE, or what the variables set imply.
func (env osEnv) authKind() string {
	if kind := strings.ToLower(env.get("OS_AUTH_TYPE")); kind != "" {
		return kind
	}
	switch {
	case env.first("OS_APPLICATION_CREDENTIAL_ID", "OS_APPLICATION_CREDENTIAL_NAME") != "":
		return "v3applicationcredential"
	case env.get("OS_TOKEN") != "" && env.get("OS_PASSWORD") == "":
		return "v3token"
	}
	return "password"
}

// login reads how to log in: password, application credential or token.
func (env osEnv) login(a *gophercloud.AuthOptions, d envDomains, scope *gophercloud.AuthScope) error {
	switch kind := env.authKind(); kind {
	case "password", "v3password":
		a.Scope = scope
		return env.passwordLogin(a, d)
	case "v3applicationcredential", "applicationcredential":
		// An application credential carries its own project: no scope.
		return env.credentialLogin(a, d)
	case "token", "v3token":
		a.Scope = scope
		if a.TokenID = env.get("OS_TOKEN"); a.TokenID == "" {
			return bad("OS_TOKEN", "not set: token login needs it")
		}
		return nil
	default:
		return bad("OS_AUTH_TYPE", "%q: supported are password (v3password), v3applicationcredential and token (v3token)", kind)
	}
}

func (env osEnv) passwordLogin(a *gophercloud.AuthOptions, d envDomains) error {
	user, userID := env.get("OS_USERNAME"), env.get("OS_USER_ID")
	if user == "" && userID == "" {
		return bad("OS_USERNAME", "not set (nor OS_USER_ID): password login needs a user")
	}
	a.Password = env("OS_PASSWORD") // a password's spaces are its own
	if a.Password == "" {
		return bad("OS_PASSWORD", "not set or empty (a Horizon openrc asks for it when sourced)")
	}
	if userID != "" {
		a.UserID = userID
		return nil
	}
	if d.userID == "" && d.userName == "" {
		return bad("OS_USER_DOMAIN_NAME", "OS_USERNAME %q needs its domain (OS_USER_DOMAIN_NAME or _ID, or OS_DOMAIN_NAME or _ID)", user)
	}
	a.Username, a.DomainID, a.DomainName = user, d.userID, d.userName
	return nil
}

func (env osEnv) credentialLogin(a *gophercloud.AuthOptions, d envDomains) error {
	a.ApplicationCredentialID = env.get("OS_APPLICATION_CREDENTIAL_ID")
	a.ApplicationCredentialSecret = env("OS_APPLICATION_CREDENTIAL_SECRET")
	if a.ApplicationCredentialSecret == "" {
		return bad("OS_APPLICATION_CREDENTIAL_SECRET", "not set: an application credential needs its secret")
	}
	if a.ApplicationCredentialID != "" {
		return nil
	}
	if a.ApplicationCredentialName = env.get("OS_APPLICATION_CREDENTIAL_NAME"); a.ApplicationCredentialName == "" {
		return bad("OS_APPLICATION_CREDENTIAL_ID", "not set (nor OS_APPLICATION_CREDENTIAL_NAME)")
	}
	// By name, the credential belongs to a user named with its domain.
	user, userID := env.get("OS_USERNAME"), env.get("OS_USER_ID")
	switch {
	case userID != "":
		a.UserID = userID
	case user != "" && (d.userID != "" || d.userName != ""):
		a.Username, a.DomainID, a.DomainName = user, d.userID, d.userName
	default:
		return bad("OS_USERNAME", "an application credential named by OS_APPLICATION_CREDENTIAL_NAME needs its user (OS_USER_ID, or OS_USERNAME with OS_USER_DOMAIN_NAME or _ID)")
	}
	return nil
}

// parseBool reads a yes/no setting the way the OpenStack clients do.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, errors.New(v + ": not a yes/no value (true, false, 1, 0, yes, no)")
}
