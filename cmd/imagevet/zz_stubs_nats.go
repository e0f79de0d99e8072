package main

// Temporary stand-in until the lead's runner factory lands; delete this file then.

import (
	"context"
	"errors"
	"log/slog"

	"github.com/imagevet/imagevet/worker"
	"github.com/imagevet/imagevet/worker/daemon"
)

func newRunner(_ context.Context, _ worker.Config, _ *slog.Logger) (daemon.Runner, func(), error) {
	return nil, func() {}, errors.New("runner not wired yet")
}
