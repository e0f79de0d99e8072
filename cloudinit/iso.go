package cloudinit

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/kdomanski/iso9660"
)

// WriteISO renders the seed and writes it to w as an ISO9660 image labelled Label().
// The ISO library stages files in a temporary directory, removed before returning.
// A Metadata spec has no seed disk: WriteISO refuses it.
func (s Spec) WriteISO(w io.Writer) (err error) {
	if !s.HasSeed() {
		return fieldErr("datasource", "%q has no seed disk to write", Metadata)
	}
	files, err := s.Files()
	if err != nil {
		return err
	}
	iw, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("seed iso: %w", err)
	}
	defer func() {
		if cerr := iw.Cleanup(); cerr != nil && err == nil {
			err = fmt.Errorf("seed iso: cleanup: %w", cerr)
		}
	}()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := iw.AddFile(bytes.NewReader(files[name]), name); err != nil {
			return fmt.Errorf("seed iso: add %s: %w", name, err)
		}
	}
	if err := iw.WriteTo(w, s.Label()); err != nil {
		return fmt.Errorf("seed iso: write: %w", err)
	}
	return nil
}
