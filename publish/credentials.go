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
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := get(k); v != "" {
				return v
			}
		}
		return ""
	}
	var e EnvAuth
	bad := func(field, format string, args ...any) (EnvAuth, error) {
		return EnvAuth{}, &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	e.Auth.IdentityEndpoint = get("OS_AUTH_URL")
	if e.Auth.IdentityEndpoint == "" {
		return bad("OS_AUTH_URL", "not set: no clouds.yaml entry named (OS_CLOUD) and no openrc variables")
	}
	switch v := get("OS_IDENTITY_API_VERSION"); v {
	case "", "3", "3.0", "v3":
	default:
		return bad("OS_IDENTITY_API_VERSION", "%q: only Keystone v3 is supported", v)
	}
	e.Region = get("OS_REGION_NAME")
	e.Interface = strings.TrimSuffix(first("OS_INTERFACE", "OS_ENDPOINT_TYPE"), "URL")
	switch e.Interface {
	case "", "public", "internal", "admin":
	default:
		return bad("OS_INTERFACE", "%q: must be public, internal or admin", e.Interface)
	}
	e.CACert, e.Cert, e.Key = get("OS_CACERT"), get("OS_CERT"), get("OS_KEY")
	if v := get("OS_INSECURE"); v != "" {
		b, err := parseBool(v)
		if err != nil {
			return bad("OS_INSECURE", "%w", err)
		}
		e.Insecure = b
	}

	// Domains: the user's and the project's, each by id or by name; OS_DOMAIN_* and
	// OS_DEFAULT_DOMAIN_* fill in whichever is missing (one domain given once).
	defID, defName := first("OS_DOMAIN_ID", "OS_DEFAULT_DOMAIN_ID", "OS_DEFAULT_DOMAIN"), first("OS_DOMAIN_NAME", "OS_DEFAULT_DOMAIN_NAME")
	domain := func(id, name string) (string, string) {
		if id = get(id); id != "" {
			return id, ""
		}
		if name = get(name); name != "" {
			return "", name
		}
		if defID != "" {
			return defID, ""
		}
		return "", defName
	}
	userDomID, userDomName := domain("OS_USER_DOMAIN_ID", "OS_USER_DOMAIN_NAME")
	projDomID, projDomName := domain("OS_PROJECT_DOMAIN_ID", "OS_PROJECT_DOMAIN_NAME")
	projectID := first("OS_PROJECT_ID", "OS_TENANT_ID")
	projectName := first("OS_PROJECT_NAME", "OS_TENANT_NAME")
	var scope *gophercloud.AuthScope
	switch {
	case projectID != "":
		scope = &gophercloud.AuthScope{ProjectID: projectID}
	case projectName != "":
		if projDomID == "" && projDomName == "" {
			return bad("OS_PROJECT_DOMAIN_NAME", "OS_PROJECT_NAME %q needs its domain (OS_PROJECT_DOMAIN_NAME or _ID, or OS_DOMAIN_NAME or _ID)", projectName)
		}
		scope = &gophercloud.AuthScope{ProjectName: projectName, DomainID: projDomID, DomainName: projDomName}
	case strings.EqualFold(get("OS_SYSTEM_SCOPE"), "all"):
		scope = &gophercloud.AuthScope{System: true}
	case get("OS_DOMAIN_ID") != "":
		scope = &gophercloud.AuthScope{DomainID: get("OS_DOMAIN_ID")}
	case get("OS_DOMAIN_NAME") != "":
		scope = &gophercloud.AuthScope{DomainName: get("OS_DOMAIN_NAME")}
	}

	kind := strings.ToLower(get("OS_AUTH_TYPE"))
	if kind == "" {
		switch {
		case first("OS_APPLICATION_CREDENTIAL_ID", "OS_APPLICATION_CREDENTIAL_NAME") != "":
			kind = "v3applicationcredential"
		case get("OS_TOKEN") != "" && get("OS_PASSWORD") == "":
			kind = "v3token"
		default:
			kind = "password"
		}
	}
	user, userID := get("OS_USERNAME"), get("OS_USER_ID")
	switch kind {
	case "password", "v3password":
		if user == "" && userID == "" {
			return bad("OS_USERNAME", "not set (nor OS_USER_ID): password login needs a user")
		}
		e.Auth.Password = getenv("OS_PASSWORD") // a password's spaces are its own
		if e.Auth.Password == "" {
			return bad("OS_PASSWORD", "not set or empty (a Horizon openrc asks for it when sourced)")
		}
		if userID != "" {
			e.Auth.UserID = userID
		} else {
			if userDomID == "" && userDomName == "" {
				return bad("OS_USER_DOMAIN_NAME", "OS_USERNAME %q needs its domain (OS_USER_DOMAIN_NAME or _ID, or OS_DOMAIN_NAME or _ID)", user)
			}
			e.Auth.Username, e.Auth.DomainID, e.Auth.DomainName = user, userDomID, userDomName
		}
		e.Auth.Scope = scope
	case "v3applicationcredential", "applicationcredential":
		e.Auth.ApplicationCredentialID = get("OS_APPLICATION_CREDENTIAL_ID")
		e.Auth.ApplicationCredentialSecret = getenv("OS_APPLICATION_CREDENTIAL_SECRET")
		if e.Auth.ApplicationCredentialSecret == "" {
			return bad("OS_APPLICATION_CREDENTIAL_SECRET", "not set: an application credential needs its secret")
		}
		if e.Auth.ApplicationCredentialID == "" {
			e.Auth.ApplicationCredentialName = get("OS_APPLICATION_CREDENTIAL_NAME")
			if e.Auth.ApplicationCredentialName == "" {
				return bad("OS_APPLICATION_CREDENTIAL_ID", "not set (nor OS_APPLICATION_CREDENTIAL_NAME)")
			}
			// By name, the credential belongs to a user named with its domain.
			switch {
			case userID != "":
				e.Auth.UserID = userID
			case user != "" && (userDomID != "" || userDomName != ""):
				e.Auth.Username, e.Auth.DomainID, e.Auth.DomainName = user, userDomID, userDomName
			default:
				return bad("OS_USERNAME", "an application credential named by OS_APPLICATION_CREDENTIAL_NAME needs its user (OS_USER_ID, or OS_USERNAME with OS_USER_DOMAIN_NAME or _ID)")
			}
		}
		// An application credential carries its own project: no scope.
	case "token", "v3token":
		e.Auth.TokenID = get("OS_TOKEN")
		if e.Auth.TokenID == "" {
			return bad("OS_TOKEN", "not set: token login needs it")
		}
		e.Auth.Scope = scope
	default:
		return bad("OS_AUTH_TYPE", "%q: supported are password (v3password), v3applicationcredential and token (v3token)", kind)
	}
	return e, nil
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
