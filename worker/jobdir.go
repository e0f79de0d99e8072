package worker

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/imagevet/imagevet/jobs"
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

// progressLine describes a transfer in progress.
func progressLine(done, total int64) string {
	if total > 0 {
		return fmt.Sprintf("%s of %s (%d%%)", jobs.HumanBytes(done), jobs.HumanBytes(total), done*100/total)
	}
	return jobs.HumanBytes(done)
}
