// Package metadata is the per-job metadata service a guest reaches at
// http://169.254.169.254/: OpenStack (openstack/<version>/meta_data.json…) and EC2
// (<version>/meta-data/…) shapes answering with this job's instance id, hostname and
// keys. Every request is recorded so the worker can prove the guest reached it.
//
// One Server runs per job, on 127.0.0.1 with ephemeral ports: isolation between
// jobs needs no routing, and the server lives exactly as long as its guest. It
// listens twice: Addr is plain HTTP (for the host and tests), StreamAddr is
// where qemu's user-mode network sends the guest's connections to
// 169.254.169.254:80, all of them on one chardev socket (guestfwd=…-tcp:ADDR;
// see stream.go for how that one stream is served). No host process runs per
// guest connection.
package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/imagevet/imagevet/cloudinit"
)

// Config is what one job's metadata service answers.
type Config struct {
	// Seed is the job's seed: the service answers with its identity, keys and
	// meta_data.json, exactly as its seed disk carries them.
	Seed cloudinit.Spec
	// UserData is served as OpenStack user_data and EC2 user-data; nil answers 404
	// as a cloud without user data does.
	UserData []byte
	// NetworkDataJSON is OpenStack network_data.json; default: no links.
	NetworkDataJSON []byte
	// Logger receives one debug record per request; nil discards.
	Logger *slog.Logger
}

// Request is one HTTP request the service answered.
type Request struct {
	Time       time.Time
	Method     string
	Path       string
	UserAgent  string
	RemoteAddr string
	Status     int
}

// maxRequests bounds the recorded requests; later ones are counted only.
const maxRequests = 2000

// OpenStack and EC2 metadata versions the service answers besides "latest".
var (
	openstackVersions = []string{"2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30", "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14", "latest"}
	ec2Versions       = []string{"1.0", "2007-01-19", "2009-04-04", "2016-09-02", "2021-03-23", "latest"}
)

// Server is a running metadata service.
type Server struct {
	cfg     Config
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	served  chan error
	meta    []byte
	network []byte
	vendor  []byte
	az      string
	keys    []string // authorized_keys lines, in the seed's order

	stream *stream

	mu      sync.Mutex
	reqs    []Request
	dropped int
}

