package jobs

import (
	"fmt"
	"os"
	"strings"
)

// A worker id names a worker in results (Result.Worker), in its heartbeat and in
// the names of the machines it boots: 1-32 lowercase letters, digits or '-'. One
// rule for the worker's configuration and the daemon's.

// ValidWorkerID reports why id is not a well-formed worker id, or nil.
func ValidWorkerID(id string) error {
	if id == "" || WorkerIDFrom(id) != id {
		return fmt.Errorf("%q must be 1-32 lowercase letters, digits or '-'", id)
	}
	return nil
}

// WorkerIDFrom makes a worker id of s: lowercased, '.' and '_' as '-', other
// characters dropped, at most 32, no leading or trailing '-'.
func WorkerIDFrom(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if b.Len() >= 32 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		case r == '.' || r == '_':
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

// DefaultWorkerID is this host's name as a worker id ("worker" when it has none
// that makes one).
func DefaultWorkerID() string {
	host, _ := os.Hostname()
	if id := WorkerIDFrom(host); id != "" {
		return id
	}
	return "worker"
}
