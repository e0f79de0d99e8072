// Package sshprobe waits for a booting guest's SSH server and logs in: TCP
// connect, SSH banner, key exchange with a pinned host key, public-key auth and a
// trivial command, each stage timed and every failure classified by the stage it
// reached. It also runs commands on the resulting connection under a context.
package sshprobe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/jobs"
)

// Stage is one step of an SSH login, in order.
type Stage string

// Stages of a probe attempt.
const (
	StageConnect   Stage = "connect"   // TCP connect
	StageBanner    Stage = "banner"    // the server's "SSH-2.0-..." line
	StageHandshake Stage = "handshake" // key exchange and host key check
	StageAuth      Stage = "auth"      // public-key authentication
	StageCommand   Stage = "command"   // the trivial command
)

var stageOrder = []Stage{StageConnect, StageBanner, StageHandshake, StageAuth, StageCommand}

// Rank is the stage's place in the order a login goes through, from 0 for
// StageConnect; -1 for no stage (""), so any stage ranks above none.
func (s Stage) Rank() int { return slices.Index(stageOrder, s) }

// Sentinel errors a ProbeError may wrap; test with errors.Is.
var (
	// ErrBannerMissing: the TCP connection was accepted but closed or silent
	// before the SSH banner. Through qemu's user-mode forward this is what "no
	// sshd listening in the guest yet" looks like.
	ErrBannerMissing = errors.New("no SSH banner")
	// ErrHostKeyMismatch: the guest presented a host key other than the one we
	// gave it; see HostKeyMismatchError.
	ErrHostKeyMismatch = errors.New("host key not the one we gave the guest")
	// ErrAuthRejected: the guest refused our client key.
	ErrAuthRejected = errors.New("the guest did not accept our key")
)

// HostKeyMismatchError describes the unexpected host key.
type HostKeyMismatchError struct {
	// Got is the key the server presented.
	Got ssh.PublicKey
	// Want lists the fingerprints of the pinned keys, when known.
	Want []string
	// Err is what the host key callback returned.
	Err error
}

