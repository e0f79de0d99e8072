package sshprobe

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/internal/testenv"
)

// startDropbear runs the host's dropbear (the SSH server of tiny images) on a
// free loopback port with a fresh host key of the given type and returns its
// address and public host key.
func startDropbear(t *testing.T, keyType string) (string, ssh.PublicKey) {
	t.Helper()
	bin, err := exec.LookPath("dropbear")
	if err != nil {
		testenv.Missing(t, "dropbear not installed (Debian package dropbear-bin): %v", err)
	}
	keygen, err := exec.LookPath("dropbearkey")
	if err != nil {
		testenv.Missing(t, "dropbearkey not installed: %v", err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "host_key")
	if out, err := exec.Command(keygen, "-t", keyType, "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("dropbearkey: %v: %s", err, out)
	}
	out, err := exec.Command(keygen, "-y", "-f", keyFile).Output()
	if err != nil {
		t.Fatalf("dropbearkey -y: %v", err)
	}
	var hostKey ssh.PublicKey
	for _, line := range strings.Split(string(out), "\n") {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
			hostKey = k
		}
	}
	if hostKey == nil {
		t.Fatalf("no public key in dropbearkey output: %s", out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-F", "-E", "-s", "-m", "-r", keyFile, "-p", addr, "-P", filepath.Join(dir, "pid"))
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dropbear log:\n%s", logs.String())
		}
	})
	return addr, hostKey
}

// TestProbeRealDropbear drives a real dropbear through connect, banner and key
// exchange for both host key types, and checks that its refusal of an unknown user
// is classified as auth, and a different pinned key as handshake.
func TestProbeRealDropbear(t *testing.T) {
	for _, kt := range []string{"ed25519", "rsa"} {
		t.Run(kt, func(t *testing.T) {
			addr, hostKey := startDropbear(t, kt)
			cfg := ProbeConfig{
				Addr:     addr,
				User:     "imagevet-no-such-user",
				Signers:  []ssh.Signer{newSigner(t, "ed25519"), newSigner(t, "rsa")},
				HostKeys: []ssh.PublicKey{hostKey},
				Interval: 50 * time.Millisecond,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			_, rep, err := Probe(ctx, cfg)
			if !errors.Is(err, ErrAuthRejected) || rep.FailedStage != StageAuth {
				t.Fatalf("err = %v stage %q, want auth rejection", err, rep.FailedStage)
			}
			if !strings.HasPrefix(rep.ServerVersion, "SSH-2.0-dropbear") {
				t.Errorf("server version %q", rep.ServerVersion)
			}
			if rep.Attempts < 2 {
				t.Errorf("attempts = %d: auth rejections must be retried (cloud-init may not have installed the key yet)", rep.Attempts)
			}

			cfg.HostKeys = []ssh.PublicKey{newSigner(t, kt).PublicKey()}
			ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel2()
			_, rep, err = Probe(ctx2, cfg)
			if !errors.Is(err, ErrHostKeyMismatch) || rep.FailedStage != StageHandshake {
				t.Errorf("wrong pin: err = %v stage %q", err, rep.FailedStage)
			}
		})
	}
}
