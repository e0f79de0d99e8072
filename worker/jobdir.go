package worker

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// writeFile creates path (0644, readable by libvirt's qemu user) and fills it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// pruneLogs keeps the newest max files in dir.
func pruneLogs(dir string, max int) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) <= max {
		return
	}
	type aged struct {
		name string
		mod  int64
	}
	files := make([]aged, 0, len(entries))
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			files = append(files, aged{e.Name(), info.ModTime().UnixNano()})
		}
	}
	sort.Slice(files, func(a, b int) bool { return files[a].mod > files[b].mod })
	for _, f := range files[min(max, len(files)):] {
		os.Remove(filepath.Join(dir, f.name))
	}
}

// sizeString renders a byte count for humans.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// progressLine describes a transfer in progress.
func progressLine(done, total int64) string {
	if total > 0 {
		return fmt.Sprintf("%s of %s (%d%%)", sizeString(done), sizeString(total), done*100/total)
	}
	return sizeString(done)
}
