package jobs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The sample jobs shipped under fixtures/jobs are what users copy: each must decode
// strictly, validate, and have an expected verdict.
func TestSampleJobsAreValid(t *testing.T) {
	dir := filepath.Join("..", "fixtures", "jobs")
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	expected := map[string]struct {
		Verdict        Verdict `json:"verdict"`
		FailedCheck    string  `json:"failed_check"`
		ReasonContains string  `json:"reason_contains"`
	}{}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatalf("expected.json: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) < 10 {
		t.Fatalf("only %d sample jobs", len(files))
	}
	for _, f := range files {
		name := filepath.Base(f)
		if name == "expected.json" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		j, err := DecodeJob(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		e, ok := expected[name]
		if !ok {
			t.Errorf("%s: no entry in expected.json", name)
			continue
		}
		switch e.Verdict {
		case VerdictPass:
		case VerdictFail, VerdictError:
			if e.FailedCheck == "" {
				t.Errorf("%s: expected %s without failed_check", name, e.Verdict)
			}
		default:
			t.Errorf("%s: bad expected verdict %q", name, e.Verdict)
		}
		if j.ID+".json" != name {
			t.Errorf("%s: id %q does not match the file name", name, j.ID)
		}
	}
}