func (e *HostKeyMismatchError) Error() string {
	msg := fmt.Sprintf("%s: got %s %s", ErrHostKeyMismatch, e.Got.Type(), ssh.FingerprintSHA256(e.Got))
	if len(e.Want) > 0 {
		msg += ", want " + strings.Join(e.Want, " or ")
	}
	var inner *HostKeyMismatchError
	if e.Err != nil && !errors.As(e.Err, &inner) {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrHostKeyMismatch) true.
func (e *HostKeyMismatchError) Is(target error) bool { return target == ErrHostKeyMismatch }

// Unwrap returns the callback's error.
func (e *HostKeyMismatchError) Unwrap() error { return e.Err }

// ProbeError is a failed probe: the stage the last meaningful attempt reached and
// its error. Its message is one line.
type ProbeError struct {
	Stage    Stage
	Attempts int
	Err      error
}

func (e *ProbeError) Error() string {
	return fmt.Sprintf("ssh %s: %s (after %d attempts)", e.Stage, jobs.OneLine(e.Err.Error(), 0), e.Attempts)
}

// Unwrap returns the attempt's error.
func (e *ProbeError) Unwrap() error { return e.Err }

// ProbeConfig says where and how to log in.
type ProbeConfig struct {
	// Addr is host:port of the guest's SSH server (a loopback forward).
	Addr string
	User string
	// Signers are the client keys offered, in order.
	Signers []ssh.Signer
	// HostKeys pins the guest's host key to one of these keys. It also narrows
	// the host key algorithms offered to these key types, so a server with other
	// keys of its own still presents ours.
	HostKeys []ssh.PublicKey
	// Vouch is asked about a host key not in HostKeys: a nil error accepts it (a
	// second trusted source, such as the keys the guest printed on its console).
	// With Vouch set the host key algorithms offered are the pinned keys' first,
	// then every other, so a guest that made keys of other types can still show
	// one. Its error becomes the HostKeyMismatchError's cause.
	Vouch func(key ssh.PublicKey) error
	// HostKeyCallback verifies the host key when HostKeys is empty; any error it
	// returns is reported as a host key mismatch.
	HostKeyCallback ssh.HostKeyCallback
	// HostKeyAlgorithms overrides the host key algorithms offered.
	HostKeyAlgorithms []string
	// Interval is the pause between attempt starts (default 250ms).
	Interval time.Duration
	// Patience is how long an attempt may go unanswered before another is
	// started alongside it (default 2s); with 4 unanswered attempts in flight
	// the oldest is abandoned, so each silent connection lives 4×Patience.
	// Through qemu's user-mode forward a connection made before the guest
	// listens waits out slirp's SYN backoff (tens of seconds) even after sshd is
	// up; a fresh one gets in at once, while older ones still serve an sshd that
	// is merely slow to send its banner.
	Patience time.Duration
	// AttemptTimeout bounds one attempt's connect, banner, handshake and auth
	// (default 30s: key exchange under emulation is slow).
	AttemptTimeout time.Duration
	// Command is the trivial command proving a shell works (default "echo ok").
	Command string
	// Logger receives one debug record per failed attempt; nil discards.
	Logger *slog.Logger
	// Failed, if set, is called with the stage and error of every attempt that
	// failed before ctx ended, from the probing goroutine: how a watcher learns
	// what the guest answers while the probe goes on.
	Failed func(stage Stage, err error)
	// Reached, if set, is called with StageCommand when an attempt has logged in
	// and runs its command, from that attempt's goroutine: a watcher then knows
	// the guest answers although no attempt has failed that far.
	Reached func(stage Stage)
}

// Defaults for ProbeConfig.
const (
	DefaultInterval       = 250 * time.Millisecond
	DefaultPatience       = 2 * time.Second
	maxParallel           = 4
	DefaultAttemptTimeout = 30 * time.Second
	DefaultCommand        = "echo ok"
)

// StageTiming is how long one stage took.
type StageTiming struct {
	Stage    Stage
	Duration time.Duration
}

// ProbeReport describes a probe, successful or not.
type ProbeReport struct {
	Attempts int
	// Stages are the timings of the successful attempt, or of the attempt the
	// failure is reported from, up to the stage that failed.
	Stages []StageTiming
	// Elapsed is from the start of Probe to its return.
	Elapsed time.Duration
	// ServerVersion is the server's banner, e.g. "SSH-2.0-OpenSSH_9.2p1 Debian-2".
	ServerVersion string
	// HostKeyType is the type of the host key the server proved, on success.
	HostKeyType string
	// HostKey is the host key the server proved, on success.
	HostKey ssh.PublicKey
	// FailedStage and Reason are set on failure; Reason is one line.
	FailedStage Stage
	Reason      string
	// Furthest is the furthest stage any attempt reached.
	Furthest Stage
}

// Client is a logged-in SSH connection to the guest.
type Client struct {
	*ssh.Client
}

// Run runs cmd on the guest under ctx; see the package function Run.
func (c *Client) Run(ctx context.Context, cmd string) (CommandResult, error) {
	return Run(ctx, c.Client, cmd)
}

// Algorithms returns the algorithm lists a probe offers: everything x/crypto/ssh
// implements that is still safe, plus the SHA-1 key exchanges and the ssh-rsa
// (SHA-1) host key signature that servers older than OpenSSH 7.2 need. CBC
// ciphers, 1024-bit DH group 1 and DSA are left out.
func Algorithms() ssh.Algorithms {
	a := ssh.SupportedAlgorithms()
	a.KeyExchanges = append(a.KeyExchanges, ssh.InsecureKeyExchangeDH14SHA1, ssh.InsecureKeyExchangeDHGEXSHA1)
	a.MACs = append(a.MACs, ssh.InsecureHMACSHA196)
	a.HostKeys = append(a.HostKeys, ssh.KeyAlgoRSA, ssh.CertAlgoRSAv01)
	return a
}

// hostKeyAlgorithms maps pinned keys to the signature algorithms that prove them.
func hostKeyAlgorithms(keys []ssh.PublicKey) []string {
	var algos []string
	for _, k := range keys {
		switch k.Type() {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, k.Type())
		}
	}
	// Strongest first, as OpenSSH orders them: the server signs with the first
	// it holds, so a guest with both pinned keys proves the ed25519 one.
	var out []string
	for _, a := range algos {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return hostKeyRank(a) - hostKeyRank(b) })
	return out
}

