package inspect

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/imagevet/imagevet/jobs"
)

// lines splits guestfish's output into its non-empty lines.
func lines(out []byte) []string {
	var l []string
	for s := range strings.SplitSeq(string(out), "\n") {
		if s != "" {
			l = append(l, s)
		}
	}
	return l
}

// parseBool reads guestfish's "true" or "false".
func parseBool(out []byte) (bool, error) {
	switch s := strings.TrimSpace(string(out)); s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, fmt.Errorf("guestfish answered %q, not true or false", s)
	}
}

// stat is the part of a guestfs statns structure Find keeps.
type stat struct {
	unixMode uint32
	size     int64
}

// mode converts the Unix st_mode to Go's.
func (s stat) mode() fs.FileMode {
	m := fs.FileMode(s.unixMode & 0o777)
	switch s.unixMode & 0o170000 {
	case 0o040000:
		m |= fs.ModeDir
	case 0o120000:
		m |= fs.ModeSymlink
	case 0o010000:
		m |= fs.ModeNamedPipe
	case 0o140000:
		m |= fs.ModeSocket
	case 0o020000:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		m |= fs.ModeDevice
	}
	if s.unixMode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if s.unixMode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if s.unixMode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// parseStats reads what lstatns or lstatnslist printed: one record per entry,
// each starting at its st_dev line ("[N] = {" and "}" lines around records are
// ignored).
func parseStats(out []byte) ([]stat, error) {
	var stats []stat
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), ": ")
		if !ok {
			continue
		}
		switch key {
		case "st_dev":
			stats = append(stats, stat{size: -1})
		case "st_mode", "st_size":
			if len(stats) == 0 {
				return nil, fmt.Errorf("%s before st_dev", key)
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			if key == "st_mode" {
				stats[len(stats)-1].unixMode = uint32(n)
			} else {
				stats[len(stats)-1].size = n
			}
		}
	}
	return stats, sc.Err()
}

// parseMountpoints reads inspect-get-mountpoints ("MOUNTPOINT: DEVICE" lines)
// in mount order: shortest mount point first, so / comes before /boot.
func parseMountpoints(out []byte) [][2]string {
	var mps [][2]string
	for _, l := range lines(out) {
		mp, dev, ok := strings.Cut(l, ": ")
		if ok && strings.HasPrefix(mp, "/") {
			mps = append(mps, [2]string{mp, dev})
		}
	}
	sort.SliceStable(mps, func(i, j int) bool { return len(mps[i][0]) < len(mps[j][0]) })
	return mps
}

// parseApplications reads inspect-list-applications2: records "[N] = {" …
// "}" of "  app2_FIELD: value" lines. A field's first line in a record wins:
// multi-line descriptions come after the fields read here. Packages come back
// sorted by name.
func parseApplications(out []byte) []jobs.Package {
	var pkgs []jobs.Package
	var cur map[string]string
	end := func() {
		if cur == nil || cur["app2_name"] == "" {
			return
		}
		v := cur["app2_version"]
		if r := cur["app2_release"]; r != "" {
			v += "-" + r
		}
		if e := cur["app2_epoch"]; e != "" && e != "0" {
			v = e + ":" + v
		}
		pkgs = append(pkgs, jobs.Package{Name: cur["app2_name"], Version: v, Arch: cur["app2_arch"]})
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "] = {") {
			end()
			cur = map[string]string{}
			continue
		}
		if cur == nil || !strings.HasPrefix(l, "  app2_") {
			continue
		}
		key, val, _ := strings.Cut(strings.TrimPrefix(l, "  "), ":")
		if _, seen := cur[key]; !seen {
			cur[key] = strings.TrimSpace(val)
		}
	}
	end()
	sort.Slice(pkgs, func(i, j int) bool {
		if pkgs[i].Name != pkgs[j].Name {
			return pkgs[i].Name < pkgs[j].Name
		}
		return pkgs[i].Arch < pkgs[j].Arch
	})
	return pkgs
}

// parseOSRelease reads os-release's KEY=value lines, values unquoted.
func parseOSRelease(b []byte) map[string]string {
	m := map[string]string{}
	for _, l := range lines(b) {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		m[k] = v
	}
	return m
}
