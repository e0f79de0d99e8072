package guest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// DefaultMetadataURL is where the guest finds the OpenStack metadata document.
const DefaultMetadataURL = "http://169.254.169.254/openstack/latest/meta_data.json"

// metadataClients lists the HTTP clients the fetch script tries, in order.
var metadataClients = []string{"curl", "wget", "busybox-wget", "python3", "python", "bash-dev-tcp"}

// fetchScript returns a POSIX sh script fetching rawURL with the first HTTP
// client the guest has that works. busybox wget runs without -T: some builds
// crash on it, and Run's context bounds the script anyway. It prints "@@tool NAME" and the body on
// success, "@@fail NAME: last error line" for each client that failed, and
// "@@none" when the guest has no client at all.
func fetchScript(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	path := u.RequestURI()
	return fmt.Sprintf(`u=%s; h=%s; p=%s; path=%s
nl='
'
have() { command -v "$1" >/dev/null 2>&1; }
try() {
	t=$1; shift
	if out=$("$@" 2>&1); then printf '@@tool\n%%s\n@@body\n%%s\n' "$t" "$out"; exit 0; fi
	printf '@@fail %%s: %%s\n' "$t" "${out##*"$nl"}"
}
tried=0
if have curl; then tried=1; try curl curl -fsS --max-time 15 "$u"; fi
if have wget; then tried=1; try wget wget -q -T 15 -O - "$u"; fi
if have busybox; then tried=1; try busybox-wget busybox wget -q -O - "$u"; fi
for py in python3 python; do
	if have $py; then tried=1; try $py $py -c 'import sys
try:
    from urllib.request import urlopen
except ImportError:
    from urllib2 import urlopen
sys.stdout.write(urlopen(sys.argv[1], timeout=15).read().decode("utf-8", "replace"))' "$u"; break; fi
done
if have bash; then tried=1; try bash-dev-tcp bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1
printf "GET %%s HTTP/1.0\r\nHost: %%s\r\nUser-Agent: imagevet\r\n\r\n" "$3" "$1" >&3
while IFS= read -r l || [ -n "$l" ]; do printf "%%s\n" "$l"; done <&3' bash "$h" "$p" "$path"; fi
[ "$tried" = 1 ] || echo '@@none'
exit 1
`, shellQuote(u.String()), shellQuote(u.Hostname()), shellQuote(port), shellQuote(path))
}

// CheckMetadata fetches rawURL (normally DefaultMetadataURL) from inside the guest
// with whatever HTTP client it has (curl, wget, busybox wget, python, bash's
// /dev/tcp) and passes when the answer carries instanceID. A guest with none of
// those clients is skipped with a reason: the metadata server's request log is
// then the only evidence.
func CheckMetadata(ctx context.Context, r Runner, rawURL, instanceID string) CheckResult {
	start := time.Now()
	res := CheckResult{Name: NameMetadata}
	done := func(s Status, reason, detail string) CheckResult {
		res.Status, res.Reason, res.Detail, res.Duration = s, jobs.OneLine(reason, 400), detail, time.Since(start)
		return res
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		res.Err = fmt.Errorf("metadata check: bad URL %q", rawURL)
		return done(StatusError, res.Err.Error(), "")
	}
	out, err := r.Run(ctx, shScript(fetchScript(u)))
	if err != nil {
		res.Err = err
		return done(StatusError, "could not run the metadata fetch in the guest: "+err.Error(), out.Stdout+out.Stderr)
	}
	sec := sections(out.Stdout)
	var fails []string
	for _, line := range strings.Split(out.Stdout, "\n") {
		if f, ok := strings.CutPrefix(line, "@@fail "); ok {
			fails = append(fails, strings.TrimSpace(f))
		}
	}
	tool, ok := sec["tool"]
	switch {
	case ok:
		body := sec["body"]
		var prior string
		if len(fails) > 0 {
			prior = "failed first: " + strings.Join(fails, "; ") + "\n"
		}
		if tool == "bash-dev-tcp" {
			status, rest, _ := strings.Cut(body, "\n")
			if f := strings.Fields(status); len(f) < 2 || f[1] != "200" {
				return done(StatusFail, fmt.Sprintf("metadata service answered %q to %s (via bash /dev/tcp)", strings.TrimSpace(status), rawURL), prior+body)
			}
			if _, b, found := strings.Cut(rest, "\r\n\r\n"); found {
				body = b
			}
		}
		detail := prior + "fetched with " + tool + "\n" + body
		if !strings.Contains(body, instanceID) {
			return done(StatusFail, fmt.Sprintf("the metadata service answered without this job's instance id %q (fetched with %s)", instanceID, tool), detail)
		}
		return done(StatusPass, fmt.Sprintf("the guest fetched %s with %s", u.Path, tool), detail)
	case strings.Contains(out.Stdout, "@@none"):
		return done(StatusSkip, "the guest has no HTTP client to test with ("+strings.Join(metadataClients, ", ")+")", out.Stdout+out.Stderr)
	case len(fails) > 0:
		return done(StatusFail, fmt.Sprintf("the guest could not fetch %s: %s", rawURL, strings.Join(fails, "; ")), out.Stdout+out.Stderr)
	}
	res.Err = fmt.Errorf("metadata check: unexpected script output (exit %d)", out.ExitCode)
	return done(StatusError, fmt.Sprintf("%v: %s", res.Err, jobs.FirstLine(out.Stderr, 0)), out.Stdout+out.Stderr)
}