// hostKeyPreference is the order hostKeyAlgorithms offers pinned algorithms in.
var hostKeyPreference = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA,
}

func hostKeyRank(algo string) int {
	if i := slices.Index(hostKeyPreference, algo); i >= 0 {
		return i
	}
	return len(hostKeyPreference) // anything else after, in the keys' order
}

// preferHostKeyAlgorithms lists the pinned keys' algorithms first, then every
// other one a probe offers.
func preferHostKeyAlgorithms(keys []ssh.PublicKey) []string {
	algos := hostKeyAlgorithms(keys)
	for _, a := range Algorithms().HostKeys {
		if !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	return algos
}

// PinnedHostKeys returns a callback accepting exactly the given keys.
func PinnedHostKeys(keys ...ssh.PublicKey) ssh.HostKeyCallback {
	return pinnedOr(keys, nil)
}

// pinnedOr accepts the given keys, and any other that vouch (if set) accepts.
func pinnedOr(keys []ssh.PublicKey, vouch func(ssh.PublicKey) error) ssh.HostKeyCallback {
	want := make([]string, len(keys))
	for i, k := range keys {
		want[i] = ssh.FingerprintSHA256(k)
	}
	return func(_ string, _ net.Addr, got ssh.PublicKey) error {
		for _, k := range keys {
			if bytes.Equal(k.Marshal(), got.Marshal()) {
				return nil
			}
		}
		var err error
		if vouch != nil {
			if err = vouch(got); err == nil {
				return nil
			}
		}
		return &HostKeyMismatchError{Got: got, Want: want, Err: err}
	}
}

// Probe tries to log in until it succeeds or ctx ends (give ctx the boot
// deadline). Attempts start Interval apart, and a slow one gets up to two more
// alongside it (see Patience); the first to log in wins. Each attempt connects,
// waits for the banner, completes the key exchange checking the host key,
// authenticates and runs cfg.Command, all under AttemptTimeout and deadlines set
// on the connection. On failure the error is a *ProbeError from the last
// meaningful attempt: the final attempt cut short by ctx is only reported when it
// got further than the one before it.
func Probe(ctx context.Context, cfg ProbeConfig) (*Client, ProbeReport, error) {
	start := time.Now()
	cfg, hostKeyCB, err := cfg.withDefaults()
	if err != nil {
		return nil, ProbeReport{}, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Attempts run one after another, Interval apart. One that has heard nothing
	// from the server after Patience gets company; with maxParallel silent
	// attempts in flight the oldest is abandoned for a fresh one. The first
	// success wins.
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	p := &prober{cfg: cfg, hostKeyCB: hostKeyCB, log: log, results: make(chan landed)}
	p.launch(pctx)
	for len(p.flights) > 0 {
		r := p.next(ctx, pctx)
		if p.rep.Furthest == "" || r.stage.Rank() > p.rep.Furthest.Rank() {
			p.rep.Furthest = r.stage
		}
		if r.err == nil {
			pcancel()
			p.closeLate()
			return p.won(r, start)
		}
		interrupted := p.lost(ctx, r)
		if len(p.flights) > 0 || interrupted {
			continue
		}
		p.pause(ctx)
		if !expired(ctx) {
			p.launch(pctx)
		}
	}
	return p.gaveUp(start)
}

// withDefaults fills cfg's zero settings with the defaults and picks the host key
// callback (and, for pinned keys, the algorithms offered); it fails when a
// required setting is missing.
func (cfg ProbeConfig) withDefaults() (ProbeConfig, ssh.HostKeyCallback, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Patience <= 0 {
		cfg.Patience = DefaultPatience
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.Command == "" {
		cfg.Command = DefaultCommand
	}
	hostKeyCB := cfg.HostKeyCallback
	if len(cfg.HostKeys) > 0 {
		hostKeyCB = pinnedOr(cfg.HostKeys, cfg.Vouch)
		switch {
		case cfg.HostKeyAlgorithms != nil:
		case cfg.Vouch != nil:
			cfg.HostKeyAlgorithms = preferHostKeyAlgorithms(cfg.HostKeys)
		default:
			cfg.HostKeyAlgorithms = hostKeyAlgorithms(cfg.HostKeys)
		}
	}
	if hostKeyCB == nil || len(cfg.Signers) == 0 || cfg.Addr == "" || cfg.User == "" {
		return cfg, nil, errors.New("sshprobe: Addr, User, Signers and HostKeys or HostKeyCallback are required")
	}
	return cfg, hostKeyCB, nil
}

// flight is an attempt under way.
type flight struct {
	cancel context.CancelCauseFunc
	heard  *atomic.Bool // the server sent something on this connection
}

// landed is an attempt that ended, with how.
type landed struct {
	f *flight
	r attemptResult
}

// prober is one Probe's attempts: those in flight, the report so far and the
// failed attempt it would report.
type prober struct {
	cfg        ProbeConfig
	hostKeyCB  ssh.HostKeyCallback
	log        *slog.Logger
	results    chan landed
	flights    []*flight
	lastLaunch time.Time
	rep        ProbeReport
	last       *attemptResult
}

// launch starts one more attempt under pctx.
func (p *prober) launch(pctx context.Context) {
	actx, cancel := context.WithCancelCause(pctx)
	f := &flight{cancel: cancel, heard: new(atomic.Bool)}
	p.flights = append(p.flights, f)
	p.rep.Attempts++
	p.lastLaunch = time.Now()
	go func() { p.results <- landed{f, attempt(actx, p.cfg, p.hostKeyCB, f.heard)} }()
}

// next waits for an attempt in flight to end and returns how it did, hedging
// meanwhile (until ctx ends) each time Patience passes without a launch.
func (p *prober) next(ctx, pctx context.Context) attemptResult {
	for {
		var hedge <-chan time.Time
		var hedgeTimer *time.Timer
		if !expired(ctx) {
			hedgeTimer = time.NewTimer(time.Until(p.lastLaunch.Add(p.cfg.Patience)))
			hedge = hedgeTimer.C
		}
		select {
		case <-hedge:
			p.hedge(pctx)
		case d := <-p.results:
			if hedgeTimer != nil {
				hedgeTimer.Stop()
			}
			p.flights = slices.DeleteFunc(p.flights, func(f *flight) bool { return f == d.f })
			d.f.cancel(nil)
			return d.r
		}
	}
}

// hedge leaves the attempts in flight to work while one of them hears from the
// server; when all are silent it launches another, abandoning the oldest when
// maxParallel are in flight.
func (p *prober) hedge(pctx context.Context) {
	if slices.ContainsFunc(p.flights, func(f *flight) bool { return f.heard.Load() }) {
		p.lastLaunch = time.Now()
		return
	}
	if len(p.flights) >= maxParallel {
		p.flights[0].cancel(errAbandoned)
	}
	p.launch(pctx)
}

// lost notes a failed attempt: cfg.Failed hears of it unless ctx has ended
// (interrupted), and it becomes the attempt reported unless it was interrupted or
// abandoned without getting further than the one reported so far.
func (p *prober) lost(ctx context.Context, r attemptResult) (interrupted bool) {
	p.log.Debug("ssh attempt failed", "attempts", p.rep.Attempts, "stage", r.stage, "err", r.err)
	interrupted = expired(ctx)
	if p.cfg.Failed != nil && !interrupted {
		p.cfg.Failed(r.stage, r.err)
	}
	abandoned := errors.Is(r.err, errAbandoned)
	switch {
	case p.last == nil,
		!interrupted && !abandoned,
		r.stage.Rank() > p.last.stage.Rank():
		p.last = &r
	}
	return interrupted
}

// pause waits until Interval has passed since the last launch, or ctx ends.
func (p *prober) pause(ctx context.Context) {
	wait := time.NewTimer(time.Until(p.lastLaunch.Add(p.cfg.Interval)))
	defer wait.Stop()
	select {
	case <-ctx.Done():
	case <-wait.C:
	}
}

// closeLate closes the clients of attempts still in flight that also get in.
func (p *prober) closeLate() {
	go func(n int) {
		for ; n > 0; n-- {
			if d := <-p.results; d.r.client != nil {
				d.r.client.Close()
			}
		}
	}(len(p.flights))
}

// won is the probe's outcome when attempt r logged in.
func (p *prober) won(r attemptResult, start time.Time) (*Client, ProbeReport, error) {
	p.rep.Stages, p.rep.ServerVersion, p.rep.HostKeyType, p.rep.HostKey = r.timings, r.version, r.hostKeyType, r.hostKey
	p.rep.Elapsed = time.Since(start)
	return &Client{r.client}, p.rep, nil
}

// gaveUp is the probe's outcome when no attempt logged in before ctx ended.
func (p *prober) gaveUp(start time.Time) (*Client, ProbeReport, error) {
	last := p.last
	p.rep.Stages, p.rep.ServerVersion = last.timings, last.version
	p.rep.FailedStage = last.stage
	p.rep.Elapsed = time.Since(start)
	p.rep.Reason = jobs.OneLine(last.err.Error(), 0)
	return nil, p.rep, &ProbeError{Stage: last.stage, Attempts: p.rep.Attempts, Err: last.err}
}

// expired reports whether ctx is done or past its deadline: a derived context's
// timer may fire before the parent's for the same instant.
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

type attemptResult struct {
	client      *ssh.Client
	stage       Stage // reached (the failing one on error)
	timings     []StageTiming
	version     string
	hostKeyType string
	hostKey     ssh.PublicKey
	err         error
}

// errAbandoned cancels an attempt that stayed silent while fresher ones ran.
var errAbandoned = errors.New("connection silent, given up for a fresh one")

// attempt makes one login attempt; heard is set once the server sends anything.
func attempt(ctx context.Context, cfg ProbeConfig, hostKeyCB ssh.HostKeyCallback, heard *atomic.Bool) (r attemptResult) {
	actx, cancel := context.WithTimeout(ctx, cfg.AttemptTimeout)
	defer cancel()
	t0 := time.Now()
	mark := func(s Stage, since time.Time) time.Time {
		now := time.Now()
		r.timings = append(r.timings, StageTiming{s, now.Sub(since)})
		return now
	}

	r.stage = StageConnect
	var d net.Dialer
	raw, err := d.DialContext(actx, "tcp", cfg.Addr)
	if err != nil {
		r.err = connectError(cfg.Addr, err)
		return r
	}
	tConnected := mark(StageConnect, t0)
	// x/crypto/ssh has no timeouts of its own past the dial: the connection's
	// deadline bounds the handshake and a watchdog closes it if ctx is cancelled.
	deadline, _ := actx.Deadline()
	raw.SetDeadline(deadline)
	stopWatch := context.AfterFunc(actx, func() { raw.Close() })
	conn := &bannerConn{Conn: raw, heard: heard}
	closeConn := true
	defer func() {
		if closeConn {
			stopWatch()
			raw.Close()
		}
	}()

	seen := &hostKeySeen{}
	c, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, clientConfig(cfg, seen.callback(hostKeyCB)))
	hs := handshake{connected: tConnected}
	hs.version, hs.versionAt, hs.preBanner = conn.banner()
	hs.hostKeyAt, hs.hostKey, hs.hostKeyErr = seen.get()
	r.version = hs.version
	if hs.hostKey != nil {
		r.hostKeyType, r.hostKey = hs.hostKey.Type(), hs.hostKey
	}
	if err != nil {
		r.handshakeFailed(actx, ctx, cfg, hs, err)
		return r
	}
	r.timings = append(r.timings,
		StageTiming{StageBanner, hs.versionAt.Sub(tConnected)},
		StageTiming{StageHandshake, hs.hostKeyAt.Sub(hs.versionAt)},
		StageTiming{StageAuth, time.Since(hs.hostKeyAt)})
	tAuthed := time.Now()
	// Logged in: from here on the watchdog and deadline would kill a healthy
	// connection; Run bounds commands with ctx instead.
	if !stopWatch() {
		r.stage, r.err = StageAuth, fmt.Errorf("interrupted: %w", context.Cause(actx))
		return r
	}
	raw.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)

	r.stage = StageCommand
	if cfg.Reached != nil {
		cfg.Reached(StageCommand)
	}
	r.err = testCommand(actx, ctx, client, cfg)
	mark(StageCommand, tAuthed)
	if r.err != nil {
		client.Close()
		return r
	}
	closeConn = false
	r.client = client
	return r
}

// handshake is what one attempt's SSH handshake showed: when the connection
// was made, the server's banner (or what it sent instead) and when, and the host
// key check.
type handshake struct {
	connected, versionAt, hostKeyAt time.Time
	version, preBanner              string
	hostKey                         ssh.PublicKey // accepted
	hostKeyErr                      error         // refused
}

// handshakeFailed records the stage a failed handshake stopped at and why: no
// banner, the key exchange (the host key refused, or no agreement), or the
// authentication.
func (r *attemptResult) handshakeFailed(actx, ctx context.Context, cfg ProbeConfig, hs handshake, err error) {
	switch {
	case hs.version == "":
		r.stage = StageBanner
		r.err = bannerError(err, hs.preBanner, actx, ctx, cfg.AttemptTimeout)
	case hs.hostKey == nil:
		r.timings = append(r.timings, StageTiming{StageBanner, time.Since(hs.connected)})
		r.stage = StageHandshake
		if hs.hostKeyErr != nil {
			r.err = hs.hostKeyErr
		} else {
			r.err = stageError("key exchange failed", err, actx, ctx, cfg.AttemptTimeout)
		}
	default:
		r.timings = append(r.timings, StageTiming{StageBanner, time.Since(hs.connected)},
			StageTiming{StageHandshake, hs.hostKeyAt.Sub(hs.versionAt)})
		r.stage = StageAuth
		r.err = authError(cfg.User, err, actx, ctx, cfg.AttemptTimeout)
	}
}

// hostKeySeen is what the host key callback saw during one handshake: when it
// was asked, and the key it accepted or why it refused one.
type hostKeySeen struct {
	mu  sync.Mutex
	at  time.Time
	key ssh.PublicKey         // accepted
	err *HostKeyMismatchError // refused
}

// callback checks the host key with check, noting what it saw; any refusal is a
// *HostKeyMismatchError.
func (h *hostKeySeen) callback(check ssh.HostKeyCallback) ssh.HostKeyCallback {
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := check(host, remote, key)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.at = time.Now()
		if err != nil {
			var hm *HostKeyMismatchError
			if !errors.As(err, &hm) {
				hm = &HostKeyMismatchError{Got: key, Err: err}
			}
			h.err = hm
			return hm
		}
		h.key = key
		return nil
	}
}