// Start validates cfg and serves it on 127.0.0.1 with an ephemeral port.
func Start(cfg Config) (*Server, error) {
	meta, err := cfg.Seed.OpenStackMetaData()
	if err != nil {
		return nil, fmt.Errorf("metadata: seed: %w", err)
	}
	vendor, err := cfg.Seed.OpenStackVendorData()
	if err != nil {
		return nil, fmt.Errorf("metadata: seed: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, served: make(chan error, 1), meta: meta, vendor: vendor,
		az: cfg.Seed.AvailabilityZone, keys: cfg.Seed.Keys.AuthorizedKeys()}
	if s.az == "" {
		s.az = cloudinit.DefaultAvailabilityZone
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.network = cfg.NetworkDataJSON; s.network == nil {
		s.network = []byte(`{"links": [], "networks": [], "services": []}`)
	} else if !json.Valid(s.network) {
		return nil, errors.New("metadata: NetworkDataJSON is not valid JSON")
	}
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("metadata: listen: %w", err)
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if err := s.startStream(); err != nil {
		s.ln.Close()
		return nil, err
	}
	go func() { s.served <- s.srv.Serve(s.ln) }()
	return s, nil
}

// Addr is the host:port of the service's plain HTTP listener.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the service's base URL on the host, e.g. "http://127.0.0.1:41234".
func (s *Server) URL() string { return "http://" + s.Addr() }

// Requests returns the requests answered so far, oldest first (at most 2000).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Close stops the service, waiting for in-flight requests until ctx ends. It is
// safe to call more than once.
func (s *Server) Close(ctx context.Context) error {
	s.closeStream()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = s.srv.Close()
	}
	return err
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// ServeHTTP answers one request and records it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	s.route(sw, r)
	req := Request{Time: time.Now(), Method: r.Method, Path: r.URL.Path, UserAgent: r.UserAgent(), RemoteAddr: r.RemoteAddr, Status: sw.status}
	s.mu.Lock()
	if len(s.reqs) < maxRequests {
		s.reqs = append(s.reqs, req)
	} else {
		s.dropped++
	}
	s.mu.Unlock()
	s.log.Debug("metadata request", "method", req.Method, "path", req.Path, "status", req.Status, "user_agent", req.UserAgent)
}

var versionRE = regexp.MustCompile(`^(latest|\d{4}-\d{2}-\d{2}|1\.0)$`)

// imdsToken is the IMDSv2 session token: any client asking for one gets it, and
// requests are answered with or without it.
const imdsToken = "imagevet-imds-token"

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method == http.MethodPut {
		if len(parts) == 3 && versionRE.MatchString(parts[0]) && parts[1] == "api" && parts[2] == "token" {
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
			text(w, imdsToken)
			return
		}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if parts[0] == "openstack" {
		s.openstack(w, parts[1:])
		return
	}
	s.ec2(w, parts)
}

func (s *Server) openstack(w http.ResponseWriter, p []string) {
	switch {
	case len(p) == 0 || p[0] == "":
		lines(w, openstackVersions...)
	case !contains(openstackVersions, p[0]):
		http.NotFound(w, nil)
	case len(p) == 1 || p[1] == "":
		files := []string{"meta_data.json", "network_data.json", "vendor_data.json", "vendor_data2.json"}
		if s.cfg.UserData != nil {
			files = append(files, "user_data")
		}
		lines(w, files...)
	case len(p) > 2:
		http.NotFound(w, nil)
	default:
		switch p[1] {
		case "meta_data.json":
			jsonBody(w, s.meta)
		case "network_data.json":
			jsonBody(w, s.network)
		case "vendor_data.json":
			jsonBody(w, s.vendor)
		case "vendor_data2.json":
			jsonBody(w, []byte("{}"))
		case "user_data":
			if s.cfg.UserData == nil {
				http.NotFound(w, nil)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(s.cfg.UserData)
		default:
			http.NotFound(w, nil)
		}
	}
}

func (s *Server) ec2(w http.ResponseWriter, p []string) {
	if len(p) == 1 && p[0] == "" {
		lines(w, ec2Versions...)
		return
	}
	if !versionRE.MatchString(p[0]) {
		http.NotFound(w, nil)
		return
	}
	rest := p[1:]
	if len(rest) > 0 && rest[len(rest)-1] == "" { // trailing slash
		rest = rest[:len(rest)-1]
	}
	if len(rest) == 0 {
		entries := []string{"meta-data"}
		if s.cfg.UserData != nil {
			entries = append(entries, "user-data")
		}
		lines(w, entries...)
		return
	}
	switch rest[0] {
	case "user-data":
		if s.cfg.UserData == nil || len(rest) > 1 {
			http.NotFound(w, nil)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(s.cfg.UserData)
		return
	case "meta-data":
		s.ec2Meta(w, rest[1:])
		return
	}
	http.NotFound(w, nil)
}

func (s *Server) ec2Meta(w http.ResponseWriter, p []string) {
	key := strings.Join(p, "/")
	simple := map[string]string{
		"ami-id":                      "ami-00000001",
		"ami-launch-index":            "0",
		"hostname":                    s.cfg.Seed.Hostname,
		"local-hostname":              s.cfg.Seed.Hostname,
		"public-hostname":             s.cfg.Seed.Hostname,
		"instance-id":                 s.cfg.Seed.InstanceID,
		"instance-type":               "imagevet",
		"reservation-id":              "r-imagevet",
		"placement/availability-zone": s.az,
	}
	if v, ok := simple[key]; ok {
		text(w, v)
		return
	}
	switch {
	case key == "":
		lines(w, "ami-id", "ami-launch-index", "hostname", "instance-id", "instance-type",
			"local-hostname", "placement/", "public-hostname", "public-keys/", "reservation-id")
	case key == "placement":
		lines(w, "availability-zone")
	case key == "public-keys":
		entries := make([]string, len(s.keys))
		for i := range s.keys {
			entries[i] = fmt.Sprintf("%d=%s", i, cloudinit.KeyName(i))
		}
		lines(w, entries...)
	case len(p) >= 2 && p[0] == "public-keys":
		i := -1
		fmt.Sscanf(p[1], "%d", &i)
		if i < 0 || i >= len(s.keys) || fmt.Sprint(i) != p[1] || len(p) > 3 {
			http.NotFound(w, nil)
			return
		}
		if len(p) == 2 {
			lines(w, "openssh-key")
			return
		}
		if p[2] != "openssh-key" {
			http.NotFound(w, nil)
			return
		}
		lines(w, s.keys[i])
	default:
		http.NotFound(w, nil)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func text(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, s)
}

func lines(w http.ResponseWriter, l ...string) { text(w, strings.Join(l, "\n")) }

func jsonBody(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
