package sshprobe

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testServer is a small real SSH server on 127.0.0.1 speaking x/crypto/ssh, with
// knobs for the failure modes a booting guest shows.
type testServer struct {
	addr     string
	ln       net.Listener
	config   *ssh.ServerConfig
	hostKey  ssh.Signer
	mu       sync.Mutex
	conns    int
	wg       sync.WaitGroup
	done     chan struct{}
	closeNow bool // accept TCP, then close before the banner (slirp, no sshd)
	silent   bool // accept TCP and never speak
	// silentFirst connections are accepted and left silent (a connection qemu's
	// forward holds while the guest is not listening yet).
	silentFirst int
}

type serverOpts struct {
	hostKey     ssh.Signer
	authorized  []ssh.PublicKey
	legacy      bool // an old server: DH group14-sha1, ssh-rsa host key signatures, hmac-sha1
	closeNow    bool
	silent      bool
	silentFirst int
}

func newSigner(t testing.TB, kind string) ssh.Signer {
	t.Helper()
	var s ssh.Signer
	var err error
	switch kind {
	case "ed25519":
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, err = ssh.NewSignerFromKey(priv)
	case "rsa":
		var k *rsa.PrivateKey
		k, err = rsa.GenerateKey(rand.Reader, 2048)
		if err == nil {
			s, err = ssh.NewSignerFromKey(k)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, o)
}

func serveOn(t testing.TB, ln net.Listener, o serverOpts) *testServer {
	s := &testServer{addr: ln.Addr().String(), ln: ln, hostKey: o.hostKey, closeNow: o.closeNow, silent: o.silent, silentFirst: o.silentFirst, done: make(chan struct{})}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range o.authorized {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return nil, nil
				}
			}
			return nil, errors.New("not authorized")
		},
	}
	hk := o.hostKey
	if o.legacy {
		cfg.KeyExchanges = []string{ssh.InsecureKeyExchangeDH14SHA1}
		cfg.Ciphers = []string{ssh.CipherAES128CTR}
		cfg.MACs = []string{ssh.HMACSHA1}
		cfg.PublicKeyAuthAlgorithms = []string{ssh.KeyAlgoRSA}
		var err error
		hk, err = ssh.NewSignerWithAlgorithms(hk.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSA})
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerVersion = "SSH-2.0-OpenSSH_5.3"
	}
	cfg.AddHostKey(hk)
	s.config = cfg
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.ln.Close()
	s.wg.Wait()
}

func (s *testServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		n := s.conns
		s.mu.Unlock()
		switch {
		case n <= s.silentFirst:
			s.wg.Add(1)
			go func() { defer s.wg.Done(); <-s.done; c.Close() }()
			continue
		case s.closeNow:
			c.Close()
			continue
		case s.silent:
			s.wg.Add(1)
			go func() { defer s.wg.Done(); <-s.done; c.Close() }()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *testServer) handle(c net.Conn) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ch.Close()
			for req := range creqs {
				if req.Type != "exec" {
					req.Reply(false, nil)
					continue
				}
				var p struct{ Cmd string }
				ssh.Unmarshal(req.Payload, &p)
				req.Reply(true, nil)
				code := runFake(ch, p.Cmd)
				if code >= 0 {
					ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
				}
				return
			}
		}()
	}
}

// runFake interprets the few commands the tests use; -1 means "sent nothing".
func runFake(ch ssh.Channel, cmd string) int {
	switch {
	case cmd == "echo ok":
		fmt.Fprintln(ch, "ok")
		return 0
	case strings.HasPrefix(cmd, "exit "):
		n, _ := strconv.Atoi(strings.TrimPrefix(cmd, "exit "))
		fmt.Fprintf(ch.Stderr(), "exiting with %d\n", n)
		return n
	case cmd == "sleep":
		// Run until the client closes the channel (at most 10s).
		for i := 0; i < 500; i++ {
			time.Sleep(20 * time.Millisecond)
			if _, err := ch.Stderr().Write([]byte(".")); err != nil {
				return -1
			}
		}
		return 0
	case cmd == "flood":
		chunk := bytes.Repeat([]byte("y"), 64<<10)
		for i := 0; i < (MaxOutput/len(chunk))+4; i++ {
			if _, err := ch.Write(chunk); err != nil {
				return -1
			}
		}
		return 0
	}
	fmt.Fprintf(ch.Stderr(), "sh: %s: not found\n", cmd)
	return 127
}