// get returns what the callback saw (a nil error when it refused nothing).
func (h *hostKeySeen) get() (time.Time, ssh.PublicKey, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		return h.at, h.key, nil
	}
	return h.at, h.key, h.err
}

// clientConfig is the SSH client configuration of one attempt.
func clientConfig(cfg ProbeConfig, hostKeyCB ssh.HostKeyCallback) *ssh.ClientConfig {
	ccfg := &ssh.ClientConfig{
		Config: ssh.Config{
			KeyExchanges: Algorithms().KeyExchanges,
			Ciphers:      Algorithms().Ciphers,
			MACs:         Algorithms().MACs,
		},
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(cfg.Signers...)},
		HostKeyCallback:   hostKeyCB,
		HostKeyAlgorithms: cfg.HostKeyAlgorithms,
		ClientVersion:     "SSH-2.0-imagevet",
	}
	if ccfg.HostKeyAlgorithms == nil {
		ccfg.HostKeyAlgorithms = Algorithms().HostKeys
	}
	return ccfg
}

// testCommand runs cfg.Command once logged in: an error unless it exits 0.
func testCommand(actx, ctx context.Context, client *ssh.Client, cfg ProbeConfig) error {
	res, err := Run(actx, client, cfg.Command)
	switch {
	case err != nil:
		return stageError(fmt.Sprintf("test command %q did not complete", cfg.Command), err, actx, ctx, cfg.AttemptTimeout)
	case res.ExitCode != 0:
		msg := jobs.FirstLine(res.Stderr, 0)
		if msg == "" {
			msg = jobs.FirstLine(res.Stdout, 0)
		}
		return fmt.Errorf("test command %q exited %d: %s", cfg.Command, res.ExitCode, msg)
	}
	return nil
}

