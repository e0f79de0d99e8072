package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnectOptions say how to reach NATS. Every client of imagevet (worker, submit,
// status) takes the same ones.
type ConnectOptions struct {
	// URLs lists servers ("nats://host:4222", "tls://…"); several for a cluster.
	URLs []string
	// Name identifies the client to the server (monitoring, logs).
	Name string
	// CredsFile is a NATS credentials file (user JWT and nkey seed).
	CredsFile string
	// NKeySeedFile is a file holding a user nkey seed.
	NKeySeedFile string
	// TLSCAFile verifies the server; TLSCertFile/TLSKeyFile authenticate the client.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// ConnectTimeout bounds dialing one server (default 5 s).
	ConnectTimeout time.Duration
	// Logger receives connection state changes (nil: slog.Default()).
	Logger *slog.Logger
}

// Validate reports option combinations that cannot work.
func (o ConnectOptions) Validate() error {
	var errs []error
	if len(o.URLs) == 0 {
		errs = append(errs, errors.New("nats: no server URL"))
	}
	if o.CredsFile != "" && o.NKeySeedFile != "" {
		errs = append(errs, errors.New("nats: give a creds file or an nkey seed file, not both"))
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, errors.New("nats: TLS client certificate and key go together"))
	}
	for _, u := range o.URLs {
		if err := checkServerURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Connect dials NATS with the options once, reconnecting forever once connected: for
// one-shot commands. Services wait for their server with a Dialer. A failure that no
// retry can mend is a *ConnectError.
func Connect(o ConnectOptions) (*nats.Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	opts := []nats.Option{
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if o.Name != "" {
		opts = append(opts, nats.Name(o.Name))
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed %s: %w", o.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if o.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(o.TLSCAFile))
	}
	if o.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(o.TLSCertFile, o.TLSKeyFile))
	}
	nc, err := nats.Connect(strings.Join(o.URLs, ","), opts...)
	if err != nil {
		err = fmt.Errorf("connect to nats %s: %w", redactURLs(o.URLs), err)
		if ce := classifyConnect(err); ce != nil {
			return nil, ce
		}
		return nil, err
	}
	return nc, nil
}

// SplitURLs splits a comma- or space-separated server list.
func SplitURLs(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}
