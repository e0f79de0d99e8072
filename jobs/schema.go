package jobs

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// JobSchema returns the JSON Schema (draft 2020-12) of a job document, generated
// from the Go types so it cannot drift from what DecodeJob accepts.
func JobSchema() ([]byte, error) {
	return schemaOf(reflect.TypeFor[Job](), "https://imagevet.dev/schema/job-v1.json", "imagevet job", jobEnums)
}

// ResultSchema returns the JSON Schema of a result document.
func ResultSchema() ([]byte, error) {
	return schemaOf(reflect.TypeFor[Result](), "https://imagevet.dev/schema/result-v1.json", "imagevet result", resultEnums)
}

// Enumerations the types cannot express, by JSON path; a map's values are at
// path{} and its keys at path{key}.
var (
	jobEnums = map[string][]string{
		"version":                            {"1"},
		"image.format":                       imageFormats,
		"machine.firmware":                   firmwares,
		"machine.type":                       machineTypes,
		"guest.datasource":                   datasources,
		"guest.provisioning":                 provisionings,
		"guest.host_key":                     hostKeyPolicies,
		"checks.required[]":                  AllChecks,
		"checks.skip[]":                      AllChecks,
		"checks.hygiene{}":                   HygieneLevelNames,
		"checks.hygiene{key}":                HygieneRuleNames(),
		"publish.visibility":                 visibilities,
		"publish.disk_format":                diskFormats,
		"publish.rotation.older":             olderTreatments,
		"publish.rotation.replace_frequency": replaceFrequencies,
	}
	resultEnums = map[string][]string{
		"version":                            {"1"},
		"verdict":                            {string(VerdictPass), string(VerdictFail), string(VerdictError)},
		"checks[].status":                    {string(StatusPass), string(StatusFail), string(StatusSkip), string(StatusError)},
		"checks[].name":                      AllChecks,
		"console_marks[].kind":               {MarkMilestone, MarkFatal},
		"inspection.changes.regressed[]":     {MeasureSize, MeasureVirtualSize, MeasureBoot},
		"inspection.fault":                   {FaultImage, FaultWorker},
		"publish.visibility":                 visibilities,
		"publish.disk_format":                diskFormats,
		"publish.rotation.older":             olderTreatments,
		"publish.rotation.replace_frequency": replaceFrequencies,
	}
)

var durationType = reflect.TypeFor[Duration]()

func schemaOf(t reflect.Type, id, title string, enums map[string][]string) ([]byte, error) {
	s := typeSchema(t, "", enums)
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = id
	s["title"] = title
	return json.MarshalIndent(s, "", "  ")
}

// typeSchema is the schema of values of t found at path (a JSON path with [] for
// a list's items and {} for a map's values): its shape, and its enum from enums.
func typeSchema(t reflect.Type, path string, enums map[string][]string) map[string]any {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := shapeSchema(t, path, enums)
	if e, ok := enums[path]; ok {
		s["enum"] = enumValues(s["type"], e)
	}
	return s
}

// shapeSchema is the schema of t's values without an enum: durations as Go
// durations, times as RFC 3339, structs as closed objects.
func shapeSchema(t reflect.Type, path string, enums map[string][]string) map[string]any {
	switch {
	case t == durationType:
		return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$`,
			"description": "a Go duration such as \"90s\" or \"5m\""}
	case t == reflect.TypeFor[time.Time]():
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Struct:
		return structSchema(t, path, enums)
	case t.Kind() == reflect.Slice:
		return map[string]any{"type": "array", "items": typeSchema(t.Elem(), path+"[]", enums)}
	case t.Kind() == reflect.Map:
		s := map[string]any{"type": "object", "additionalProperties": typeSchema(t.Elem(), path+"{}", enums)}
		if keys, ok := enums[path+"{key}"]; ok {
			s["propertyNames"] = map[string]any{"enum": keys}
		}
		return s
	case t.Kind() == reflect.String:
		return map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		return map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return map[string]any{"type": "integer"}
	}
	return map[string]any{}
}

// structSchema is a struct's object: a property per exported JSON field, required
// unless the field is omitted when empty, and no other properties.
func structSchema(t reflect.Type, path string, enums map[string][]string) map[string]any {
	props := map[string]any{}
	var required []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		props[name] = typeSchema(f.Type, join(path, name), enums)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			required = append(required, name)
		}
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

// enumValues is an enum as the schema's type spells its values: integers for an
// integer, else the strings as written.
func enumValues(typ any, values []string) any {
	if typ != "integer" {
		return values
	}
	out := make([]any, len(values))
	for i, v := range values {
		var n int
		json.Unmarshal([]byte(v), &n)
		out[i] = n
	}
	return out
}
