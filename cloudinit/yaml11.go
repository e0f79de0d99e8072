package cloudinit

import (
	"regexp"

	"go.yaml.in/yaml/v3"
)

// cloud-init reads YAML with PyYAML, which resolves plain scalars by YAML 1.1 rules:
// 52:54:00:12:34:56 is a base-60 integer, 1_000 an integer, on a boolean,
// 2024-01-01 a date. The encoder follows YAML 1.2 and leaves those plain, so every
// string we emit goes through str, which quotes whatever YAML 1.1 would not read back
// as the same string.
var yaml11NonString = regexp.MustCompile(`^(?:` +
	// bool
	`yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF` +
	// int
	`|[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+` +
	// float
	`|[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?` +
	`|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)` +
	// null, merge, value
	`|~|null|Null|NULL||<<|=` +
	// timestamp
	`|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)?` +
	`)$`)

// str is a string that YAML 1.1 readers (cloud-init) read back as the same string.
type str string

// MarshalYAML quotes s when a YAML 1.1 reader would resolve it as anything but a string.
func (s str) MarshalYAML() (any, error) {
	if yaml11NonString.MatchString(string(s)) {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: string(s), Style: yaml.DoubleQuotedStyle}, nil
	}
	return string(s), nil
}

func strs(ss []string) []str {
	out := make([]str, len(ss))
	for i, s := range ss {
		out[i] = str(s)
	}
	return out
}
