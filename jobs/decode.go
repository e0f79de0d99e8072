package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// MaxDocumentSize bounds a job or result document.
const MaxDocumentSize = 1 << 20

// FieldError is one problem with one field of a document.
type FieldError struct {
	Path string // dotted JSON path, e.g. "image.checksum" or "commands[1].run"
	Msg  string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Msg }

// InvalidError lists every problem found in a document. A job that fails to decode or
// validate is the submitter's fault: never retried.
type InvalidError struct {
	Doc      string // "job" or "result"
	Problems []FieldError
}

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return "invalid " + e.Doc + ": " + strings.Join(parts, "; ")
}

// DecodeJob strictly decodes and validates a job: unknown fields, trailing data, wrong
// types and invalid values are errors naming the field. Defaults are not applied.
// A document larger than MaxDocumentSize is refused before it is parsed.
func DecodeJob(data []byte) (Job, error) {
	if len(data) > MaxDocumentSize {
		return Job{}, tooLarge("job")
	}
	var j Job
	if err := decodeStrict("job", data, &j); err != nil {
		return Job{}, err
	}
	if err := j.Validate(); err != nil {
		return Job{}, err
	}
	return j, nil
}

// ReadJob reads and decodes a job from r, bounded by MaxDocumentSize.
func ReadJob(r io.Reader) (Job, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDocumentSize+1))
	if err != nil {
		return Job{}, err
	}
	if len(data) > MaxDocumentSize {
		return Job{}, tooLarge("job")
	}
	return DecodeJob(data)
}

func tooLarge(doc string) error {
	return &InvalidError{Doc: doc, Problems: []FieldError{{Path: "(document)", Msg: fmt.Sprintf("larger than %d bytes", MaxDocumentSize)}}}
}

// DecodeResult strictly decodes a result.
func DecodeResult(data []byte) (Result, error) {
	var r Result
	if err := decodeStrict("result", data, &r); err != nil {
		return Result{}, err
	}
	if err := checkVersion("result", r.Version); err != nil {
		return Result{}, err
	}
	return r, nil
}

// checkVersion refuses a stored document written in a version this build cannot read.
func checkVersion(doc string, v int) error {
	if v != Version {
		return &InvalidError{Doc: doc, Problems: []FieldError{{Path: "version", Msg: fmt.Sprintf("unsupported version %d (this build reads %d)", v, Version)}}}
	}
	return nil
}

func decodeStrict(doc string, data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &InvalidError{Doc: doc, Problems: []FieldError{{Path: "(document)", Msg: "empty"}}}
	}
	// Unknown fields and unparsable text values first, so each is named with its full path.
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		return &InvalidError{Doc: doc, Problems: []FieldError{{Path: "(document)", Msg: syntaxMessage(data, err)}}}
	}
	var unknown []FieldError
	findUnknown(raw, reflect.TypeOf(v).Elem(), "", &unknown)
	if len(unknown) > 0 {
		sort.Slice(unknown, func(a, b int) bool { return unknown[a].Path < unknown[b].Path })
		return &InvalidError{Doc: doc, Problems: unknown}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &InvalidError{Doc: doc, Problems: []FieldError{typeProblem(err)}}
	}
	if dec.More() {
		return &InvalidError{Doc: doc, Problems: []FieldError{{Path: "(document)", Msg: "trailing data after the JSON object"}}}
	}
	return nil
}

func syntaxMessage(data []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
		return fmt.Sprintf("not valid JSON (line %d): %s", line, se.Error())
	}
	return "not valid JSON: " + err.Error()
}

func typeProblem(err error) FieldError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		path := te.Field
		if path == "" {
			path = "(document)"
		}
		return FieldError{Path: path, Msg: fmt.Sprintf("must be %s, not a JSON %s", jsonKind(te.Type), te.Value)}
	}
	// Errors from UnmarshalText (durations) do not carry the field; the decoder
	// wraps them with nothing better, so report them as they are.
	return FieldError{Path: "(document)", Msg: err.Error()}
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// findUnknown walks a generic JSON value alongside the Go type it will decode into
// and records every object key the type does not have and every text value (such as a
// duration) that does not parse.
func findUnknown(v any, t reflect.Type, path string, out *[]FieldError) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := v.(string); ok && reflect.PointerTo(t).Implements(textUnmarshaler) {
		// Text values (durations) are parsed here so their errors carry the path.
		u := reflect.New(t).Interface().(interface{ UnmarshalText([]byte) error })
		if err := u.UnmarshalText([]byte(s)); err != nil {
			*out = append(*out, FieldError{Path: path, Msg: err.Error()})
		}
		return
	}
	switch val := v.(type) {
	case map[string]any:
		switch t.Kind() {
		case reflect.Struct:
			fields := jsonFields(t)
			for k, sub := range val {
				ft, ok := fields[k]
				if !ok {
					*out = append(*out, FieldError{Path: join(path, k), Msg: "unknown field"})
					continue
				}
				findUnknown(sub, ft, join(path, k), out)
			}
		case reflect.Map:
			for k, sub := range val {
				findUnknown(sub, t.Elem(), join(path, k), out)
			}
		}
	case []any:
		if t.Kind() == reflect.Slice {
			for i, sub := range val {
				findUnknown(sub, t.Elem(), path+"["+strconv.Itoa(i)+"]", out)
			}
		}
	}
}

var textUnmarshaler = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()

func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
