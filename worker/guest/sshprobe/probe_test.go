package sshprobe

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

type fixture struct {
	client ssh.Signer
	host   ssh.Signer
}

func newFixture(t *testing.T) fixture {
	return fixture{client: newSigner(t, "ed25519"), host: newSigner(t, "ed25519")}
}

func (f fixture) config(addr string) ProbeConfig {
	return ProbeConfig{
		Addr:     addr,
		User:     "debian",
		Signers:  []ssh.Signer{f.client},
		HostKeys: []ssh.PublicKey{f.host.PublicKey()},
		Interval: 50 * time.Millisecond,
	}
}

func probe(t *testing.T, cfg ProbeConfig, timeout time.Duration) (*Client, ProbeReport, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, rep, err := Probe(ctx, cfg)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, rep, err
}

func TestProbeSuccess(t *testing.T) {
	f := newFixture(t)
	srv := startServer(t, serverOpts{hostKey: f.host, authorized: []ssh.PublicKey{f.client.PublicKey()}})
	c, rep, err := probe(t, f.config(srv.addr), 10*time.Second)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if rep.Attempts != 1 {
		t.Errorf("attempts = %d, want 1", rep.Attempts)
	}
	var stages []string
	var sum time.Duration
	for _, s := range rep.Stages {
		stages = append(stages, string(s.Stage))
		if s.Duration <= 0 {
			t.Errorf("stage %s has duration %v", s.Stage, s.Duration)
		}
		sum += s.Duration
	}
	if got := strings.Join(stages, ","); got != "connect,banner,handshake,auth,command" {
		t.Errorf("stages = %s", got)
	}
	if sum > rep.Elapsed {
		t.Errorf("stage sum %v exceeds elapsed %v", sum, rep.Elapsed)
	}
	if !strings.HasPrefix(rep.ServerVersion, "SSH-2.0-Go") || rep.HostKeyType != ssh.KeyAlgoED25519 {
		t.Errorf("version %q host key type %q", rep.ServerVersion, rep.HostKeyType)
	}
	t.Logf("timings: %+v elapsed %v", rep.Stages, rep.Elapsed)
	res, err := c.Run(context.Background(), "echo ok")
	if err != nil || res.Stdout != "ok\n" || res.ExitCode != 0 {
		t.Errorf("Run after probe: %+v, %v", res, err)
	}
}

// An old server: RSA host key signing only with ssh-rsa (SHA-1), DH group 14 with
// SHA-1, hmac-sha1, accepting only ssh-rsa client signatures.
func TestProbeLegacyServer(t *testing.T) {
	host := newSigner(t, "rsa")
	client := newSigner(t, "rsa")
	srv := startServer(t, serverOpts{hostKey: host, authorized: []ssh.PublicKey{client.PublicKey()}, legacy: true})
	cfg := ProbeConfig{Addr: srv.addr, User: "centos", Signers: []ssh.Signer{newSigner(t, "ed25519"), client},
		HostKeys: []ssh.PublicKey{newSigner(t, "ed25519").PublicKey(), host.PublicKey()}}
	_, rep, err := probe(t, cfg, 20*time.Second)
	if err != nil {
		t.Fatalf("Probe against a legacy server: %v", err)
	}
	if rep.ServerVersion != "SSH-2.0-OpenSSH_5.3" || rep.HostKeyType != ssh.KeyAlgoRSA {
		t.Errorf("version %q host key type %q", rep.ServerVersion, rep.HostKeyType)
	}
}

