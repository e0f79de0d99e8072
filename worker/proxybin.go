package worker

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Prepare readies the host side of the configuration: the state directory, which
// libvirt's qemu user must be able to traverse, and a metadata proxy binary that user
// can execute. When ProxyCommand lives somewhere qemu cannot reach (a build tree
// under a private home directory, say), a copy is installed as STATE_DIR/bin/imagevet
// and used instead. Call it once at start, after Validate.
func (c *Config) Prepare() error {
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	if err := reachableByOthers(c.StateDir, false); err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	if reachableByOthers(c.ProxyCommand, true) == nil {
		return nil
	}
	installed, err := installExecutable(c.ProxyCommand, filepath.Join(c.StateDir, "bin", "imagevet"))
	if err != nil {
		return fmt.Errorf("proxy-command: %s is not executable by libvirt's qemu user and could not be copied: %w", c.ProxyCommand, err)
	}
	c.ProxyCommand = installed
	return nil
}

// reachableByOthers reports why a user other than the owner could not reach path
// (execute it, when exec) through every directory above it, or nil.
func reachableByOthers(path string, exec bool) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return err
	}
	if exec && fi.Mode().Perm()&0o005 != 0o005 {
		return fmt.Errorf("%s is mode %v, not executable by others", abs, fi.Mode().Perm())
	}
	if !exec && fi.IsDir() && fi.Mode().Perm()&0o001 == 0 {
		return fmt.Errorf("%s is mode %v, not searchable by others", abs, fi.Mode().Perm())
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		di, err := os.Stat(d)
		if err != nil {
			return err
		}
		if di.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s is mode %v, not searchable by others", d, di.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// installExecutable copies src to dst (0755) atomically and returns dst.
func installExecutable(src, dst string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".imagevet-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp.Name(), dst)
}
