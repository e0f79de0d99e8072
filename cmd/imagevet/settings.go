package main

import (
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/publish"
	"github.com/imagevet/imagevet/queue"
	"github.com/imagevet/imagevet/watch"
	"github.com/imagevet/imagevet/watch/feed"
	"github.com/imagevet/imagevet/web"
	"github.com/imagevet/imagevet/worker"
	"github.com/imagevet/imagevet/worker/daemon"
)

// kind is how a setting's text is parsed, and the Go type it is bound to.
type kind int

const (
	kindString   kind = iota // *string
	kindInt                  // *int
	kindDuration             // *time.Duration, like 90s
	kindBool                 // *bool: a flag without a value is true
	kindFloat                // *float64
	kindBytes                // *int64, like 20G (worker.ParseBytes)
	kindList                 // *[]string: Sep-separated; a repeated flag adds, the first replaces
)

// zeroRule is what a numeric setting given as zero means.
type zeroRule int

const (
	// zeroAllowed: zero is a value like any other (or the command validates it).
	zeroAllowed zeroRule = iota
	// zeroRefused: the default is not zero and zero would silently mean it;
	// a zero from any source is refused.
	zeroRefused
	// zeroUnset: the default zero means "unset, use the package's default"; a
	// value given (by any source) must be positive.
	zeroUnset
)

// setting is one row of the settings table: a flag of one or more commands,
// its IMAGEVET_* variable and configuration-file key (either may be absent:
// per-invocation switches such as --json are flags only), its default as text,
// how its text is parsed and whether zero is refused. A command's value is the
// flag's, else the variable's (AltVar's when Var is unset), else the file's,
// else the default.
type setting struct {
	Flag     string
	Var      string
	AltVar   string
	Section  string // the file's section; "" for a top-level key
	Key      string // the file's key in Section; "" when the file cannot set it
	Commands []string
	Default  string
	// DefaultIs says how Default is found where it depends on the machine a
	// command runs on ("user@host of the caller"): the help prints it instead of
	// this machine's value, so help kept elsewhere (the package's) stays true.
	DefaultIs string
	Kind      kind
	// Sep separates a list's items in its variable, its file value's joined form
	// and each flag; "" means a list set by repeating the flag only.
	Sep    string
	Zero   zeroRule
	Secret bool // URL passwords are masked wherever the value is shown
	Usage  string
}

// name is the setting's key as the file spells it: section.key, or key; "" when
// the file cannot set it.
func (s setting) name() string {
	if s.Section == "" || s.Key == "" {
		return s.Key
	}
	return s.Section + "." + s.Key
}

// The commands sharing groups of settings.
var (
	natsClients    = []string{"submit", "watch", "status", "serve", "publish", "jobs", "cancel", "queue"}
	vetCommands    = []string{"worker", "run"}
	storeCommands  = []string{"worker", "run", "publish"}
	serviceLogging = []string{"worker", "watch", "serve", "publish"}
	queueCommands  = []string{"worker", "queue"}
)

// settingsTable is every setting of every command, each declared once: flags
// are registered from it, the help and `imagevet config` printed from it, the
// configuration file checked against it.
func settingsTable() []setting {
	var rows []setting
	add := func(commands []string, rs ...setting) {
		for _, r := range rs {
			r.Commands = commands
			if r.Kind == kindBool && r.Default == "" {
				r.Default = "false"
			}
			rows = append(rows, r)
		}
	}
	natsAndStoreSettings(add)
	workerSettings(add)
	runSettings(add)
	watchSettings(add)
	publishSettings(add)
	clientSettings(add)
	return rows
}

// adder puts rows, for commands, into the settings table.
type adder func(commands []string, rows ...setting)

// dur and itoa write defaults as the table's parsers read them.
func dur(d time.Duration) string { return d.String() }

func itoa(n int) string { return strconv.Itoa(n) }

