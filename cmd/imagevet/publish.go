package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/publish"

	"github.com/imagevet/imagevet/queue"
)

const publishUsage = `usage: imagevet publish [flags]                  serve: publish passed results as they arrive
       imagevet publish --job JOB-ID [--dry-run]  publish one job's result (or print the plan)

Puts images whose job passed and asks for it (publish.glance) into OpenStack Glance:
exactly the vetted bytes (from the worker's image cache under --state-dir, else from
the result's image source, both digests verified), under the family's Latest name;
the release it replaces is renamed with its version and made community (or hidden),
releases past the family's policy are deactivated and deleted once no server and no
volume uses them. Several clouds or regions, each with its own Glance: repeat
--os-cloud [NAME=]ENTRY[@REGION], or give --os-region a list; a job's publish.clouds
selects among them by NAME (default: the entry, or ENTRY-REGION when an entry has
several regions, lower case), empty means all. Credentials as the openstack CLI takes
them: a clouds.yaml entry (password, application credential, token) or, without
--os-cloud, the OS_* variables of a Keystone v3 or Horizon openrc; --os-cacert for a
private CA, --os-insecure for test clouds only. A publication refused in a cloud
(wrong bytes, a bad result) or waiting for a cloud that is down is recorded per job
and cloud (imagevet status shows it); --job publishes that job again in its clouds
(--cloud for some of them). The exit status of a one-shot run is 0 when the image is
in Glance in every cloud (or the plan printed), 1 when the result is not
publishable, 2 on errors, 4 when the job has no result.

`

// publishConfig is imagevet publish's configuration, from flags and environment.
type publishConfig struct {
	nats       natsFlags
	creds      publish.Credentials // the settings every cloud shares
	cloudSpecs []string            // --os-cloud values
	regions    string              // --os-region: a comma-separated list
	converts   string              // --import-converts
	only       []string            // --cloud
	stateDir   string
	imageRoots []string
	jobID      string
	upload     string
	dryRun     bool
	jsonOut    bool
	service    publish.ServiceConfig
	logLevel   string
	logJSON    bool
}

// parse fills c from publish's settings and validates it.
func (c *publishConfig) parse(args []string, env Env) error {
	c.creds.Getenv = env.Getenv
	rest, err := parseCommand("publish", publishUsage, args, env, merged(c.nats.bind(), logBindings(&c.logLevel, &c.logJSON),
		map[string]any{"os-cloud": &c.cloudSpecs, "os-client-config-file": &c.creds.CloudsFile, "os-region": &c.regions,
			"os-cacert": &c.creds.CACert, "os-insecure": &c.creds.Insecure, "import-converts": &c.converts, "cloud": &c.only,
			"os-timeout": &c.creds.RequestTimeout, "state-dir": &c.stateDir, "image-root": &c.imageRoots,
			"upload-method": &c.upload, "job": &c.jobID, "dry-run": &c.dryRun, "json": &c.jsonOut,
			"ack-wait": &c.service.AckWait, "retry-delay": &c.service.RetryDelay, "rotate-every": &c.service.RotateEvery}))
	if _, stop := flagStop(err); stop {
		return err
	}
	errs := []error{err}
	if len(rest) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", rest))
	}
	return errors.Join(append(errs, c.validate())...)
}

func (c *publishConfig) validate() error {
	var errs []error
	if !filepath.IsAbs(c.stateDir) {
		errs = append(errs, fmt.Errorf("state-dir: %q must be an absolute path", c.stateDir))
	}
	if c.dryRun && c.jobID == "" {
		errs = append(errs, errors.New("dry-run: needs --job"))
	}
	switch c.upload {
	case publish.UploadAuto, publish.UploadImport, publish.UploadPlain:
	default:
		errs = append(errs, fmt.Errorf("upload-method: %q is not auto, import or upload", c.upload))
	}
	if c.jobID != "" && !jobs.ValidJobID(c.jobID) {
		errs = append(errs, fmt.Errorf("job: %q is not a job id", c.jobID))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ack-wait", c.service.AckWait}, {"retry-delay", c.service.RetryDelay}, {"rotate-every", c.service.RotateEvery}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: %s must be positive", d.name, d.v))
		}
	}
	if len(c.cloudSpecs) == 0 && c.creds.CloudsFile != "" {
		errs = append(errs, errors.New("os-client-config-file: needs --os-cloud (OS_CLOUD) to name the entry"))
	}
	if _, err := c.clouds(); err != nil {
		errs = append(errs, err)
	}
	if len(c.cloudSpecs) == 0 {
		// Credentials from OS_* variables: checked before anything is contacted.
		if _, err := publish.ReadEnv(c.creds.Getenv); err != nil {
			errs = append(errs, err)
		}
	}
	if _, _, err := c.importConverts(); err != nil {
		errs = append(errs, err)
	}
	if len(c.only) > 0 && c.jobID == "" {
		errs = append(errs, errors.New("cloud: needs --job"))
	}
	return errors.Join(errs...)
}

