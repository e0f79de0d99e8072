package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker"
)

// Exit codes of run and submit.
const (
	exitPass    = 0
	exitFail    = 1
	exitError   = 2
	exitTimeout = 3
)

const runUsage = `usage: imagevet run [flags] JOB.json|-
       imagevet run [flags] --image FILE --user NAME [--format qcow2] [--checksum sha256:HEX] ...

Vets one image on this host, without NATS: fetch, seed, boot under libvirt, checks.
Exit status: 0 pass, 1 fail, 2 error.

`

// runFlags are the settings of imagevet run beyond the worker's own.
type runFlags struct {
	jsonOut, keep, streamConsole, quiet bool
	resultFile, junitFile, consoleFile  string
	logLevel                            string
	// previous is an earlier result to compare with (--previous).
	previous string
	// A job built from flags instead of a file.
	image, format, checksum, user, datasource, firmware, hostname, id string
	provisioning                                                      string
	vcpus, memory                                                     int
	bootTimeout                                                       time.Duration
	commands                                                          []string
}

// bind is where run's own rows of the settings table go.
func (f *runFlags) bind() map[string]any {
	return map[string]any{"json": &f.jsonOut, "keep": &f.keep, "console": &f.streamConsole, "quiet": &f.quiet,
		"result": &f.resultFile, "junit": &f.junitFile, "console-log": &f.consoleFile, "log-level": &f.logLevel,
		"image": &f.image, "format": &f.format, "checksum": &f.checksum, "user": &f.user, "datasource": &f.datasource,
		"provisioning": &f.provisioning, "firmware": &f.firmware, "hostname": &f.hostname, "id": &f.id,
		"vcpus": &f.vcpus, "memory": &f.memory, "boot-timeout": &f.bootTimeout, "cmd": &f.commands,
		"previous": &f.previous}
}

// runInvocation is what one `imagevet run` was told, parsed and validated.
type runInvocation struct {
	flags runFlags
	cfg   worker.Config
	job   jobs.Job
	log   *slog.Logger
	// previous is the result the verdict is compared with, or nil.
	previous *jobs.Result
}

// parseRun parses run's flags and variables and loads the job; configuration and
// job problems are reported together, configuration first. A command line the flag
// package refused (or -h) is a *flagError.
func parseRun(ctx context.Context, args []string, env Env) (runInvocation, error) {
	p := runInvocation{cfg: worker.DefaultConfig()}
	cfg, f := &p.cfg, &p.flags
	rest, err := parseCommand("run", runUsage, args, env, merged(vetBindings(cfg), f.bind()))
	if _, stop := flagStop(err); stop {
		return p, err
	}
	cfg.KeepFailed = f.keep
	job, jobErr := loadRunJob(ctx, rest, env.Stdin, f, cfg)
	p.job = job
	log, logErr := newLogger(env.Stderr, f.logLevel, false)
	p.log = log
	prev, prevErr := readPreviousResult(f.previous)
	p.previous = prev
	return p, errors.Join(err, cfg.Validate(), logErr, jobErr, prevErr)
}

// readPreviousResult reads the result --previous names (nil without one),
// bounded by jobs.MaxDocumentSize.
func readPreviousResult(path string) (*jobs.Result, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--previous: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, jobs.MaxDocumentSize+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("--previous %s: %w", path, err)
	case len(data) > jobs.MaxDocumentSize:
		return nil, fmt.Errorf("--previous %s: larger than %d bytes", path, jobs.MaxDocumentSize)
	}
	r, err := jobs.DecodeResult(data)
	if err != nil {
		return nil, fmt.Errorf("--previous %s: %w", path, err)
	}
	return &r, nil
}

// defaultRunVCPUs is run's vCPU count on a host with hostCPUs: 2 (a Debian 12 guest
// under TCG takes 1.16-1.38x as long with 1), never more than the host has.
func defaultRunVCPUs(hostCPUs int) int { return max(1, min(2, hostCPUs)) }