// natsAndStoreSettings adds the NATS connection, which every command but run reads, and the
// state and image sources the worker, run and the publisher share.
func natsAndStoreSettings(add adder) {
	// NATS: the worker's default is its embedded server; every client's, that server.
	natsRows := func(url string) []setting {
		usage := "NATS server URLs, comma-separated"
		if url == "" {
			usage += "; none: an embedded server (--nats-port)"
		}
		return []setting{
			{Flag: "nats", Var: "IMAGEVET_NATS_URL", Section: "nats", Key: "url", Default: url, Secret: true, Usage: usage},
			{Flag: "nats-creds", Var: "IMAGEVET_NATS_CREDS", Section: "nats", Key: "creds", Usage: "NATS credentials file"},
			{Flag: "nats-nkey", Var: "IMAGEVET_NATS_NKEY", Section: "nats", Key: "nkey", Usage: "NATS nkey seed file"},
			{Flag: "nats-ca", Var: "IMAGEVET_NATS_TLS_CA", Section: "nats", Key: "tls_ca", Usage: "CA file verifying the NATS server"},
			{Flag: "nats-cert", Var: "IMAGEVET_NATS_TLS_CERT", Section: "nats", Key: "tls_cert", Usage: "TLS client certificate"},
			{Flag: "nats-key", Var: "IMAGEVET_NATS_TLS_KEY", Section: "nats", Key: "tls_key", Usage: "TLS client key"},
		}
	}
	add([]string{"worker"}, natsRows("")...)
	add(natsClients, natsRows(defaultNATSURL)...)

	// The state and the image sources the worker, run and the publisher share.
	add(storeCommands,
		setting{Flag: "state-dir", Var: "IMAGEVET_STATE_DIR", Key: "state_dir", Default: worker.DefaultConfig().StateDir,
			Usage: "the worker's state: per-job files and the image cache (which the publisher reads)"},
		setting{Flag: "image-root", Var: "IMAGEVET_IMAGE_ROOTS", Key: "image_roots", Kind: kindList, Sep: ":",
			Usage: "directory file sources may come from; repeatable, replaces the variable's list (colon-separated)"})
}

