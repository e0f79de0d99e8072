package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// TestPipelineUnalignedPieces feeds the pipeline in pieces whose sizes leave
// the file offset unaligned (as a resumed download does), so both the
// direct and the buffered write paths run, and checks content and digests.
func TestPipelineUnalignedPieces(t *testing.T) {
	for _, direct := range []bool{true, false} {
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		p := newPipeline(f)
		if !direct && p.direct != nil {
			p.direct.Close()
			p.direct = nil
		}
		var all []byte
		for i, n := range []int{4097, 9 << 20, 3, chunkSize, 1 << 20} {
			piece := randomBytes(n+8, uint64(i))[:n]
			all = append(all, piece...)
			if err := p.readFrom(context.Background(), bytes.NewReader(piece), 0, nil); err != nil {
				t.Fatal(err)
			}
		}
		sum256, sum512, n, err := p.finish()
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		h256, h512 := sha256.Sum256(all), sha512.Sum512(all)
		if n != int64(len(all)) || !bytes.Equal(got, all) ||
			sum256 != hex.EncodeToString(h256[:]) || sum512 != hex.EncodeToString(h512[:]) {
			t.Fatalf("direct=%v: n %d/%d, content equal %v, digests %s %s", direct, n, len(all), bytes.Equal(got, all), sum256, sum512)
		}
		f.Close()
	}
}

// TestPipelineLimit stops a stream at the size cap.
func TestPipelineLimit(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := newPipeline(f)
	err = p.readFrom(context.Background(), bytes.NewReader(make([]byte, 3*chunkSize)), chunkSize+1, nil)
	p.finish()
	if err != errTooLarge {
		t.Fatalf("err = %v", err)
	}
}
