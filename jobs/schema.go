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
		"image.format":                       {FormatQCOW2, FormatRaw},
		"machine.firmware":                   {FirmwareBIOS, FirmwareUEFI},
		"machine.type":                       {MachinePC, MachineQ35},
		"guest.datasource":                   {DatasourceNoCloud, DatasourceConfigDrive, DatasourceMetadata},
		"guest.provisioning":                 {ProvisioningCloudInit, ProvisioningIgnition},
		"guest.host_key":                     {HostKeyPinned, HostKeyAny},
		"checks.required[]":                  AllChecks,
		"checks.skip[]":                      AllChecks,
		"checks.hygiene{}":                   HygieneLevelNames,
		"checks.hygiene{key}":                HygieneRuleNames(),
		"publish.visibility":                 {"public", "community", "shared", "private"},
		"publish.disk_format":                {FormatRaw, FormatQCOW2},
		"publish.rotation.older":             {OlderCommunity, OlderHidden},
		"publish.rotation.replace_frequency": {"daily", "weekly", "monthly", "quarterly", "yearly", "never"},
	}
	resultEnums = map[string][]string{
		"version":                            {"1"},
		"verdict":                            {string(VerdictPass), string(VerdictFail), string(VerdictError)},
		"checks[].status":                    {string(StatusPass), string(StatusFail), string(StatusSkip), string(StatusError)},
		"checks[].name":                      AllChecks,
		"console_marks[].kind":               {MarkMilestone, MarkFatal},
		"inspection.changes.regressed[]":     {MeasureSize, MeasureVirtualSize, MeasureBoot},
		"inspection.fault":                   {FaultImage, FaultWorker},
		"publish.visibility":                 {"public", "community", "shared", "private"},
		"publish.disk_format":                {FormatRaw, FormatQCOW2},
		"publish.rotation.older":             {OlderCommunity, OlderHidden},
		"publish.rotation.replace_frequency": {"daily", "weekly", "monthly", "quarterly", "yearly", "never"},
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

func typeSchema(t reflect.Type, path string, enums map[string][]string) map[string]any {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := map[string]any{}
	switch {
	case t == durationType:
		s["type"] = "string"
		s["pattern"] = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$`
		s["description"] = "a Go duration such as \"90s\" or \"5m\""
	case t == reflect.TypeFor[time.Time]():
		s["type"] = "string"
		s["format"] = "date-time"
	case t.Kind() == reflect.Struct:
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
		s["type"] = "object"
		s["properties"] = props
		s["additionalProperties"] = false
		if len(required) > 0 {
			s["required"] = required
		}
	case t.Kind() == reflect.Slice:
		s["type"] = "array"
		s["items"] = typeSchema(t.Elem(), path+"[]", enums)
	case t.Kind() == reflect.Map:
		s["type"] = "object"
		s["additionalProperties"] = typeSchema(t.Elem(), path+"{}", enums)
		if keys, ok := enums[path+"{key}"]; ok {
			s["propertyNames"] = map[string]any{"enum": keys}
		}
	case t.Kind() == reflect.String:
		s["type"] = "string"
	case t.Kind() == reflect.Bool:
		s["type"] = "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		s["type"] = "integer"
	}
	if e, ok := enums[path]; ok {
		if s["type"] == "integer" {
			vals := make([]any, len(e))
			for i, v := range e {
				var n int
				json.Unmarshal([]byte(v), &n)
				vals[i] = n
			}
			s["enum"] = vals
		} else {
			s["enum"] = e
		}
	}
	return s
}
