package publish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// Credentials say how to log in to the cloud, the way every OpenStack tool takes them:
// a clouds.yaml entry (Cloud, from OS_CLOUD), or else the OS_* variables (password
// or application credential). CACert verifies the cloud's TLS certificate.
type Credentials struct {
	Cloud      string // clouds.yaml entry name
	CloudsFile string // a clouds.yaml to read instead of the usual places
	Region     string
	CACert     string // PEM file
	// RequestTimeout bounds every API call but the image data transfer (default 2 min).
	RequestTimeout time.Duration
}

// Cloud holds the service clients the publisher uses. Compute and Volume are nil when
// the cloud's catalog has no such service: nothing is then deleted, since whether an
// image is in use cannot be told.
type Cloud struct {
	Name    string // the clouds.yaml entry or the auth URL
	Image   *gophercloud.ServiceClient
	Compute *gophercloud.ServiceClient
	Volume  *gophercloud.ServiceClient
	// Timeout bounds each API call but the image data transfer, which the
	// publisher bounds by the image's size.
	Timeout time.Duration
}

// Login authenticates and finds the Image, Compute and Block Storage endpoints.
func Login(ctx context.Context, cr Credentials) (*Cloud, error) {
	var (
		auth  gophercloud.AuthOptions
		eo    gophercloud.EndpointOpts
		tlsc  *tls.Config
		err   error
		name  string
		cfile []clouds.ParseOption
	)
	if cr.Cloud != "" {
		cfile = append(cfile, clouds.WithCloudName(cr.Cloud))
		if cr.CloudsFile != "" {
			cfile = append(cfile, clouds.WithLocations(cr.CloudsFile))
		}
		if cr.Region != "" {
			cfile = append(cfile, clouds.WithRegion(cr.Region))
		}
		if cr.CACert != "" {
			cfile = append(cfile, clouds.WithCACertPath(cr.CACert))
		}
		auth, eo, tlsc, err = clouds.Parse(cfile...)
		if err != nil {
			return nil, &ConfigError{Field: "cloud", Err: err}
		}
		name = cr.Cloud
	} else {
		auth, err = openstack.AuthOptionsFromEnv()
		if err != nil {
			return nil, &ConfigError{Field: "OS_AUTH_URL", Err: fmt.Errorf("no cloud named and no usable OS_* variables: %w", err)}
		}
		eo.Region = cr.Region
		if cr.CACert != "" {
			if tlsc, err = caConfig(cr.CACert); err != nil {
				return nil, err
			}
		}
		name = auth.IdentityEndpoint
	}
	auth.AllowReauth = true
	timeout := cr.RequestTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsc
	tr.ResponseHeaderTimeout = timeout
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pc, err := config.NewProviderClient(lctx, auth, config.WithHTTPClient(http.Client{Transport: tr}))
	if err != nil {
		return nil, fmt.Errorf("log in to %s: %w", name, err)
	}
	c := &Cloud{Name: name, Timeout: timeout}
	if c.Image, err = openstack.NewImageV2(pc, eo); err != nil {
		return nil, fmt.Errorf("%s: image service: %w", name, err)
	}
	if sc, err := openstack.NewComputeV2(pc, eo); err == nil {
		c.Compute = sc
	} else if !isNoEndpoint(err) {
		return nil, fmt.Errorf("%s: compute service: %w", name, err)
	}
	if sc, err := openstack.NewBlockStorageV3(pc, eo); err == nil {
		c.Volume = sc
	} else if !isNoEndpoint(err) {
		return nil, fmt.Errorf("%s: block storage service: %w", name, err)
	}
	return c, nil
}

func isNoEndpoint(err error) bool {
	var nf gophercloud.ErrEndpointNotFound
	return errors.As(err, &nf)
}

func caConfig(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, &ConfigError{Field: "OS_CACERT", Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &ConfigError{Field: "OS_CACERT", Err: fmt.Errorf("%s: no PEM certificate", file)}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
