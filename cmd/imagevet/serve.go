package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/imagevet/imagevet/web"
)

const serveUsage = `usage: imagevet serve [flags]

Serves the operators' page: every image's latest verdict and history, each job's
checks, stage timeline and console, the queue and the workers, read from NATS. It
is read-only and binds 127.0.0.1:8080 unless --listen says otherwise; any address
that is not loopback needs --token-file (the token as bearer token or as the
basic-auth password; /healthz needs none); without it only a loopback Host
(localhost, 127.0.0.1, [::1] with the port) is answered. --tls-cert and --tls-key serve HTTPS. It listens at once and
waits for a NATS server that is not up yet (backoff; /healthz answers 503 saying so);
only a bad URL or refused credentials end it.

`

// serveConfig is imagevet serve's configuration, from flags and IMAGEVET_* variables.
type serveConfig struct {
	nats     natsFlags
	listen   web.ListenConfig
	logLevel string
	logJSON  bool
}

func cmdServe(ctx context.Context, args []string, env Env) int {
	var cfg serveConfig
	rest, err := parseCommand("serve", serveUsage, args, env, merged(cfg.nats.bind(), logBindings(&cfg.logLevel, &cfg.logJSON),
		map[string]any{"listen": &cfg.listen.Addr, "tls-cert": &cfg.listen.TLSCertFile, "tls-key": &cfg.listen.TLSKeyFile,
			"token-file": &cfg.listen.TokenFile}))
	if code, stop := flagStop(err); stop {
		return code
	}
	errs := []error{err, cfg.listen.Validate(), cfg.nats.options("").Validate()}
	if len(rest) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", rest))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(env.Stderr, "imagevet serve: %v\n", err)
		return exitError
	}
	log, err := newLogger(env.Stderr, cfg.logLevel, cfg.logJSON)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet serve: %v\n", err)
		return exitError
	}
	fail := func(err error) int {
		fmt.Fprintf(env.Stderr, "imagevet serve: %v\n", err)
		return exitError
	}
	// The page listens at once; until NATS is reached every request, /healthz
	// included, answers 503 saying why.
	dialer := cfg.nats.dialer("imagevet serve", log)
	front := &pageSwitch{health: dialer.Health}
	ln, h, err := web.Listen(cfg.listen, front)
	if err != nil {
		return fail(err)
	}
	scheme := "http"
	if cfg.listen.TLSCertFile != "" {
		scheme = "https"
	}
	sctx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- web.Serve(sctx, ln, h, log) }()
	log.Info("serving the page", "url", scheme+"://"+ln.Addr().String()+"/")
	stop := func(code int) int { stopServing(); <-served; return code }

	nc, q, code, ok := connectService(ctx, dialer, env, "serve")
	if !ok {
		return stop(code)
	}
	defer nc.Close()
	srv, err := web.New(q, web.Options{Logger: log})
	if err != nil {
		return stop(fail(err))
	}
	if err := srv.Follow(ctx); err != nil {
		return stop(fail(err))
	}
	front.page.Store(srv.Handler())
	if err := <-served; err != nil {
		log.Error("serving failed", "err", err)
		return exitError
	}
	return 0
}

// pageSwitch serves the page once it is set, and 503 until then; /healthz answers
// 503 whenever health says NATS is not reachable.
type pageSwitch struct {
	health func() error
	page   atomic.Value // http.Handler
}

func (p *pageSwitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	err := p.health()
	if err != nil && r.URL.Path == "/healthz" {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	h, _ := p.page.Load().(http.Handler)
	switch {
	case h == nil && err != nil:
		http.Error(w, "the page is waiting for NATS: "+err.Error(), http.StatusServiceUnavailable)
		return
	case h == nil:
		http.Error(w, "the page is starting", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}
