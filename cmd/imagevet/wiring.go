package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/keyring"
	"github.com/imagevet/imagevet/worker"
	"github.com/imagevet/imagevet/worker/owner"
	"github.com/imagevet/imagevet/worker/vm/libvirt"
)

// newRunner builds the job runner for this host from a validated config: the image
// cache, the libvirt connection, and a sweep of machines this worker left behind.
// The returned func releases the connection.
func newRunner(ctx context.Context, cfg worker.Config, log *slog.Logger) (*worker.Runner, func(), error) {
	if err := cfg.Prepare(); err != nil {
		return nil, nil, err
	}
	var kr *keyring.Keyring
	if cfg.Keyring != "" {
		var err error
		if kr, err = keyring.Load(cfg.Keyring); err != nil {
			return nil, nil, fmt.Errorf("keyring: %w", err)
		}
	}
	store, err := image.NewStore(image.StoreConfig{
		Dir:           filepath.Join(cfg.StateDir, "cache"),
		FileRoots:     cfg.ImageRoots,
		Keyring:       kr,
		MaxCacheBytes: cfg.CacheMax,
		Logger:        log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("image cache: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hv, err := libvirt.New(cctx, libvirt.Config{URI: cfg.LibvirtURI, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("libvirt %s: %w (is libvirtd running? scripts/setup-host starts it)", cfg.LibvirtURI, err)
	}
	// This process owns its machines for as long as it lives; the sweep below
	// destroys only machines whose owner is gone.
	lock, err := owner.Acquire(cfg.StateDir, cfg.WorkerID)
	if err != nil {
		hv.Close()
		return nil, nil, err
	}
	cfg.Owner = lock.Path()
	runner := worker.NewRunner(cfg, store, hv, log)
	if n, err := runner.Sweep(cctx); err != nil {
		log.Warn("sweeping orphaned machines", "err", err)
	} else if n > 0 {
		log.Info("destroyed orphaned machines", "count", n)
	}
	return runner, func() { runner.Close(); hv.Close(); lock.Release() }, nil
}
