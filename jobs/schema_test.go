package jobs

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata and schema/")

// The committed schemas must be exactly what the types generate.
func TestSchemasMatchTypes(t *testing.T) {
	for name, gen := range map[string]func() ([]byte, error){"job.schema.json": JobSchema, "result.schema.json": ResultSchema} {
		got, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join("schema", name)
		if *update {
			os.MkdirAll("schema", 0o755)
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./jobs -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go test ./jobs -run TestSchemasMatchTypes -update", path)
		}
	}
}

// The schema must agree with the decoder on what a job looks like: every sample job
// has only fields the schema knows, and every required field present.
func TestJobSchemaCoversSamples(t *testing.T) {
	raw, _ := JobSchema()
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("..", "fixtures", "jobs", "*.json"))
	for _, f := range files {
		if filepath.Base(f) == "expected.json" {
			continue
		}
		data, _ := os.ReadFile(f)
		var doc any
		json.Unmarshal(data, &doc)
		if err := conforms(schema, doc, ""); err != "" {
			t.Errorf("%s: %s", filepath.Base(f), err)
		}
	}
	if err := conforms(schema, map[string]any{"version": 1.0, "id": "x", "bogus": true}, ""); err == "" {
		t.Error("schema accepted an unknown field")
	}
}

// conforms is a small validator for the subset of JSON Schema JobSchema uses.
func conforms(s map[string]any, v any, path string) string {
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return path + ": not an object"
		}
		props, _ := s["properties"].(map[string]any)
		for _, r := range asStrings(s["required"]) {
			if _, ok := m[r]; !ok {
				return join(path, r) + ": required"
			}
		}
		for k, sub := range m {
			if ps, ok := props[k].(map[string]any); ok {
				if e := conforms(ps, sub, join(path, k)); e != "" {
					return e
				}
			} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
				if e := conforms(ap, sub, join(path, k)); e != "" {
					return e
				}
			} else if props != nil {
				return join(path, k) + ": not allowed"
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return path + ": not an array"
		}
		for _, item := range a {
			if e := conforms(s["items"].(map[string]any), item, path+"[]"); e != "" {
				return e
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return path + ": not a string"
		}
		if enum := asStrings(s["enum"]); enum != nil {
			found := false
			for _, e := range enum {
				found = found || e == str
			}
			if !found {
				return path + ": not one of " + string(mustJSON(enum))
			}
		}
	case "integer":
		if _, ok := v.(float64); !ok {
			return path + ": not a number"
		}
	}
	return ""
}

func asStrings(v any) []string {
	a, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(a))
	for _, x := range a {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }
