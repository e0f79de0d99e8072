package metadata

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"
)

// ProxyStdio connects one guest connection, carried on in and out (the stdin and
// stdout qemu gives a guestfwd command), to the metadata service at addr. Bytes
// flow both ways; when in ends the service's side is half-closed so it finishes
// answering, and ProxyStdio returns once the service closes its side. It does not
// wait for in after that (a stdin read cannot be interrupted), and returns early
// with the cause when ctx ends.
func ProxyStdio(ctx context.Context, addr string, in io.Reader, out io.Writer) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("metadata proxy: dial %s: %w", addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	go func() {
		io.Copy(conn, in)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	_, err = io.Copy(out, conn)
	if cerr := context.Cause(ctx); cerr != nil {
		return fmt.Errorf("metadata proxy: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("metadata proxy: copy to guest: %w", err)
	}
	return nil
}