func TestProbeBannerStage(t *testing.T) {
	f := newFixture(t)
	srv := startServer(t, serverOpts{hostKey: f.host, closeNow: true})
	_, rep, err := probe(t, f.config(srv.addr), 700*time.Millisecond)
	var pe *ProbeError
	if !errors.As(err, &pe) || pe.Stage != StageBanner || !errors.Is(err, ErrBannerMissing) {
		t.Fatalf("err = %v, want a banner-stage ProbeError", err)
	}
	if rep.Attempts < 3 || rep.FailedStage != StageBanner {
		t.Errorf("attempts %d failed stage %q: want retries at short intervals", rep.Attempts, rep.FailedStage)
	}
	if !strings.Contains(rep.Reason, "connection closed before the SSH banner") || strings.Contains(rep.Reason, "\n") {
		t.Errorf("reason = %q", rep.Reason)
	}
	if len(rep.Stages) != 1 || rep.Stages[0].Stage != StageConnect {
		t.Errorf("stages = %+v, want the connect timing", rep.Stages)
	}
}

func TestProbeConnectRefused(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, rep, err := probe(t, f.config(addr), 300*time.Millisecond)
	var pe *ProbeError
	if !errors.As(err, &pe) || pe.Stage != StageConnect {
		t.Fatalf("err = %v, want connect stage", err)
	}
	if !strings.Contains(rep.Reason, "connection refused") {
		t.Errorf("reason = %q", rep.Reason)
	}
}

func TestProbeWrongHostKey(t *testing.T) {
	f := newFixture(t)
	other := newSigner(t, "ed25519")
	srv := startServer(t, serverOpts{hostKey: other, authorized: []ssh.PublicKey{f.client.PublicKey()}})
	_, rep, err := probe(t, f.config(srv.addr), 500*time.Millisecond)
	var hm *HostKeyMismatchError
	if !errors.As(err, &hm) || !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("err = %v, want a HostKeyMismatchError", err)
	}
	if ssh.FingerprintSHA256(hm.Got) != ssh.FingerprintSHA256(other.PublicKey()) {
		t.Errorf("mismatch reports key %s", ssh.FingerprintSHA256(hm.Got))
	}
	if rep.FailedStage != StageHandshake || !strings.Contains(rep.Reason, "host key not the one we gave the guest") ||
		!strings.Contains(rep.Reason, ssh.FingerprintSHA256(f.host.PublicKey())) {
		t.Errorf("stage %q reason %q", rep.FailedStage, rep.Reason)
	}

	// A caller-supplied callback's refusal is typed the same way.
	cfg := f.config(srv.addr)
	cfg.HostKeys = nil
	cfg.HostKeyCallback = ssh.FixedHostKey(f.host.PublicKey())
	_, _, err = probe(t, cfg, 2*time.Second)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("FixedHostKey refusal: err = %v", err)
	}
}

func TestProbeKeyNotAuthorized(t *testing.T) {
	f := newFixture(t)
	srv := startServer(t, serverOpts{hostKey: f.host, authorized: []ssh.PublicKey{newSigner(t, "ed25519").PublicKey()}})
	_, rep, err := probe(t, f.config(srv.addr), 500*time.Millisecond)
	if !errors.Is(err, ErrAuthRejected) {
		t.Fatalf("err = %v, want ErrAuthRejected", err)
	}
	if rep.FailedStage != StageAuth || !strings.Contains(rep.Reason, "the guest did not install our key") {
		t.Errorf("stage %q reason %q", rep.FailedStage, rep.Reason)
	}
	if len(rep.Stages) != 3 { // connect, banner, handshake
		t.Errorf("stages = %+v", rep.Stages)
	}
}

func TestProbeServerAppearsLater(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	go func() {
		time.Sleep(time.Second)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		serveOn(t, ln, serverOpts{hostKey: f.host, authorized: []ssh.PublicKey{f.client.PublicKey()}})
	}()
	start := time.Now()
	_, rep, err := probe(t, f.config(addr), 10*time.Second)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if rep.Attempts < 5 {
		t.Errorf("attempts = %d, want retries every 50ms for 1s", rep.Attempts)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v after the server appeared at 1s", d)
	}
	if rep.Furthest != StageCommand {
		t.Errorf("furthest = %q", rep.Furthest)
	}
}

