package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/imagevet/imagevet/worker/guest/metadata"
)

// cmdMetadataProxy connects one guest connection to a job's metadata server: qemu's
// slirp guestfwd runs it per connection to 169.254.169.254:80 with the connection on
// stdin/stdout. Only loopback addresses are accepted. It never writes to stderr.
func cmdMetadataProxy(ctx context.Context, args []string, env Env) int {
	if len(args) != 1 || !(strings.HasPrefix(args[0], "127.") || strings.HasPrefix(args[0], "[::1]:")) {
		fmt.Fprintln(env.Stderr, "usage: imagevet metadata-proxy 127.0.0.1:PORT (run by qemu, not by people)")
		return exitError
	}
	// qemu hands the guest connection to stdin, stdout and stderr alike: anything
	// written to stderr would reach the guest, so failures show only in the exit code
	// (and in the guest's failed fetch, which the metadata check reports).
	if err := metadata.ProxyStdio(ctx, args[0], env.Stdin, os.Stdout); err != nil {
		return exitError
	}
	return 0
}
