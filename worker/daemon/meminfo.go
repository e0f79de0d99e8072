package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// MemInfo reports how much memory the host can still give to new work.
type MemInfo interface {
	// AvailableMiB returns the host's available memory in MiB (Linux MemAvailable:
	// free memory plus what the kernel can reclaim without swapping).
	AvailableMiB() (int64, error)
}

// ProcMeminfo reads MemAvailable from a meminfo file.
type ProcMeminfo struct {
	// Path is the file to read; empty means /proc/meminfo.
	Path string
}

// AvailableMiB implements MemInfo.
func (p ProcMeminfo) AvailableMiB() (int64, error) {
	path := p.Path
	if path == "" {
		path = "/proc/meminfo"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read meminfo: %w", err)
	}
	return parseMemAvailable(data)
}

// ErrNoMemAvailable means the meminfo text has no usable MemAvailable line.
var ErrNoMemAvailable = errors.New("meminfo: no MemAvailable line")

func parseMemAvailable(data []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 2 || string(fields[0]) != "MemAvailable:" {
			continue
		}
		kb, err := strconv.ParseInt(string(fields[1]), 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("%w: %q", ErrNoMemAvailable, sc.Text())
		}
		if len(fields) > 2 && string(fields[2]) != "kB" {
			return 0, fmt.Errorf("%w: unit %q", ErrNoMemAvailable, fields[2])
		}
		return kb / 1024, nil
	}
	return 0, ErrNoMemAvailable
}

// FixedMemInfo reports a constant amount; for tests and hosts where admission is
// decided elsewhere.
type FixedMemInfo int64

// AvailableMiB implements MemInfo.
func (f FixedMemInfo) AvailableMiB() (int64, error) { return int64(f), nil }