func connectError(addr string, err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot connect to %s: connection refused: %w", addr, err)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Errorf("cannot connect to %s: timed out: %w", addr, err)
	}
	return fmt.Errorf("cannot connect to %s: %w", addr, err)
}

func bannerError(err error, pre string, actx, ctx context.Context, limit time.Duration) error {
	var what string
	switch {
	case errors.Is(context.Cause(actx), errAbandoned):
		return fmt.Errorf("no SSH banner: %w: %w", errAbandoned, ErrBannerMissing)
	case expired(ctx):
		what = "interrupted before the SSH banner"
	case actx.Err() != nil || isTimeout(err):
		what = fmt.Sprintf("no SSH banner within %v", limit)
	default:
		what = "connection closed before the SSH banner (is sshd running in the guest?)"
	}
	if pre = strings.TrimSpace(pre); pre != "" {
		what += fmt.Sprintf("; the server said %q", jobs.FirstLine(pre, 0))
	}
	return fmt.Errorf("%s: %w: %w", what, ErrBannerMissing, err)
}

func authError(user string, err error, actx, ctx context.Context, limit time.Duration) error {
	if expired(ctx) || actx.Err() != nil || isTimeout(err) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return stageError(fmt.Sprintf("authentication as %q did not complete", user), err, actx, ctx, limit)
	}
	return fmt.Errorf("%w as user %q (the guest did not install our key): %w", ErrAuthRejected, user, err)
}

