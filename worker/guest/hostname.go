package guest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// CheckHostname passes when the guest's hostname is want (a short name matches
// a fully qualified one). It is the hostname check for images without
// cloud-init, whose own init sets the hostname from the seed.
func CheckHostname(ctx context.Context, r Runner, want string) CheckResult {
	start := time.Now()
	res := CheckResult{Name: NameHostname}
	out, err := r.Run(ctx, shScript(`cat /proc/sys/kernel/hostname 2>/dev/null || hostname 2>/dev/null || uname -n`))
	res.Duration = time.Since(start)
	got := strings.TrimSpace(out.Stdout)
	res.Detail = "hostname: " + got
	switch {
	case err != nil:
		res.Status, res.Err = StatusError, err
		res.Reason = jobs.OneLine("could not read the guest's hostname: "+err.Error(), 400)
	case got == "":
		res.Status, res.Reason = StatusFail, "the guest reports no hostname"
	case !sameHost(got, want):
		res.Status, res.Reason = StatusFail, fmt.Sprintf("hostname is %q, want %q", got, want)
	default:
		res.Status, res.Reason = StatusPass, fmt.Sprintf("hostname is %q", got)
	}
	return res
}
