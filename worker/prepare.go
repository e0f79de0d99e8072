package worker

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/imagevet/imagevet/worker/vm"
)

// Prepare readies the host side of the configuration: the state directory, which
// libvirt's qemu user must be able to traverse. Call it once at start, after
// Validate.
func (c *Config) Prepare() error {
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	abs, err := filepath.Abs(c.StateDir)
	if err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	if err := vm.QemuSearchable(abs); err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	return nil
}