// workerSettings adds the worker's: its vetting settings (which run shares), the service's,
// the queue's it may apply, and the services' logs.
func workerSettings(add adder) {
	wd := worker.DefaultConfig()
	// The worker's vetting settings, which run shares.
	add(vetCommands,
		setting{Flag: "worker-id", Var: "IMAGEVET_WORKER_ID", Section: "worker", Key: "worker_id", Default: wd.WorkerID,
			DefaultIs: "this host's name", Usage: "worker id in domain names and results"},
		setting{Flag: "accel", Var: "IMAGEVET_ACCEL", Section: "worker", Key: "accel", Default: wd.Accel, Usage: "auto, kvm or tcg"},
		setting{Flag: "libvirt-uri", Var: "IMAGEVET_LIBVIRT_URI", Section: "worker", Key: "libvirt_uri", Default: wd.LibvirtURI,
			Usage: "libvirt connection URI"},
		setting{Flag: "domain-prefix", Var: "IMAGEVET_DOMAIN_PREFIX", Section: "worker", Key: "domain_prefix", Default: wd.DomainPrefix,
			Usage: "prefix of every domain this worker creates"},
		setting{Flag: "cache-max", Var: "IMAGEVET_CACHE_MAX", Section: "worker", Key: "cache_max", Default: worker.FormatBytes(wd.CacheMax),
			Kind: kindBytes, Usage: "image cache cap, e.g. 20G or 512M; least recently used images no job uses are evicted"},
		setting{Flag: "tcg-factor", Var: "IMAGEVET_TCG_FACTOR", Section: "worker", Key: "tcg_factor",
			Default: strconv.FormatFloat(wd.TCGFactor, 'g', -1, 64), Kind: kindFloat,
			Usage: "multiply boot/cloud-init/command timeouts under TCG"},
		setting{Flag: "max-total", Var: "IMAGEVET_MAX_TOTAL", Section: "worker", Key: "max_total", Default: wd.MaxTimeouts.Total.D().String(),
			Kind: kindDuration, Usage: "largest timeouts.total a job may ask for"},
		setting{Flag: "max-boot", Var: "IMAGEVET_MAX_BOOT", Section: "worker", Key: "max_boot", Default: wd.MaxTimeouts.Boot.D().String(),
			Kind: kindDuration, Usage: "largest timeouts.boot a job may ask for"},
		setting{Flag: "max-cloud-init", Var: "IMAGEVET_MAX_CLOUD_INIT", Section: "worker", Key: "max_cloud_init",
			Default: wd.MaxTimeouts.CloudInit.D().String(), Kind: kindDuration, Usage: "largest timeouts.cloud_init a job may ask for"},
		setting{Flag: "max-command", Var: "IMAGEVET_MAX_COMMAND", Section: "worker", Key: "max_command",
			Default: wd.MaxTimeouts.Command.D().String(), Kind: kindDuration, Usage: "largest timeouts.command a job may ask for"},
		setting{Flag: "max-fetch", Var: "IMAGEVET_MAX_FETCH", Section: "worker", Key: "max_fetch", Default: wd.MaxTimeouts.Fetch.D().String(),
			Kind: kindDuration, Usage: "largest timeouts.fetch a job may ask for"},
		setting{Flag: "inspect", Var: "IMAGEVET_INSPECT", Section: "worker", Key: "inspect", Default: strconv.FormatBool(wd.Inspect),
			Kind: kindBool, Usage: "look inside each image offline with libguestfs beside its boot (the identity and hygiene checks; docs/inspection.md)"},
		setting{Flag: "inspect-timeout", Var: "IMAGEVET_INSPECT_TIMEOUT", Section: "worker", Key: "inspect_timeout",
			Default: wd.InspectTimeout.String(), Kind: kindDuration, Zero: zeroRefused,
			Usage: "bound of one inspection on a KVM host, scaled by --tcg-factor under TCG"},
		setting{Flag: "keyring", Var: "IMAGEVET_KEYRING", Key: "keyring", Usage: "OpenPGP keyring every checksum list must be signed with"})

	// The worker as a service.
	add([]string{"worker"},
		setting{Flag: "concurrency", Var: "IMAGEVET_CONCURRENCY", Section: "worker", Key: "concurrency",
			Default: itoa(daemon.DefaultConcurrency), Kind: kindInt, Zero: zeroRefused, Usage: "jobs run at once"},
		setting{Flag: "memory-reserve", Var: "IMAGEVET_MEMORY_RESERVE_MIB", Section: "worker", Key: "memory_reserve_mib",
			Default: itoa(daemon.DefaultMemoryReserveMiB), Kind: kindInt, Zero: zeroRefused, Usage: "MiB of MemAvailable the host keeps for itself"},
		setting{Flag: "memory-overhead", Var: "IMAGEVET_MEMORY_OVERHEAD_MIB", Section: "worker", Key: "memory_overhead_mib",
			Default: itoa(daemon.DefaultMemoryOverheadMiB), Kind: kindInt, Zero: zeroRefused, Usage: "MiB added to each job's memory for the emulator"},
		setting{Flag: "admission-hold", Var: "IMAGEVET_ADMISSION_HOLD", Section: "worker", Key: "admission_hold",
			Default: dur(daemon.DefaultAdmissionHold), Kind: kindDuration, Zero: zeroRefused,
			Usage: "how long a job waits for memory before it is handed back"},
		setting{Flag: "grace", Var: "IMAGEVET_GRACE", Section: "worker", Key: "grace", Default: dur(daemon.DefaultGracePeriod),
			Kind: kindDuration, Zero: zeroRefused, Usage: "time running jobs get to finish on shutdown"},
		setting{Flag: "nats-port", Var: "IMAGEVET_NATS_PORT", Section: "worker", Key: "nats_port", Default: itoa(daemon.DefaultEmbeddedPort),
			Kind: kindInt, Zero: zeroRefused, Usage: "embedded server port on 127.0.0.1"},
		setting{Flag: "nats-store", Var: "IMAGEVET_NATS_STORE", Section: "worker", Key: "nats_store",
			Usage: "embedded server data directory, default STATE-DIR/nats"},
		setting{Flag: "metrics", Var: "IMAGEVET_METRICS_ADDR", Section: "worker", Key: "metrics",
			Usage: "serve /metrics and /healthz here, e.g. 127.0.0.1:9464"})

	// The queue's settings, which a first worker or `queue setup` applies; zero
	// (unset) is the queue package's default.
	add(queueCommands,
		setting{Flag: "ack-wait", Var: "IMAGEVET_ACK_WAIT", Section: "queue", Key: "ack_wait", Kind: kindDuration, Zero: zeroUnset,
			Usage: fmt.Sprintf("redelivery timeout of a job without heartbeat (default %s)", queue.DefaultAckWait)},
		setting{Flag: "max-deliver", Var: "IMAGEVET_MAX_DELIVER", Section: "queue", Key: "max_deliver", Kind: kindInt, Zero: zeroUnset,
			Usage: fmt.Sprintf("attempts of one job before a final error (default %d)", queue.DefaultMaxDeliver)},
		setting{Flag: "results-max-age", Var: "IMAGEVET_RESULTS_MAX_AGE", Section: "queue", Key: "results_max_age", Kind: kindDuration,
			Zero: zeroUnset, Usage: fmt.Sprintf("how long results and console logs are kept (default %s)", queue.DefaultResultsMaxAge)},
		setting{Flag: "replicas", Var: "IMAGEVET_REPLICAS", Section: "queue", Key: "replicas", Kind: kindInt, Zero: zeroUnset,
			Usage: "replicas of every stream, bucket and the consumer: 3 on a three-node cluster (default 1)"})

	// Logs: the services' and run's (quieter by default).
	logLevel := setting{Flag: "log-level", Var: "IMAGEVET_LOG_LEVEL", Section: "log", Key: "level", Default: "info",
		Usage: "debug, info, warn or error"}
	add(serviceLogging, logLevel,
		setting{Flag: "log-json", Var: "IMAGEVET_LOG_JSON", Section: "log", Key: "json", Kind: kindBool, Usage: "JSON logs"})
	logLevel.Default = "warn"
	add([]string{"run"}, logLevel)
}

