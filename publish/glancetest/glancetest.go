// Package glancetest starts a real Keystone and one real Glance per region from
// Debian's packages (keystone, glance-api) on loopback for tests, each with its own
// SQLite database and file store in a temporary directory, and stops them by PID when
// the test ends. A region's Glance may convert imports to raw (the image_conversion
// import plugin, which runs qemu-img), and a region's catalog may hold only the
// identity and image services. Nova
// and Cinder, which the publisher only asks whether an image is in use, are answered
// by Answerer: a loopback HTTP server replaying the documented response shapes of
// their server and volume lists. It is not a Nova or a Cinder.
package glancetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/endpoints"
	regionsapi "github.com/gophercloud/gophercloud/v2/openstack/identity/v3/regions"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/services"
	"go.yaml.in/yaml/v3"

	"github.com/imagevet/imagevet/internal/testenv"
)

// Names the test cloud is set up with.
const (
	CloudName = "imagevet-test"
	Region    = "RegionOne"
	Admin     = "admin"
	Password  = "imagevet-test-secret"
)

// Cloud is a running Keystone with a Glance per region.
type Cloud struct {
	Dir         string
	KeystoneURL string // http://127.0.0.1:P/v3
	GlanceURL   string // the first region's Glance, http://127.0.0.1:P
	// Glances maps each region to its Glance's URL.
	Glances map[string]string
	// CloudsFile is a clouds.yaml whose entry CloudName logs in as the admin (in the
	// first region; entries CloudName-<region> name each region).
	CloudsFile string
	Usage      *Answerer
}

// RegionSpec is one region of the test cloud: its own glance-api.
type RegionSpec struct {
	Name string
	// Convert enables Glance's image_conversion import plugin with raw output: an
	// image imported (glance-direct) as qcow2 is stored raw.
	Convert bool
	// ImageOnly leaves compute and block storage out of the region's catalog, as
	// on an image-only cloud: only identity and image.
	ImageOnly bool
}

// binaries the harness needs, from the keystone, glance-api and qemu-utils packages.
var binaries = []string{"keystone-manage", "keystone-wsgi-public", "glance-manage", "glance-api", "sqlite3", "qemu-img"}

// Start brings up Keystone and one Glance in RegionOne and registers Glance and the
// Answerer in Keystone's catalog. Without the packages the test is skipped, or fails
// under CI=true.
func Start(t testing.TB) *Cloud {
	t.Helper()
	return StartRegions(t, RegionSpec{Name: Region})
}