// clouds expands --os-cloud and --os-region into one set of credentials per cloud:
// each entry in each of its regions, or, without --os-cloud, the OS_* variables in
// each region.
func (c *publishConfig) clouds() ([]publish.Credentials, error) {
	regions := splitItems(c.regions, ",")
	specs := c.cloudSpecs
	if len(specs) == 0 {
		specs = []string{""} // the OS_* variables
	}
	var out []publish.Credentials
	seen := map[string]bool{}
	for _, spec := range specs {
		name, entry, hasName := strings.Cut(spec, "=")
		if !hasName {
			name, entry = "", spec
		}
		entry, region, hasRegion := strings.Cut(entry, "@")
		if (hasName && entry == "") || (hasRegion && region == "") {
			return nil, fmt.Errorf("os-cloud: %q is not [NAME=]ENTRY[@REGION]", spec)
		}
		rs := regions
		if hasRegion {
			rs = []string{region}
		}
		if len(rs) == 0 {
			rs = []string{""}
		}
		if hasName && len(rs) > 1 {
			return nil, fmt.Errorf("os-cloud: %q names one cloud but --os-region lists %d regions: give each region its own NAME=ENTRY@REGION", spec, len(rs))
		}
		for _, r := range rs {
			cr := c.creds
			cr.Cloud, cr.Region, cr.Name = entry, r, name
			if name == "" && len(rs) > 1 {
				cr.Name = strings.ToLower(strings.Trim(entry+"-"+r, "-"))
			}
			cr.Name = publish.CloudName(cr)
			if !jobs.ValidCloudName(cr.Name) {
				return nil, fmt.Errorf("os-cloud: cloud name %q (from %q): 1-64 lowercase letters, digits, '.', '_' or '-' (name it: NAME=ENTRY)", cr.Name, spec)
			}
			if seen[cr.Name] {
				return nil, fmt.Errorf("os-cloud: two clouds are named %q: name them (NAME=ENTRY@REGION)", cr.Name)
			}
			seen[cr.Name] = true
			out = append(out, cr)
		}
	}
	return out, nil
}

// importConverts reads --import-converts: a value for every cloud, and per-cloud ones.
func (c *publishConfig) importConverts() (string, map[string]string, error) {
	all, per := publish.ConvertsAuto, map[string]string{}
	for _, item := range splitItems(c.converts, ",") {
		name, v, perCloud := strings.Cut(item, "=")
		if !perCloud {
			v = item
		}
		switch v {
		case publish.ConvertsAuto, publish.ConvertsYes, publish.ConvertsNo:
		default:
			return "", nil, fmt.Errorf("import-converts: %q is not auto, yes or no", v)
		}
		if perCloud {
			per[name] = v
		} else {
			all = v
		}
	}
	return all, per, nil
}

func cmdPublish(ctx context.Context, args []string, env Env) int {
	var cfg publishConfig
	err := cfg.parse(args, env)
	if code, stop := flagStop(err); stop {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(env.Stderr, "imagevet publish: %v\n", err)
		return exitError
	}
	if err != nil {
		return fail(err)
	}
	log, err := newLogger(env.Stderr, cfg.logLevel, cfg.logJSON)
	if err != nil {
		return fail(err)
	}
	nc, q, code, ok := cfg.connect(ctx, env, log)
	if !ok {
		return code
	}
	defer nc.Close()
	fleet, err := cfg.fleet(ctx, q, log)
	if err != nil {
		return fail(err)
	}
	if cfg.jobID == "" {
		cfg.service.Logger = log
		if err := publish.Serve(ctx, q, fleet, cfg.service); err != nil {
			return fail(err)
		}
		return 0
	}
	return cfg.publishOne(ctx, env, q, fleet)
}