// runSettings adds run's own: its outputs and a job built from flags.
func runSettings(add adder) {
	// run: one image on this host, its outputs, and a job built from flags.
	add([]string{"run"},
		setting{Flag: "vcpus", Var: "IMAGEVET_VCPUS", Section: "run", Key: "vcpus", Default: itoa(defaultRunVCPUs(runtime.NumCPU())),
			DefaultIs: "2, or this host's CPU count when lower", Kind: kindInt, Zero: zeroRefused, Usage: "virtual CPUs with --image (2, or the host's count when it has fewer)"},
		setting{Flag: "memory", Var: "IMAGEVET_MEMORY_MIB", Section: "run", Key: "memory_mib", Default: itoa(jobs.DefaultMemoryMiB),
			Kind: kindInt, Zero: zeroRefused, Usage: "memory in MiB with --image"},
		setting{Flag: "json", Kind: kindBool, Usage: "print the result as JSON instead of a table"},
		setting{Flag: "keep", Kind: kindBool, Usage: "leave a failed machine running and print how to reach it"},
		setting{Flag: "console", Kind: kindBool, Usage: "stream the guest's serial console to stderr"},
		setting{Flag: "quiet", Kind: kindBool, Usage: "no progress lines"},
		setting{Flag: "result", Usage: "also write the result JSON to this file"},
		setting{Flag: "junit", Usage: "write a JUnit XML report to this file"},
		setting{Flag: "console-log", Usage: "copy the whole console log to this file"},
		setting{Flag: "previous", Usage: "compare the verdict with this earlier result (RESULT.json of the image's previous release), as a worker compares a family's releases"},
		setting{Flag: "image", Usage: "image file or URL to vet (instead of JOB.json)"},
		setting{Flag: "format", Default: "qcow2", Usage: "claimed image format with --image: qcow2 or raw"},
		setting{Flag: "checksum", Usage: "expected sha256:HEX or sha512:HEX with --image (a local file is hashed when omitted)"},
		setting{Flag: "user", Usage: "the image's default login user with --image (debian, ubuntu, cloud-user…)"},
		setting{Flag: "datasource", Usage: "seed with --image: nocloud, configdrive or metadata (default nocloud; configdrive for ignition)"},
		setting{Flag: "provisioning", Usage: "with --image: cloud-init (default) or ignition (Flatcar-style images; --user defaults to core)"},
		setting{Flag: "firmware", Default: "bios", Usage: "with --image: bios or uefi"},
		setting{Flag: "hostname", Usage: "hostname the seed asks for with --image"},
		setting{Flag: "id", Usage: "job id with --image (default from the file name)"},
		setting{Flag: "boot-timeout", Kind: kindDuration, Zero: zeroUnset,
			Usage: "time to SSH on a KVM host with --image (scaled by --tcg-factor under TCG; default the job's)"},
		setting{Flag: "cmd", Kind: kindList, Usage: "command to run in the guest with --image; repeatable"})
}

