package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/publish"
	"github.com/imagevet/imagevet/worker/image"
)

const publishUsage = `usage: imagevet publish [flags]                  serve: publish passed results as they arrive
       imagevet publish --job JOB-ID [--dry-run]  publish one job's result (or print the plan)

Puts images whose job passed and asks for it (publish.glance) into OpenStack Glance:
exactly the vetted bytes (from the worker's image cache under --state-dir, else from
the result's image source, both digests verified), under the family's Latest name;
the release it replaces is renamed with its version and made community (or hidden),
releases past the family's policy are deactivated and deleted once no server and no
volume uses them. Credentials as every OpenStack tool takes them: --os-cloud (a
clouds.yaml entry, OS_CLOUD) or the OS_* variables (password or application
credential), --os-cacert for a private CA. The exit status of a one-shot run is 0
when the image is in Glance (or the plan printed), 1 when the result is not
publishable, 2 on errors, 4 when the job has no result.

`

// publishConfig is imagevet publish's configuration, from flags and environment.
type publishConfig struct {
	nats       natsFlags
	creds      publish.Credentials
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

func (c *publishConfig) register(fs *flag.FlagSet, env Env) *envFlags {
	ef := &envFlags{fs: fs, env: env}
	c.nats.register(fs, env, defaultNATSURL)
	fs.StringVar(&c.creds.Cloud, "os-cloud", envOr(env, "IMAGEVET_OS_CLOUD", env.Getenv("OS_CLOUD")), "clouds.yaml entry (IMAGEVET_OS_CLOUD, OS_CLOUD)")
	fs.StringVar(&c.creds.CloudsFile, "os-client-config-file", env.Getenv("OS_CLIENT_CONFIG_FILE"), "clouds.yaml to read instead of the usual places (OS_CLIENT_CONFIG_FILE)")
	fs.StringVar(&c.creds.Region, "os-region", env.Getenv("OS_REGION_NAME"), "region (OS_REGION_NAME)")
	fs.StringVar(&c.creds.CACert, "os-cacert", env.Getenv("OS_CACERT"), "CA file verifying the cloud's endpoints (OS_CACERT)")
	ef.durationVar(&c.creds.RequestTimeout, "os-timeout", "IMAGEVET_OS_TIMEOUT", 2*time.Minute, "deadline of each cloud API call but the upload")
	fs.StringVar(&c.stateDir, "state-dir", envOr(env, "IMAGEVET_STATE_DIR", "/var/lib/imagevet"), "the worker's state directory, whose image cache holds the vetted bytes (IMAGEVET_STATE_DIR)")
	if v := env.Getenv("IMAGEVET_IMAGE_ROOTS"); v != "" {
		c.imageRoots = filepath.SplitList(v)
	}
	fs.Func("image-root", "directory file sources may come from; repeatable (IMAGEVET_IMAGE_ROOTS, colon-separated)", func(s string) error {
		c.imageRoots = append(c.imageRoots, s)
		return nil
	})
	fs.StringVar(&c.upload, "upload-method", envOr(env, "IMAGEVET_PUBLISH_UPLOAD_METHOD", publish.UploadAuto), "how the bytes reach Glance: auto (glance-direct import where offered, else a plain upload), import, or upload (IMAGEVET_PUBLISH_UPLOAD_METHOD)")
	fs.StringVar(&c.jobID, "job", "", "publish this job's result once and exit")
	fs.BoolVar(&c.dryRun, "dry-run", false, "with --job: print the plan (create, rename, hide, deactivate, delete), change nothing")
	fs.BoolVar(&c.jsonOut, "json", false, "with --job: print the outcome as JSON")
	ef.durationVar(&c.service.AckWait, "ack-wait", "IMAGEVET_PUBLISH_ACK_WAIT", publish.DefaultAckWait, "redelivery timeout of a result without heartbeat")
	ef.durationVar(&c.service.RetryDelay, "retry-delay", "IMAGEVET_PUBLISH_RETRY_DELAY", publish.DefaultRetryDelay, "wait before a publication that failed for a passing reason is tried again")
	ef.durationVar(&c.service.RotateEvery, "rotate-every", "IMAGEVET_PUBLISH_ROTATE_EVERY", publish.DefaultRotateEvery, "bring every published family to its policy this often without a new release (deletes images whose last user went away, retries failed steps)")
	fs.StringVar(&c.logLevel, "log-level", envOr(env, "IMAGEVET_LOG_LEVEL", "info"), "debug, info, warn or error (IMAGEVET_LOG_LEVEL)")
	ef.boolVar(&c.logJSON, "log-json", "IMAGEVET_LOG_JSON", "JSON logs")
	return ef
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
	if c.creds.Cloud == "" && c.creds.CloudsFile != "" {
		errs = append(errs, errors.New("os-client-config-file: needs --os-cloud (OS_CLOUD) to name the entry"))
	}
	return errors.Join(errs...)
}

func cmdPublish(ctx context.Context, args []string, env Env) int {
	var cfg publishConfig
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() { fmt.Fprint(env.Stderr, publishUsage); fs.PrintDefaults() }
	ef := cfg.register(fs, env)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "imagevet publish: unexpected arguments %q\n", fs.Args())
		return exitError
	}
	if err := errors.Join(append(ef.errs, cfg.validate())...); err != nil {
		fmt.Fprintf(env.Stderr, "imagevet publish: %v\n", err)
		return exitError
	}
	log, err := newLogger(env.Stderr, cfg.logLevel, cfg.logJSON)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet publish: %v\n", err)
		return exitError
	}
	fail := func(err error) int {
		fmt.Fprintf(env.Stderr, "imagevet publish: %v\n", err)
		return exitError
	}
	nc, err := jobs.Connect(cfg.nats.options("imagevet publish"))
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	q, err := jobs.OpenQueue(octx, nc)
	cancel()
	if err != nil {
		return fail(err)
	}
	store, err := image.NewStore(image.StoreConfig{Dir: filepath.Join(cfg.stateDir, "cache"), FileRoots: cfg.imageRoots, Logger: log})
	if err != nil {
		return fail(fmt.Errorf("image cache: %w", err))
	}
	cloud, err := publish.Login(ctx, cfg.creds)
	if err != nil {
		return fail(err)
	}
	p, err := publish.New(publish.Config{Cloud: cloud, Store: store, Queue: q, UploadMethod: cfg.upload, Logger: log})
	if err != nil {
		return fail(err)
	}
	if cfg.jobID == "" {
		cfg.service.Logger = log
		if err := publish.Serve(ctx, q, p, cfg.service); err != nil {
			return fail(err)
		}
		return 0
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	res, ok, err := q.Result(rctx, cfg.jobID)
	cancel()
	if err != nil {
		return fail(err)
	}
	if !ok {
		fmt.Fprintf(env.Stderr, "imagevet publish: no result for job %s\n", cfg.jobID)
		return exitNoVerdict
	}
	out, err := p.Publish(ctx, res, cfg.dryRun)
	if err != nil {
		return fail(err)
	}
	if cfg.jsonOut {
		writeJSON(env.Stdout, out)
	} else {
		printOutcome(env.Stdout, out)
	}
	if out.Status == publish.StatusSkipped {
		return exitFail
	}
	return exitPass
}

// printOutcome prints what a publication did, or would do, one step a line.
func printOutcome(w io.Writer, out publish.Outcome) {
	fmt.Fprintf(w, "%s: %s", out.JobID, out.Status)
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
