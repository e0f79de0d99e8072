package publish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// Credentials say how to log in to one cloud (one region of one cloud), the way every
// OpenStack tool takes them: a clouds.yaml entry (Cloud, from OS_CLOUD: password,
// application credential or token), or else the OS_* variables of an openrc file
// (ReadEnv). CACert verifies the cloud's TLS certificate; Insecure skips verification
// (test clouds only).
type Credentials struct {
	// Name is the publisher's name for this cloud: what a job's publish.clouds
	// selects and the records are kept under. Empty: the clouds.yaml entry, else
	// the region, else "default" (see CloudName).
	Name       string
	Cloud      string // clouds.yaml entry name
	CloudsFile string // a clouds.yaml to read instead of the usual places
	Region     string // overrides the entry's or OS_REGION_NAME
	Interface  string // public, internal or admin; overrides the entry's or OS_INTERFACE
	CACert     string // PEM file
	Insecure   bool
	// RequestTimeout bounds every API call but the image data transfer (default 2 min).
	RequestTimeout time.Duration
	// Getenv reads the OS_* variables when Cloud is empty; nil reads the process's.
	Getenv func(string) string
}

// CloudName is the name a cloud gets when the operator gave none: the clouds.yaml
// entry, else the region, lower case, else "default".
func CloudName(cr Credentials) string {
	switch {
	case cr.Name != "":
		return cr.Name
	case cr.Cloud != "":
		return strings.ToLower(cr.Cloud)
	case cr.Region != "":
		return strings.ToLower(cr.Region)
	}
	return "default"
}

// Cloud holds the service clients the publisher uses. Compute and Volume are nil when
// the cloud's catalog has no such service: nothing is then deleted, since whether an
// image is in use cannot be told.
type Cloud struct {
	Name    string // the publisher's name for the cloud (Credentials.Name)
	Region  string // the region its endpoints are in, "" when the catalog has none
	Image   *gophercloud.ServiceClient
	Compute *gophercloud.ServiceClient
	Volume  *gophercloud.ServiceClient
	// Timeout bounds each API call but the image data transfer, which the
	// publisher bounds by the image's size.
	Timeout time.Duration
}

// String names the cloud and its region for messages.
func (c *Cloud) String() string {
	if c.Region == "" {
		return "cloud " + c.Name
	}
	return "cloud " + c.Name + " (region " + c.Region + ")"
}

// Login authenticates and finds the Image, Compute and Block Storage endpoints. Every
// error names the cloud and its region.
func Login(ctx context.Context, cr Credentials) (*Cloud, error) {
	c := &Cloud{Name: CloudName(cr), Region: cr.Region}
	auth, eo, tlsc, err := cr.resolve()
	if eo.Region != "" {
		c.Region = eo.Region
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	auth.AllowReauth = true
	timeout := cr.RequestTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	c.Timeout = timeout
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsc
	tr.ResponseHeaderTimeout = timeout
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pc, err := config.NewProviderClient(lctx, auth, config.WithHTTPClient(http.Client{Transport: tr}))
	if err != nil {
		return nil, fmt.Errorf("%s: log in at %s: %w", c, auth.IdentityEndpoint, err)
	}
	if c.Image, err = openstack.NewImageV2(pc, eo); err != nil {
		return nil, fmt.Errorf("%s: image service: %w", c, err)
	}
	if sc, err := openstack.NewComputeV2(pc, eo); err == nil {
		c.Compute = sc
	} else if !isNoEndpoint(err) {
		return nil, fmt.Errorf("%s: compute service: %w", c, err)
	}
	if sc, err := openstack.NewBlockStorageV3(pc, eo); err == nil {
		c.Volume = sc
	} else if !isNoEndpoint(err) {
		return nil, fmt.Errorf("%s: block storage service: %w", c, err)
	}
	return c, nil
}

// resolve turns the credentials into gophercloud's options: from the clouds.yaml
// entry, else from the OS_* variables.
func (cr Credentials) resolve() (gophercloud.AuthOptions, gophercloud.EndpointOpts, *tls.Config, error) {
	if cr.Cloud != "" {
		opts := []clouds.ParseOption{clouds.WithCloudName(cr.Cloud)}
		if cr.CloudsFile != "" {
			opts = append(opts, clouds.WithLocations(cr.CloudsFile))
		}
		if cr.Region != "" {
			opts = append(opts, clouds.WithRegion(cr.Region))
		}
		if cr.CACert != "" {
			opts = append(opts, clouds.WithCACertPath(cr.CACert))
		}
		if cr.Insecure {
			opts = append(opts, clouds.WithInsecure(true))
		}
		if cr.Interface != "" {
			opts = append(opts, clouds.WithEndpointType(cr.Interface))
		}
		auth, eo, tlsc, err := clouds.Parse(opts...)
		if err != nil {
			return auth, eo, nil, &ConfigError{Field: "os-cloud " + cr.Cloud, Err: err}
		}
		return auth, eo, tlsc, nil
	}
	getenv := cr.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	env, err := ReadEnv(getenv)
	if err != nil {
		return gophercloud.AuthOptions{}, gophercloud.EndpointOpts{}, nil, err
	}
	eo := gophercloud.EndpointOpts{Region: env.Region, Availability: availability(env.Interface)}
	if cr.Region != "" {
		eo.Region = cr.Region
	}
	if cr.Interface != "" {
		eo.Availability = availability(cr.Interface)
	}
	tlsc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cr.Insecure || env.Insecure} //nolint:gosec // asked for, test clouds only
	ca := cr.CACert
	if ca == "" {
		ca = env.CACert
	}
	if ca != "" {
		if tlsc.RootCAs, err = caPool(ca); err != nil {
			return env.Auth, eo, nil, err
		}
	}
	if env.Cert != "" && env.Key != "" {
		cert, err := tls.LoadX509KeyPair(env.Cert, env.Key)
		if err != nil {
			return env.Auth, eo, nil, &ConfigError{Field: "OS_CERT", Err: err}
		}
		tlsc.Certificates = []tls.Certificate{cert}
	}
	return env.Auth, eo, tlsc, nil
}

func availability(iface string) gophercloud.Availability {
	switch iface {
	case "internal":
		return gophercloud.AvailabilityInternal
	case "admin":
		return gophercloud.AvailabilityAdmin
	}
	return gophercloud.AvailabilityPublic
}

// isNoEndpoint reports whether the catalog lacks the service asked for. gophercloud
// returns its ErrEndpointNotFound as a pointer (openstack/endpoint.go); the value
// form is matched too.
func isNoEndpoint(err error) bool {
	var p *gophercloud.ErrEndpointNotFound
	var v gophercloud.ErrEndpointNotFound
	return errors.As(err, &p) || errors.As(err, &v)
}

func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, &ConfigError{Field: "OS_CACERT", Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &ConfigError{Field: "OS_CACERT", Err: fmt.Errorf("%s: no PEM certificate", file)}
	}
	return pool, nil
}