func cmdRun(ctx context.Context, args []string, env Env) int {
	p, err := parseRun(ctx, args, env)
	if code, stop := flagStop(err); stop {
		return code
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet run: %v\n", err)
		return exitError
	}
	cfg, f, job, log := p.cfg, &p.flags, p.job, p.log
	runner, closeRunner, err := newRunner(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet run: %v\n", err)
		return exitError
	}
	defer closeRunner()

	view := newProgressView(env.Stderr, f.quiet)
	var stopConsole func()
	progress := func(p jobs.Progress) {
		view.event(p)
		if f.streamConsole && p.Stage == "boot" && p.Event == "start" && stopConsole == nil {
			stopConsole = streamConsoleOf(ctx, cfg.StateDir, job.ID, env.Stderr)
		}
	}
	res := runner.Run(ctx, job, 1, progress)
	if stopConsole != nil {
		stopConsole()
	}
	view.close()
	if p.previous != nil && (res.Verdict == jobs.VerdictPass || res.Verdict == jobs.VerdictFail) {
		inspect.Attach(&res, *p.previous, job.Regression)
	}

	if err := writeRunOutputs(res, f); err != nil {
		fmt.Fprintf(env.Stderr, "imagevet run: %v\n", err)
	}
	if f.jsonOut {
		data, _ := jobs.MarshalResult(res)
		fmt.Fprintln(env.Stdout, string(data))
	} else {
		printResultTable(env.Stdout, res)
	}
	return exitCode(res.Verdict)
}

// loadRunJob reads JOB.json (stdin for "-"), or builds a job from --image flags.
func loadRunJob(ctx context.Context, args []string, stdin io.Reader, f *runFlags, cfg *worker.Config) (jobs.Job, error) {
	switch {
	case len(args) == 1 && f.image == "":
		return readJobFile(args[0], stdin)
	case len(args) == 0 && f.image != "":
		return jobFromFlags(ctx, f, cfg)
	default:
		return jobs.Job{}, errors.New("give either JOB.json or --image FILE --user NAME (see imagevet run -h)")
	}
}

func jobFromFlags(ctx context.Context, f *runFlags, cfg *worker.Config) (jobs.Job, error) {
	source := f.image
	checksum := f.checksum
	if !strings.Contains(source, "://") {
		abs, err := filepath.Abs(source)
		if err != nil {
			return jobs.Job{}, err
		}
		source = abs
		cfg.ImageRoots = append(cfg.ImageRoots, filepath.Dir(abs))
		if checksum == "" {
			sum, err := sha256File(ctx, abs)
			if err != nil {
				return jobs.Job{}, fmt.Errorf("--image: %w", err)
			}
			checksum = "sha256:" + sum
		}
	}
	id := f.id
	if id == "" {
		id = jobIDFromName(filepath.Base(f.image))
	}
	job := jobs.Job{
		Version:  jobs.Version,
		ID:       id,
		Image:    jobs.ImageSpec{Source: source, Format: f.format, Checksum: checksum},
		Machine:  jobs.MachineSpec{Firmware: f.firmware, VCPUs: f.vcpus, MemoryMiB: f.memory},
		Guest:    jobs.GuestSpec{User: f.user, Provisioning: f.provisioning, Datasource: f.datasource, Hostname: f.hostname},
		Timeouts: jobs.Timeouts{Boot: jobs.Duration(f.bootTimeout)},
	}
	for _, c := range f.commands {
		job.Commands = append(job.Commands, jobs.Command{Run: c})
	}
	if err := job.Validate(); err != nil {
		return jobs.Job{}, err
	}
	return job, nil
}

// jobIDFromName makes a valid job id from a file name.
func jobIDFromName(name string) string {
	name = strings.TrimSuffix(name, filepath.Ext(name))
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 100 {
			break
		}
	}
	id := strings.TrimLeft(b.String(), "-_")
	if id == "" {
		id = "image"
	}
	return id + "-" + time.Now().UTC().Format("20060102t150405")
}

func sha256File(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", err
		}
	}
}

// writeRunOutputs writes the files run was asked for.
func writeRunOutputs(res jobs.Result, f *runFlags) error {
	var errs []error
	if f.resultFile != "" {
		data, _ := jobs.MarshalResult(res)
		errs = append(errs, os.WriteFile(f.resultFile, append(data, '\n'), 0o644))
	}
	if f.junitFile != "" {
		errs = append(errs, writeJUnitFile(f.junitFile, res))
	}
	if f.consoleFile != "" && res.ConsoleLog != "" {
		data, err := os.ReadFile(res.ConsoleLog)
		if err == nil {
			err = os.WriteFile(f.consoleFile, data, 0o644)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func writeJUnitFile(path string, res jobs.Result) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := jobs.WriteJUnit(out, res); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func exitCode(v jobs.Verdict) int {
	switch v {
	case jobs.VerdictPass:
		return exitPass
	case jobs.VerdictFail:
		return exitFail
	default:
		return exitError
	}
}

// newLogger returns a text (or JSON) slog logger at the named level; an unknown
// level is an error naming --log-level.
func newLogger(w io.Writer, level string, jsonFormat bool) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug", "info", "warn", "error":
		l.UnmarshalText([]byte(level))
	default:
		return nil, fmt.Errorf("log-level: %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if jsonFormat {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