// StartRegions brings up Keystone and a Glance per region (the first region also
// holds Keystone's own endpoint).
func StartRegions(t testing.TB, regions ...RegionSpec) *Cloud {
	t.Helper()
	Installed(t)
	if len(regions) == 0 {
		t.Fatal("glancetest: no region")
	}
	c, err := start(t, regions)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Installed skips the test (fails it under CI=true) when the packages are missing.
func Installed(t testing.TB) {
	t.Helper()
	for _, b := range binaries {
		if _, err := exec.LookPath(b); err != nil {
			msg := fmt.Sprintf("%s not installed (scripts/setup-host installs keystone and glance-api): %v", b, err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// start does Start's work, reporting errors to its caller (a free loopback port
// it cannot find fails the test at once).
func start(t testing.TB, regions []RegionSpec) (*Cloud, error) {
	dir := t.TempDir()
	c := &Cloud{Dir: dir, Glances: map[string]string{}}
	kport := testenv.FreePort(t)
	c.KeystoneURL = fmt.Sprintf("http://127.0.0.1:%d/v3", kport)
	gconfs := make([]string, len(regions))
	for i, r := range regions {
		gport := testenv.FreePort(t)
		c.Glances[r.Name] = fmt.Sprintf("http://127.0.0.1:%d", gport)
		var err error
		if gconfs[i], err = c.writeGlanceConf(r, gport); err != nil {
			return nil, err
		}
	}
	c.GlanceURL = c.Glances[regions[0].Name]

	// Glance's databases migrate while Keystone sets itself up.
	gdone := make(chan error, 1)
	go func() {
		var errs []error
		for _, conf := range gconfs {
			errs = append(errs, run(dir, nil, "glance-manage", "--config-file", conf, "db_sync"))
		}
		gdone <- errors.Join(errs...)
	}()
	kconf, err := c.writeKeystoneConf()
	if err != nil {
		<-gdone
		return nil, err
	}
	kenv := []string{"OS_KEYSTONE_CONFIG_FILES=" + kconf}
	if err := c.setupKeystone(kconf, kenv, regions[0].Name); err != nil {
		<-gdone
		return nil, err
	}
	if err := <-gdone; err != nil {
		return nil, err
	}
	if err := serve(t, dir, "keystone", kenv, "keystone-wsgi-public", "--host", "127.0.0.1", "--port", fmt.Sprint(kport)); err != nil {
		return nil, err
	}
	for i, r := range regions {
		if err := serve(t, dir, "glance-"+r.Name, nil, "glance-api", "--config-file", gconfs[i]); err != nil {
			return nil, err
		}
	}
	if err := waitHTTP(c.KeystoneURL, filepath.Join(dir, "keystone.log")); err != nil {
		return nil, err
	}
	for _, r := range regions {
		if err := waitHTTP(c.Glances[r.Name]+"/versions", filepath.Join(dir, "glance-"+r.Name+".log")); err != nil {
			return nil, err
		}
	}
	c.Usage = NewAnswerer(t)
	if err := c.writeCloudsFile(regions); err != nil {
		return nil, err
	}
	if err := c.register(regions); err != nil {
		return nil, err
	}
	return c, nil
}

// setupKeystone migrates Keystone's database and bootstraps the admin user,
// project and endpoints in region.
func (c *Cloud) setupKeystone(kconf string, kenv []string, region string) error {
	dir := c.Dir
	steps := [][]string{
		{"keystone-manage", "--config-file", kconf, "db_sync"},
		// Keystone on SQLite fails writes with "database is locked" without WAL.
		{"sqlite3", filepath.Join(dir, "keystone.db"), "PRAGMA journal_mode=WAL;"},
		{"keystone-manage", "--config-file", kconf, "fernet_setup", "--keystone-user", "root", "--keystone-group", "root"},
		{"keystone-manage", "--config-file", kconf, "credential_setup", "--keystone-user", "root", "--keystone-group", "root"},
		{"keystone-manage", "--config-file", kconf, "bootstrap", "--bootstrap-username", Admin,
			"--bootstrap-password", Password, "--bootstrap-project-name", Admin,
			"--bootstrap-admin-url", c.KeystoneURL, "--bootstrap-public-url", c.KeystoneURL,
			"--bootstrap-internal-url", c.KeystoneURL, "--bootstrap-region-id", region},
	}
	for _, s := range steps {
		if err := run(dir, kenv, s...); err != nil {
			return err
		}
	}
	return nil
}

func run(dir string, env []string, args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, tail(out))
	}
	return nil
}

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}

// serve starts a server process in its own process group, logging to dir/name.log,
// and stops that group when the test ends.
func serve(t testing.TB, dir, name string, env []string, args ...string) error {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	})
	return nil
}

func waitHTTP(url, logFile string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := os.ReadFile(logFile)
	return fmt.Errorf("%s does not answer after 90 s; its log ends:\n%s", url, tail(out))
}

// section is one [section] of key = value lines, in order.
type section struct {
	name string
	keys [][2]string
}

// ini is one configuration file: its sections, in order.
type ini []section

func (f ini) write(path string) (string, error) {
	var b bytes.Buffer
	for _, s := range f {
		fmt.Fprintf(&b, "[%s]\n", s.name)
		for _, kv := range s.keys {
			fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
		}
	}
	return path, os.WriteFile(path, b.Bytes(), 0o600)
}

func (c *Cloud) writeKeystoneConf() (string, error) {
	for _, d := range []string{"fernet-keys", "credential-keys"} {
		if err := os.Mkdir(filepath.Join(c.Dir, d), 0o700); err != nil {
			return "", err
		}
	}
	return ini{
		{"DEFAULT", [][2]string{{"use_stderr", "true"}}},
		{"database", [][2]string{{"connection", "sqlite:///" + filepath.Join(c.Dir, "keystone.db")}}},
		{"fernet_tokens", [][2]string{{"key_repository", filepath.Join(c.Dir, "fernet-keys")}}},
		{"fernet_receipts", [][2]string{{"key_repository", filepath.Join(c.Dir, "fernet-keys")}}},
		{"credential", [][2]string{{"key_repository", filepath.Join(c.Dir, "credential-keys")}}},
		{"token", [][2]string{{"provider", "fernet"}}},
	}.write(filepath.Join(c.Dir, "keystone.conf"))
}

