// Command imagevet decides whether a candidate cloud image is fit to publish: it boots
// the image under libvirt with a generated cloud-init seed, checks that it answers, and
// reports pass, fail or error.
//
//	imagevet run JOB.json | --image FILE --user NAME   vet one image here, no NATS
//	imagevet worker                                    serve jobs from NATS JetStream
//	imagevet submit JOB.json [--wait]                  queue a job (the CI acceptance stage)
//	imagevet watch [--once]                            queue new vendor releases of the catalog's families
//	imagevet status [IMAGE]                            latest verdict per image, newest release per family
//	imagevet serve                                     the operators' web page
//	imagevet publish [--job ID [--dry-run]]            put passed images into Glance
//	imagevet jobs | cancel ID | queue setup             see and act on the queue
//	imagevet config [COMMAND]                          the settings a command reads, and from where
//	imagevet version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// Env is what a subcommand may touch of the process: its output streams and
// environment. Tests pass their own.
type Env struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	Getenv         func(string) string
	// config is the configuration file the settings table falls back to; nil
	// for none.
	config *configFile
}

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// command is one row of the command table: its name, its line in the top-level
// usage (synopsis and summary; more lines when it has more forms) and what runs it.
// Each command's flags are the settings table's rows naming it (settings.go).
type command struct {
	name  string
	usage [][2]string
	run   func(ctx context.Context, args []string, env Env) int
}

// commands is the command table, in the order the usage lists them.
func commands() []command {
	return []command{
		{"run", [][2]string{{"run JOB.json", "vet one image on this host (no NATS); exit 0 pass, 1 fail, 2 error"},
			{"run --image FILE ...", "the same, job built from flags (see imagevet run -h)"}}, cmdRun},
		{"worker", [][2]string{{"worker", "serve jobs from NATS JetStream (embedded server without --nats)"}}, cmdWorker},
		{"submit", [][2]string{{"submit JOB.json", "queue a job; --wait follows it to its verdict"}}, cmdSubmit},
		{"watch", [][2]string{{"watch [--once]", "follow the catalog's vendor feeds, queue each new release"}}, cmdWatch},
		{"status", [][2]string{{"status [IMAGE]", "latest verdict per image name, newest release per family"}}, cmdStatus},
		{"serve", [][2]string{{"serve", "the operators' web page (127.0.0.1:8080)"}}, cmdServe},
		{"publish", [][2]string{{"publish", "put passed images into OpenStack Glance, rotate families;"},
			{"", "--job ID publishes one result, --dry-run prints the plan"}}, cmdPublish},
		{"jobs", [][2]string{{"jobs", "queued and running jobs (attempt, worker, stage, age); --workers"}}, cmdJobs},
		{"cancel", [][2]string{{"cancel JOB-ID", "stop a queued or running job with an error result naming who"}}, cmdCancel},
		{"queue", [][2]string{{"queue setup", "create or change the queue's settings (replicas, ack wait, attempts)"}}, cmdQueue},
	}
}

// usage is the top-level help, built from the command table.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: imagevet COMMAND [flags]\n\ncommands:\n")
	line := func(synopsis, summary string) { fmt.Fprintf(&b, "  %-22s  %s\n", synopsis, summary) }
	for _, c := range commands() {
		for _, u := range c.usage {
			line(u[0], u[1])
		}
	}
	line("config [COMMAND]", "the settings COMMAND reads: value and where it came from")
	line("version", "print the version")
	b.WriteString(`
Settings come from flags, then IMAGEVET_* variables, then the configuration file
(--config FILE or IMAGEVET_CONFIG; /etc/imagevet/imagevet.yaml when it exists), then
defaults; COMMAND -h names each flag's variable (per-invocation flags such as --json
have none), its value and where that came from; imagevet config names the file keys.
`)
	return b.String()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// dispatch runs the named subcommand and returns the process exit code.
func dispatch(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage())
		return 2
	}
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(env.Stdout, "imagevet", buildVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage())
		return 0
	}
	// The configuration file: --config (anywhere), IMAGEVET_CONFIG, or the default
	// when it exists; a bad one stops every command naming file, line and key.
	path, required, args, err := configPath(args, env.Getenv)
	if err != nil || len(args) == 0 {
		fmt.Fprintf(env.Stderr, "imagevet: %v\n\n%s", err, usage())
		return exitError
	}
	cf, err := loadConfig(path)
	if err != nil && !required && errors.Is(err, fs.ErrNotExist) {
		cf, err = nil, nil
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet: config: %v\n", err)
		return exitError
	}
	cmd, rest := args[0], args[1:]
	env.config = cf
	if cmd == "config" {
		return cmdConfig(rest, env)
	}
	for _, c := range commands() {
		if c.name == cmd {
			return c.run(ctx, rest, env)
		}
	}
	fmt.Fprintf(env.Stderr, "imagevet: unknown command %q\n\n%s", cmd, usage())
	return exitError
}

// buildVersion reports the -ldflags version, else the module version or VCS revision.
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}
