package vm

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// MaxNameLen is the longest machine name DomainName produces.
const MaxNameLen = 64

const (
	maxPrefixLen = 20
	maxWorkerLen = 20
	hashLen      = 8
)

// WorkerPrefix is the name prefix shared by every machine of one worker, the
// argument to Hypervisor.Sweep. A trailing '-' on prefix is implied. Worker and job are joined by "--", which no
// sanitized part contains, so one worker's prefix never matches another
// worker's machines (worker "w1" does not sweep worker "w1-x").
func WorkerPrefix(prefix, worker string) string {
	return Prefix(prefix) + part(worker, maxWorkerLen) + "--"
}

// Prefix is the name prefix shared by every machine any imagevet process with
// the domain prefix makes (WorkerPrefix without the worker), or "" without one.
func Prefix(prefix string) string {
	if prefix = strings.TrimRight(prefix, "-"); prefix != "" {
		return part(prefix, maxPrefixLen) + "-"
	}
	return ""
}

// DomainName is the machine name for one job of one worker: lowercase
// [a-z0-9-], at most MaxNameLen characters, stable for the same inputs, and
// starting with WorkerPrefix(prefix, worker). Parts that had to be altered or
// shortened carry a short hash of the original so distinct ids stay distinct.
func DomainName(prefix, worker, job string) string {
	wp := WorkerPrefix(prefix, worker)
	return wp + part(job, MaxNameLen-len(wp))
}

// part sanitizes s to [a-z0-9-] without leading, trailing or repeated '-',
// at most max characters. If that changed s, a hash of s is appended (within
// max) so different inputs keep different names.
func part(s string, max int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
		}
		dash = true
	}
	out := strings.TrimRight(b.String(), "-")
	if out == s && out != "" && len(out) <= max {
		return out
	}
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:])[:hashLen]
	keep := max - hashLen - 1
	if keep < 0 {
		return h[:min(max, hashLen)]
	}
	if len(out) > keep {
		out = strings.TrimRight(out[:keep], "-")
	}
	if out == "" {
		return h
	}
	return out + "-" + h
}