// A server that accepts and never speaks must not hold Probe past ctx, however long
// the attempt timeout; the interrupted attempt is still the meaningful one here.
func TestProbeRespectsDeadline(t *testing.T) {
	f := newFixture(t)
	srv := startServer(t, serverOpts{hostKey: f.host, silent: true})
	cfg := f.config(srv.addr)
	cfg.AttemptTimeout = time.Minute
	start := time.Now()
	_, rep, err := probe(t, cfg, 600*time.Millisecond)
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("Probe returned after %v, deadline was 600ms", d)
	}
	if !errors.Is(err, ErrBannerMissing) || rep.Attempts != 1 {
		t.Errorf("err = %v attempts %d", err, rep.Attempts)
	}

	// Per-attempt timeout: a silent server is retried and reported as such.
	cfg.AttemptTimeout = 200 * time.Millisecond
	_, rep, err = probe(t, cfg, 1100*time.Millisecond)
	if !errors.Is(err, ErrBannerMissing) || rep.Attempts < 3 || !strings.Contains(rep.Reason, "no SSH banner within 200ms") {
		t.Errorf("err = %v attempts %d reason %q", err, rep.Attempts, rep.Reason)
	}
}

func TestRun(t *testing.T) {
	f := newFixture(t)
	srv := startServer(t, serverOpts{hostKey: f.host, authorized: []ssh.PublicKey{f.client.PublicKey()}})
	c, _, err := probe(t, f.config(srv.addr), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	res, err := c.Run(ctx, "exit 3")
	if err != nil || res.ExitCode != 3 || res.Stderr != "exiting with 3\n" {
		t.Errorf("exit 3: %+v, %v", res, err)
	}
	res, err = Run(ctx, c.Client, "no-such-command")
	if err != nil || res.ExitCode != 127 {
		t.Errorf("unknown command: %+v, %v", res, err)
	}
	res, err = c.Run(ctx, "flood")
	if err != nil || !res.Truncated || len(res.Stdout) != MaxOutput {
		t.Errorf("flood: truncated=%v len=%d err=%v", res.Truncated, len(res.Stdout), err)
	}

	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	res, err = c.Run(cctx, "sleep")
	if !errors.Is(err, ErrCommand) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
	if d := time.Since(start); d > time.Second || res.Duration < 150*time.Millisecond {
		t.Errorf("cancel honoured after %v (result duration %v)", d, res.Duration)
	}
	// The connection survives a cancelled command.
	if res, err := c.Run(ctx, "echo ok"); err != nil || res.Stdout != "ok\n" {
		t.Errorf("after cancel: %+v, %v", res, err)
	}

	c.Close()
	if _, err := c.Run(ctx, "echo ok"); !errors.Is(err, ErrCommand) {
		t.Errorf("closed client: err = %v", err)
	}
}

// A connection the forward holds silently must not keep Probe from logging in
// through a fresh one: after Patience another attempt runs alongside, and with
// maxParallel silent ones the oldest is abandoned.
func TestProbeHedgesSilentConnections(t *testing.T) {
	f := newFixture(t)
	srv := startServer(t, serverOpts{hostKey: f.host, authorized: []ssh.PublicKey{f.client.PublicKey()}, silentFirst: maxParallel + 1})
	cfg := f.config(srv.addr)
	cfg.Patience = 100 * time.Millisecond
	cfg.AttemptTimeout = time.Minute
	start := time.Now()
	c, rep, err := probe(t, cfg, 10*time.Second)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v with Patience 100ms", d)
	}
	if rep.Attempts != maxParallel+2 {
		t.Errorf("attempts = %d, want %d (silent ones, then the one that got in)", rep.Attempts, maxParallel+2)
	}
	if res, err := c.Run(context.Background(), "echo ok"); err != nil || res.Stdout != "ok\n" {
		t.Errorf("Run: %+v %v", res, err)
	}
}