// watchSettings adds watch's.
func watchSettings(add adder) {
	add([]string{"watch"},
		setting{Flag: "catalog", Var: "IMAGEVET_CATALOG", Section: "watch", Key: "catalog", Default: "catalog",
			Usage: "catalog file or directory"},
		setting{Flag: "family", Var: "IMAGEVET_WATCH_FAMILIES", Section: "watch", Key: "families", Kind: kindList, Sep: ",",
			Usage: "only these families, comma-separated keys; repeatable"},
		setting{Flag: "interval", Var: "IMAGEVET_WATCH_INTERVAL", Section: "watch", Key: "interval", Default: dur(watch.DefaultInterval),
			Kind: kindDuration, Zero: zeroRefused, Usage: "time between two polls of a family"},
		setting{Flag: "jitter", Var: "IMAGEVET_WATCH_JITTER", Section: "watch", Key: "jitter", Default: dur(watch.DefaultInterval / 10),
			Kind: kindDuration, Usage: "random spread of each wait, ± (at most the interval; 0: none)"},
		setting{Flag: "retry", Var: "IMAGEVET_WATCH_RETRY", Section: "watch", Key: "retry", Default: dur(watch.DefaultRetry),
			Kind: kindDuration, Zero: zeroRefused, Usage: "how soon a family whose feed failed is polled again"},
		setting{Flag: "request-timeout", Var: "IMAGEVET_WATCH_REQUEST_TIMEOUT", Section: "watch", Key: "request_timeout",
			Default: dur(feed.DefaultRequestTimeout), Kind: kindDuration, Zero: zeroRefused, Usage: "bound on each feed request"},
		setting{Flag: "attempts", Var: "IMAGEVET_WATCH_ATTEMPTS", Section: "watch", Key: "attempts", Default: itoa(watch.DefaultAttempts),
			Kind: kindInt, Zero: zeroRefused, Usage: "reads of a failing feed within one poll"},
		setting{Flag: "parallel", Var: "IMAGEVET_WATCH_PARALLEL", Section: "watch", Key: "parallel", Default: itoa(watch.DefaultParallelism),
			Kind: kindInt, Zero: zeroRefused, Usage: "families polled at once"},
		setting{Flag: "metrics", Var: "IMAGEVET_METRICS_ADDR", Section: "watch", Key: "metrics",
			Usage: "serve /metrics and /healthz here, e.g. 127.0.0.1:9465"},
		setting{Flag: "once", Var: "IMAGEVET_WATCH_ONCE", Kind: kindBool, Usage: "poll every family once and exit"},
		setting{Flag: "json", Kind: kindBool, Usage: "with --once, print the outcomes as JSON"})
}

// publishSettings adds publish's: its clouds and how it publishes to them.
func publishSettings(add adder) {
	add([]string{"publish"},
		setting{Flag: "os-cloud", Var: "IMAGEVET_OS_CLOUD", AltVar: "OS_CLOUD", Key: "clouds", Kind: kindList, Sep: ",",
			Usage: "[NAME=]ENTRY[@REGION]: a clouds.yaml entry to publish to, optionally named and in one region; repeatable, replaces the variable's list (comma-separated; else OS_CLOUD)"},
		setting{Flag: "os-client-config-file", Var: "OS_CLIENT_CONFIG_FILE", Section: "publish", Key: "os_client_config_file",
			Usage: "clouds.yaml to read instead of the usual places"},
		setting{Flag: "os-region", Var: "OS_REGION_NAME", Section: "publish", Key: "os_region",
			Usage: "region, or comma-separated regions each published to, for every cloud without @REGION"},
		setting{Flag: "os-cacert", Var: "OS_CACERT", Section: "publish", Key: "os_cacert", Usage: "CA file verifying the cloud's endpoints"},
		setting{Flag: "os-insecure", Var: "OS_INSECURE", Section: "publish", Key: "os_insecure", Kind: kindBool,
			Usage: "do not verify the clouds' TLS certificates: test clouds only"},
		setting{Flag: "os-timeout", Var: "IMAGEVET_OS_TIMEOUT", Section: "publish", Key: "os_timeout", Default: dur(2 * time.Minute),
			Kind: kindDuration, Zero: zeroRefused, Usage: "deadline of each cloud API call but the upload"},
		setting{Flag: "import-converts", Var: "IMAGEVET_PUBLISH_IMPORT_CONVERTS", Section: "publish", Key: "import_converts",
			Default: publish.ConvertsAuto,
			Usage:   "whether a cloud's Glance converts imports to raw (image_conversion plugin): auto (learnt from the first import stored converted), yes or no; for all clouds, or per cloud as NAME=VALUE,..."},
		setting{Flag: "upload-method", Var: "IMAGEVET_PUBLISH_UPLOAD_METHOD", Section: "publish", Key: "upload_method",
			Default: publish.UploadAuto,
			Usage:   "how the bytes reach Glance: auto (glance-direct import where offered, else a plain upload), import, or upload"},
		setting{Flag: "ack-wait", Var: "IMAGEVET_PUBLISH_ACK_WAIT", Section: "publish", Key: "ack_wait", Default: dur(publish.DefaultAckWait),
			Kind: kindDuration, Zero: zeroRefused, Usage: "redelivery timeout of a result without heartbeat"},
		setting{Flag: "retry-delay", Var: "IMAGEVET_PUBLISH_RETRY_DELAY", Section: "publish", Key: "retry_delay",
			Default: dur(publish.DefaultRetryDelay), Kind: kindDuration, Zero: zeroRefused,
			Usage: "wait before a publication that failed for a passing reason is tried again"},
		setting{Flag: "rotate-every", Var: "IMAGEVET_PUBLISH_ROTATE_EVERY", Section: "publish", Key: "rotate_every",
			Default: dur(publish.DefaultRotateEvery), Kind: kindDuration, Zero: zeroRefused,
			Usage: "bring every published family to its policy this often without a new release (deletes images whose last user went away, retries failed steps)"},
		setting{Flag: "job", Usage: "publish this job's result once and exit"},
		setting{Flag: "cloud", Kind: kindList, Usage: "with --job: publish to this cloud (by NAME) only; repeatable"},
		setting{Flag: "dry-run", Kind: kindBool, Usage: "with --job: print the plan (create, rename, hide, deactivate, delete), change nothing"},
		setting{Flag: "json", Kind: kindBool,
			Usage: "with --job: print the outcomes as a JSON list, one per cloud (status \"error\" with the reason for a cloud that failed)"})
}