func (c *Cloud) writeGlanceConf(r RegionSpec, port int) (string, error) {
	gdir := filepath.Join(c.Dir, "glance-"+r.Name)
	for _, d := range []string{"images", "staging", "tasks", "locks"} {
		if err := os.MkdirAll(filepath.Join(gdir, d), 0o700); err != nil {
			return "", err
		}
	}
	conf := ini{
		{"DEFAULT", [][2]string{{"bind_host", "127.0.0.1"}, {"bind_port", fmt.Sprint(port)}, {"workers", "0"},
			{"use_stderr", "true"}, {"enabled_import_methods", "[glance-direct,web-download]"},
			// Where glance-direct stages uploads (default file:///tmp/staging/, shared
			// by every Glance on the host).
			{"node_staging_uri", "file://" + filepath.Join(gdir, "staging")}}},
		{"database", [][2]string{{"connection", "sqlite:///" + filepath.Join(gdir, "glance.db")}}},
		{"glance_store", [][2]string{{"stores", "file"}, {"default_store", "file"},
			{"filesystem_store_datadir", filepath.Join(gdir, "images") + "/"}}},
		{"os_glance_staging_store", [][2]string{{"filesystem_store_datadir", filepath.Join(gdir, "staging") + "/"}}},
		{"os_glance_tasks_store", [][2]string{{"filesystem_store_datadir", filepath.Join(gdir, "tasks") + "/"}}},
		{"paste_deploy", [][2]string{{"flavor", "keystone"}, {"config_file", "/etc/glance/glance-api-paste.ini"}}},
		{"keystone_authtoken", [][2]string{{"www_authenticate_uri", c.KeystoneURL}, {"auth_url", c.KeystoneURL},
			{"auth_type", "password"}, {"username", Admin}, {"password", Password}, {"user_domain_id", "default"},
			{"project_name", Admin}, {"project_domain_id", "default"}, {"region_name", r.Name}}},
		{"oslo_concurrency", [][2]string{{"lock_path", filepath.Join(gdir, "locks")}}},
	}
	if r.Convert {
		// The interoperable import's conversion plugin (glance/async_/flows/plugins/
		// image_conversion.py in python3-glance): qemu-img converts the staged file
		// before it is stored, and Glance records the stored file's hash.
		conf = append(conf,
			section{"image_import_opts", [][2]string{{"image_import_plugins", "['image_conversion']"}}},
			section{"image_conversion", [][2]string{{"output_format", "raw"}}})
	}
	return conf.write(filepath.Join(gdir, "glance-api.conf"))
}

// cloudsYAML is the clouds.yaml layout every OpenStack client reads.
type cloudsYAML struct {
	Clouds map[string]cloudEntry `yaml:"clouds"`
}

type cloudEntry struct {
	Auth       cloudAuth `yaml:"auth"`
	RegionName string    `yaml:"region_name"`
	Interface  string    `yaml:"interface"`
}

type cloudAuth struct {
	AuthURL         string `yaml:"auth_url"`
	Username        string `yaml:"username"`
	Password        string `yaml:"password"`
	ProjectName     string `yaml:"project_name"`
	UserDomainID    string `yaml:"user_domain_id"`
	ProjectDomainID string `yaml:"project_domain_id"`
}

func (c *Cloud) writeCloudsFile(regions []RegionSpec) error {
	auth := cloudAuth{AuthURL: c.KeystoneURL, Username: Admin, Password: Password, ProjectName: Admin,
		UserDomainID: "default", ProjectDomainID: "default"}
	entries := map[string]cloudEntry{CloudName: {Auth: auth, RegionName: regions[0].Name, Interface: "public"}}
	for _, r := range regions {
		entries[CloudName+"-"+r.Name] = cloudEntry{Auth: auth, RegionName: r.Name, Interface: "public"}
	}
	data, err := yaml.Marshal(cloudsYAML{Clouds: entries})
	if err != nil {
		return err
	}
	c.CloudsFile = filepath.Join(c.Dir, "clouds.yaml")
	return os.WriteFile(c.CloudsFile, data, 0o600)
}

// Provider logs in as the admin.
func (c *Cloud) Provider(ctx context.Context) (*gophercloud.ProviderClient, error) {
	return openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: c.KeystoneURL,
		Username: Admin, Password: Password, DomainID: "default",
		Scope: &gophercloud.AuthScope{ProjectName: Admin, DomainID: "default"}})
}