// connect opens the queue: the service waits for its server and queue, a
// one-shot (--job) connects at once. When it should end instead it returns
// ok=false and its exit status, having said why.
func (c *publishConfig) connect(ctx context.Context, env Env, log *slog.Logger) (nc *nats.Conn, q *queue.Queue, code int, ok bool) {
	if c.jobID == "" {
		return connectService(ctx, c.nats.dialer("imagevet publish", log), env, "publish")
	}
	nc, err := queue.Connect(c.nats.options("imagevet publish"))
	if err == nil {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		q, err = queue.Open(octx, nc)
		cancel()
		if err != nil {
			nc.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet publish: %v\n", err)
		return nil, nil, exitError, false
	}
	return nc, q, 0, true
}

// fleet is the clouds publish puts images into, logged in to: a configuration
// error is returned; a cloud that is down is tried again when it is needed, the
// others go ahead.
func (c *publishConfig) fleet(ctx context.Context, q *queue.Queue, log *slog.Logger) (*publish.Fleet, error) {
	store, err := image.NewStore(image.StoreConfig{Dir: filepath.Join(c.stateDir, "cache"), FileRoots: c.imageRoots, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	creds, _ := c.clouds()
	convAll, convPer, _ := c.importConverts()
	pcfg := publish.Config{Store: store, Queue: q, UploadMethod: c.upload, ImportConverts: convAll, Logger: log}
	fleet, err := publish.NewFleet(pcfg, creds, func(name string, pc *publish.Config) {
		if v, ok := convPer[name]; ok {
			pc.ImportConverts = v
		}
	})
	if err != nil {
		return nil, err
	}
	for name := range convPer {
		if !slices.Contains(fleet.Names(), name) {
			return nil, fmt.Errorf("import-converts: %q is not one of the clouds (%s)", name, strings.Join(fleet.Names(), ", "))
		}
	}
	for name, err := range fleet.LoginAll(ctx) {
		var ce *publish.ConfigError
		if errors.As(err, &ce) {
			return nil, err
		}
		log.Warn("cloud unavailable at start; its publications wait and are retried", "cloud", name, "err", err)
	}
	return fleet, nil
}

// publishOne is publish --job: that job's result in its clouds (or --cloud's),
// or the plan with --dry-run. Its exit status: 0 published everywhere, 1 not
// publishable, 2 an error in some cloud, 4 no result.
func (c *publishConfig) publishOne(ctx context.Context, env Env, q *queue.Queue, fleet *publish.Fleet) int {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	res, ok, err := q.Result(rctx, c.jobID)
	cancel()
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet publish: %v\n", err)
		return exitError
	}
	if !ok {
		fmt.Fprintf(env.Stderr, "imagevet publish: no result for job %s\n", c.jobID)
		return exitNoVerdict
	}
	targets := fleet.Selected(res)
	if len(c.only) > 0 {
		targets = c.only
	}
	outs := fleet.PublishTo(ctx, q, res, targets, c.dryRun, false, c.service.RetryDelay)
	code := exitPass
	for _, o := range outs {
		if o.Err != nil {
			fmt.Fprintf(env.Stderr, "imagevet publish: %v\n", o.Err)
			code = exitError
		} else if o.Status == publish.StatusSkipped && code == exitPass {
			code = exitFail
		}
	}
	if !c.jsonOut {
		for _, o := range outs {
			if o.Err == nil {
				printOutcome(env.Stdout, o.Outcome)
			}
		}
		return code
	}
	list := make([]publish.Outcome, len(outs))
	for i, o := range outs {
		list[i] = o.Outcome
		if o.Err != nil {
			list[i].Status, list[i].Reason = "error", o.Err.Error()
		}
	}
	writeJSON(env.Stdout, list)
	return code
}

// printOutcome prints what a publication did, or would do, one step a line.
func printOutcome(w io.Writer, out publish.Outcome) {
	fmt.Fprintf(w, "%s in %s: %s", out.JobID, cloudRegion(out.Cloud, out.Region), out.Status)
	if out.Reason != "" {
		fmt.Fprintf(w, " (%s)", out.Reason)
	}
	fmt.Fprintln(w)
	for _, a := range out.Plan {
		fmt.Fprintf(w, "  %s\n", a)
	}
	for _, k := range out.Kept {
		fmt.Fprintf(w, "  kept in use: %s\n", k)
	}
	for _, pr := range out.Problems {
		fmt.Fprintf(w, "  problem (retried next run): %s\n", pr)
	}
	if out.Latest != "" {
		fmt.Fprintf(w, "  latest of %s: %s\n", out.Family, out.Latest)
	}
}

// cloudRegion names a cloud and its region for a human.
func cloudRegion(cloud, region string) string {
	if region == "" {
		return cloud
	}
	return cloud + " (" + region + ")"
}