// clientSettings adds the settings of submit, status, serve, jobs, cancel and queue setup.
func clientSettings(add adder) {
	add([]string{"submit"},
		setting{Flag: "timeout", Var: "IMAGEVET_SUBMIT_TIMEOUT", Section: "submit", Key: "timeout", Default: dur(time.Hour),
			Kind: kindDuration, Zero: zeroRefused, Usage: "with --wait, give up (exit 3) after this long"},
		setting{Flag: "wait", Kind: kindBool, Usage: "wait for the verdict, following progress"},
		setting{Flag: "junit", Usage: "with --wait, write a JUnit XML report to this file"},
		setting{Flag: "json", Kind: kindBool, Usage: "print the acceptance and result as JSON"},
		setting{Flag: "quiet", Kind: kindBool, Usage: "no progress lines"},
		setting{Flag: "rerun", Kind: kindBool, Usage: "vet the job again although it has a result; the new result replaces it as the next attempt"})

	add([]string{"status"},
		setting{Flag: "json", Kind: kindBool, Usage: "print results as JSON"},
		setting{Flag: "job", Usage: "show the result of this job id"},
		setting{Flag: "console", Usage: "print the full console log of this job id"},
		setting{Flag: "families", Kind: kindBool, Usage: "show only the image families: newest upstream release and its verdict"})

	add([]string{"serve"},
		setting{Flag: "listen", Var: "IMAGEVET_WEB_LISTEN", Section: "serve", Key: "listen", Default: web.DefaultListen,
			Usage: "host:port to serve the page on"},
		setting{Flag: "tls-cert", Var: "IMAGEVET_WEB_TLS_CERT", Section: "serve", Key: "tls_cert", Usage: "TLS certificate file: serve HTTPS"},
		setting{Flag: "tls-key", Var: "IMAGEVET_WEB_TLS_KEY", Section: "serve", Key: "tls_key", Usage: "TLS key file"},
		setting{Flag: "token-file", Var: "IMAGEVET_WEB_TOKEN_FILE", Section: "serve", Key: "token_file",
			Usage: "file holding the access token; required off loopback"})

	add([]string{"jobs"},
		setting{Flag: "json", Kind: kindBool, Usage: "print as JSON"},
		setting{Flag: "workers", Kind: kindBool, Usage: "list the live workers instead"})

	add([]string{"cancel"},
		setting{Flag: "by", Var: "IMAGEVET_CANCEL_BY", Section: "cancel", Key: "by", Default: whoAmI(),
			DefaultIs: "user@host of the caller", Usage: "who cancels, as the result shows"},
		setting{Flag: "reason", Usage: "why, as the result shows"},
		setting{Flag: "json", Kind: kindBool, Usage: "print the outcome as JSON"})

	add([]string{"queue"}, setting{Flag: "json", Kind: kindBool, Usage: "print the settings as JSON"})
}