// register puts each region's Glance (image) and, but in image-only regions, the
// Answerer (compute, volumev3) in the catalog.
func (c *Cloud) register(regions []RegionSpec) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pc, err := c.Provider(ctx)
	if err != nil {
		return fmt.Errorf("log in to the test keystone: %w", err)
	}
	id, err := openstack.NewIdentityV3(pc, gophercloud.EndpointOpts{Region: regions[0].Name})
	if err != nil {
		return err
	}
	svcs := map[string]string{}
	for _, s := range []struct{ name, typ string }{{"glance", "image"}, {"nova", "compute"}, {"cinderv3", "volumev3"}} {
		svc, err := services.Create(ctx, id, services.CreateOpts{Type: s.typ, Extra: map[string]any{"name": s.name}}).Extract()
		if err != nil {
			return fmt.Errorf("register %s: %w", s.name, err)
		}
		svcs[s.typ] = svc.ID
	}
	// Keystone's own service (bootstrap made it): each further region lists it too,
	// as a multi-region cloud's catalog does, and glance-api's auth middleware looks
	// for it in its own region.
	pages, err := services.List(id, services.ListOpts{ServiceType: "identity"}).AllPages(ctx)
	if err != nil {
		return fmt.Errorf("find the identity service: %w", err)
	}
	ids, err := services.ExtractServices(pages)
	if err != nil || len(ids) != 1 {
		return fmt.Errorf("find the identity service: %d found, %v", len(ids), err)
	}
	svcs["identity"] = ids[0].ID
	for i, r := range regions {
		if i > 0 {
			if _, err := regionsapi.Create(ctx, id, regionsapi.CreateOpts{ID: r.Name}).Extract(); err != nil {
				return fmt.Errorf("create region %s: %w", r.Name, err)
			}
		}
		type endpoint struct{ typ, url string }
		eps := []endpoint{{"image", c.Glances[r.Name]}}
		if i > 0 {
			eps = append(eps, endpoint{"identity", c.KeystoneURL})
		}
		if !r.ImageOnly {
			eps = append(eps, endpoint{"compute", c.Usage.URL + "/compute/v2.1/"}, endpoint{"volumev3", c.Usage.URL + "/volume/v3/"})
		}
		for _, ep := range eps {
			for _, av := range []gophercloud.Availability{gophercloud.AvailabilityPublic, gophercloud.AvailabilityInternal} {
				if _, err := endpoints.Create(ctx, id, endpoints.CreateOpts{Availability: av, Region: r.Name, URL: ep.url, ServiceID: svcs[ep.typ]}).Extract(); err != nil {
					return fmt.Errorf("register %s endpoint in %s: %w", ep.typ, r.Name, err)
				}
			}
		}
	}
	return nil
}

// Answerer replays Nova's and Cinder's list responses for the in-use check: servers
// (GET /compute/v2.1/servers/detail, filtered by ?image=) and volumes (GET
// /volume/v3/volumes/detail, with volume_image_metadata). Tests say which image is
// used by what. It is a stand-in on loopback, not a Nova or a Cinder.
type Answerer struct {
	URL string
	mu  sync.Mutex
	// servers and volumes map an image id to the ids of what uses it.
	servers, volumes map[string][]string
	// Requests counts the in-use questions asked, by path.
	requests map[string]int
}

// NewAnswerer starts the Answerer on a loopback port until the test ends.
func NewAnswerer(t testing.TB) *Answerer {
	a := &Answerer{servers: map[string][]string{}, volumes: map[string][]string{}, requests: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// UseByServer makes the image in use by a server (all projects).
func (a *Answerer) UseByServer(imageID, serverID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.servers[imageID] = append(a.servers[imageID], serverID)
}

// UseByVolume makes the image in use by a volume created from it.
func (a *Answerer) UseByVolume(imageID, volumeID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.volumes[imageID] = append(a.volumes[imageID], volumeID)
}

// Release forgets every user of the image.
func (a *Answerer) Release(imageID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.servers, imageID)
	delete(a.volumes, imageID)
}

// Requests returns how many times path was asked.
func (a *Answerer) Requests(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests[path]
}

type server struct {
	ID     string         `json:"id"`
	Name   string         `json:"name"`
	Status string         `json:"status"`
	Image  map[string]any `json:"image"`
}

type volume struct {
	ID                  string            `json:"id"`
	Status              string            `json:"status"`
	VolumeImageMetadata map[string]string `json:"volume_image_metadata"`
}

func (a *Answerer) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests[r.URL.Path]++
	if r.Method != http.MethodGet || r.URL.Query().Get("all_tenants") == "" {
		http.Error(w, `{"badRequest":{"message":"only GET of all projects is answered","code":400}}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/compute/v2.1/servers/detail":
		out := struct {
			Servers []server `json:"servers"`
		}{Servers: []server{}}
		img := r.URL.Query().Get("image")
		for _, id := range a.servers[img] {
			out.Servers = append(out.Servers, server{ID: id, Name: "srv-" + id, Status: "ACTIVE", Image: map[string]any{"id": img}})
		}
		_ = json.NewEncoder(w).Encode(out)
	case "/volume/v3/volumes/detail":
		out := struct {
			Volumes []volume `json:"volumes"`
		}{Volumes: []volume{}}
		for img, ids := range a.volumes {
			for _, id := range ids {
				out.Volumes = append(out.Volumes, volume{ID: id, Status: "in-use", VolumeImageMetadata: map[string]string{"image_id": img}})
			}
		}
		_ = json.NewEncoder(w).Encode(out)
	default:
		http.NotFound(w, r)
	}
}