func stageError(what string, err error, actx, ctx context.Context, limit time.Duration) error {
	switch {
	case expired(ctx):
		return fmt.Errorf("%s: interrupted: %w", what, err)
	case actx.Err() != nil || isTimeout(err):
		return fmt.Errorf("%s within %v: %w", what, limit, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// bannerConn notes when the server's identification line arrives, without
// consuming anything the SSH library needs to read.
type bannerConn struct {
	net.Conn
	heard   *atomic.Bool
	mu      sync.Mutex
	buf     []byte // the current unterminated line, before the version
	pre     string // the last other line before the version (RFC 4253 allows them)
	version string
	at      time.Time
}

func (c *bannerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.heard.Store(true)
		c.observe(p[:n])
	}
	return n, err
}

func (c *bannerConn) observe(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != "" {
		return
	}
	c.buf = append(c.buf, p...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			if len(c.buf) > 1024 {
				c.pre, c.buf = string(c.buf[:1024]), nil
			}
			return
		}
		line := strings.TrimRight(string(c.buf[:i]), "\r")
		c.buf = c.buf[i+1:]
		if strings.HasPrefix(line, "SSH-") {
			c.version, c.at, c.buf = line, time.Now(), nil
			return
		}
		if strings.TrimSpace(line) != "" {
			c.pre = line
		}
	}
}

// banner returns the version line, when it arrived, and text seen before it.
func (c *bannerConn) banner() (string, time.Time, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pre := c.pre
	if pre == "" {
		pre = string(c.buf)
	}
	return c.version, c.at, pre
}
