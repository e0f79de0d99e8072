package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imagevet/imagevet/worker"
)

// from is where a setting's value came from.
type from int

const (
	fromDefault from = iota
	fromFlag
	fromEnv
	fromFile
)

// value is a setting's text and where it came from: the flag, a variable (where
// names it), the file (where is FILE:LINE) or the default. A list's text is its
// items joined with the row's Sep.
type value struct {
	text  string
	items []string
	from  from
	where string
}

// describe says where v came from as the help prints it.
func (v value) describe() string {
	switch v.from {
	case fromEnv, fromFile:
		return "from " + v.where
	case fromFlag:
		return "from the command line"
	}
	return "default"
}

// before is s's value before the command line: its variable's, the file's, or
// the default.
func (s setting) before(env Env) value {
	for _, name := range []string{s.Var, s.AltVar} {
		if name == "" || env.Getenv == nil {
			continue
		}
		if t := env.Getenv(name); t != "" {
			return s.listed(value{text: t, from: fromEnv, where: name})
		}
	}
	if s.Key != "" {
		if cv, ok := env.config.lookup(s.name()); ok {
			return s.listed(value{text: cv.value, from: fromFile, where: fmt.Sprintf("%s:%d", env.config.path, cv.line)})
		}
	}
	return s.listed(value{text: s.Default})
}

// listed fills a list's items from its text.
func (s setting) listed(v value) value {
	if s.Kind == kindList && s.Sep != "" {
		v.items = splitItems(v.text, s.Sep)
	}
	return v
}

// splitItems splits text at sep, trimming spaces and dropping empty items.
func splitItems(text, sep string) []string {
	var out []string
	for _, it := range strings.Split(text, sep) {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

// label names s in an error about v: --flag (VARIABLE), and the file's line
// when v came from there.
func (s setting) label(v value) string {
	l := "--" + s.Flag
	switch {
	case s.Var == "":
	case v.from == fromFile:
		l += " (" + s.Var + " from " + v.where + ")"
	case v.from == fromEnv:
		l += " (" + v.where + ")"
	default:
		l += " (" + s.Var + ")"
	}
	return l
}

// invalid is the error of v that does not parse as s: what it should be, named
// as the source spells it.
func (s setting) invalid(v value, what string) error {
	switch v.from {
	case fromEnv:
		return fmt.Errorf("%s=%q: %s", v.where, v.text, what)
	case fromFile:
		return fmt.Errorf("%s: %s %q: %s", v.where, s.name(), v.text, what)
	case fromFlag:
		return fmt.Errorf("--%s %q: %s", s.Flag, v.text, what)
	}
	return fmt.Errorf("settings table: --%s: default %q: %s", s.Flag, v.text, what)
}

// store parses v as s's kind into dst, which must be of that kind's type. A
// numeric zero is judged by s's zero rule.
func (s setting) store(dst any, v value) error {
	zero, negative, err := s.parse(dst, v)
	if err != nil || v.from == fromDefault {
		return err
	}
	return s.checkZero(v, zero, negative)
}

// parse sets dst, of s's kind's type, from v's text (empty text is the zero
// value), saying whether the number it holds is zero or negative. Text that
// does not parse leaves dst.
func (s setting) parse(dst any, v value) (zero, negative bool, err error) {
	switch p := dst.(type) {
	case *string:
		*p = v.text
	case *[]string:
		*p = slices.Clone(v.items)
	case *bool:
		err = setParsed(p, s, v, strconv.ParseBool, "not true or false")
	case *int:
		err = setParsed(p, s, v, parseInt, "not an integer")
		zero, negative = *p == 0, *p < 0
	case *float64:
		err = setParsed(p, s, v, parseFloat, "not a number")
		zero, negative = *p == 0, *p < 0
	case *int64:
		err = setParsed(p, s, v, worker.ParseBytes, "not a size like 20G or 512M")
		zero = *p == 0
	case *time.Duration:
		err = setParsed(p, s, v, parseDuration, "not a duration like 90s")
		zero, negative = *p == 0, *p < 0
	default:
		return false, false, fmt.Errorf("settings table: --%s: cannot store into %T", s.Flag, dst)
	}
	return zero, negative, err
}

// setParsed stores parse(v.text) into p. Text that does not parse is s's error
// saying what it should be, and leaves p; empty text stores what parse returns.
func setParsed[T any](p *T, s setting, v value, parse func(string) (T, error), what string) error {
	x, err := parse(v.text)
	if err != nil && v.text != "" {
		return s.invalid(v, what)
	}
	*p = x
	return nil
}

// The numeric parsers of the table's kinds, which allow spaces around a number.
func parseInt(t string) (int, error) { return strconv.Atoi(strings.TrimSpace(t)) }

func parseFloat(t string) (float64, error) { return strconv.ParseFloat(strings.TrimSpace(t), 64) }

func parseDuration(t string) (time.Duration, error) { return time.ParseDuration(strings.TrimSpace(t)) }

// checkZero applies s's zero rule to a number v gave (not the default's).
func (s setting) checkZero(v value, zero, negative bool) error {
	switch {
	case s.Zero == zeroRefused && zero:
		return fmt.Errorf("%s: 0 is not accepted; the default is %s", s.label(v), s.Default)
	case s.Zero == zeroUnset && (zero || negative):
		return fmt.Errorf("%s: must be positive; leave it out to keep the default", s.label(v))
	}
	return nil
}

// fits reports whether dst is the Go type s's kind is parsed into.
func (s setting) fits(dst any) bool {
	switch dst.(type) {
	case *string:
		return s.Kind == kindString
	case *int:
		return s.Kind == kindInt
	case *time.Duration:
		return s.Kind == kindDuration
	case *bool:
		return s.Kind == kindBool
	case *float64:
		return s.Kind == kindFloat
	case *int64:
		return s.Kind == kindBytes
	case *[]string:
		return s.Kind == kindList
	}
	return false
}

// flagValue collects what the command line gives a setting; it is parsed with
// the variable's and file's values, after the command line.
type flagValue struct {
	given   []string
	boolean bool
}

func (f *flagValue) String() string {
	if f == nil {
		return ""
	}
	return strings.Join(f.given, ",")
}

func (f *flagValue) Set(s string) error { f.given = append(f.given, s); return nil }

// IsBoolFlag lets a boolean setting's flag stand alone (-json).
func (f *flagValue) IsBoolFlag() bool { return f.boolean }

// flagError is a command line the flag package refused (and has said why), or -h.
type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

// flagStop says whether a command ends after parsing, and with which exit
// status: -h is 0, a refused command line is exitError (already reported).
func flagStop(err error) (code int, stop bool) {
	var fe *flagError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	case errors.As(err, &fe):
		return exitError, true
	}
	return 0, false
}

// rowsOf is the settings table's rows of cmd, sorted by flag.
func rowsOf(cmd string) []setting {
	var out []setting
	for _, s := range settingsTable() {
		if slices.Contains(s.Commands, cmd) {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b setting) int { return strings.Compare(a.Flag, b.Flag) })
	return out
}

// parseCommand parses cmd's command line through the settings table: every row of
// cmd is a flag, and bind (flag name to destination) gets each one's value: the
// flag's, else its variable's, else the file's, else the default. Flags may come
// after positional arguments, which it returns. A refused command line or -h is a
// *flagError (the help and the refusal are on env.Stderr); values that do not
// parse, or zeros the table refuses, are one joined error naming each.
func parseCommand(cmd, usage string, args []string, env Env, bind map[string]any) ([]string, error) {
	rows := rowsOf(cmd)
	if err := checkBindings(cmd, rows, bind); err != nil {
		return nil, err
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	given := make(map[string]*flagValue, len(rows))
	for _, s := range rows {
		given[s.Flag] = &flagValue{boolean: s.Kind == kindBool}
		fs.Var(given[s.Flag], s.Flag, s.Usage)
	}
	fs.Usage = func() { fmt.Fprint(env.Stderr, usage); printFlags(env.Stderr, rows, env) }
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, &flagError{err}
	}
	var errs []error
	for _, s := range rows {
		v := s.before(env)
		if g := given[s.Flag].given; len(g) > 0 {
			v = value{text: g[len(g)-1], from: fromFlag}
			if s.Kind == kindList {
				v.items = nil
				for _, it := range g {
					if s.Sep == "" {
						v.items = append(v.items, it)
					} else {
						v.items = append(v.items, splitItems(it, s.Sep)...)
					}
				}
				v.text = strings.Join(v.items, s.Sep)
			}
		}
		// The default first, so that a value that does not parse leaves it.
		if err := s.store(bind[s.Flag], s.listed(value{text: s.Default})); err != nil {
			errs = append(errs, err)
		}
		if v.from != fromDefault {
			errs = append(errs, s.store(bind[s.Flag], v))
		}
	}
	return rest, errors.Join(errs...)
}

// checkBindings reports a command whose destinations and table rows differ.
func checkBindings(cmd string, rows []setting, bind map[string]any) error {
	var errs []error
	seen := map[string]bool{}
	for _, s := range rows {
		switch dst, ok := bind[s.Flag]; {
		case seen[s.Flag]:
			errs = append(errs, fmt.Errorf("--%s: two rows", s.Flag))
		case !ok:
			errs = append(errs, fmt.Errorf("--%s: no destination", s.Flag))
		case !s.fits(dst):
			errs = append(errs, fmt.Errorf("--%s: a %T for its kind", s.Flag, dst))
		}
		seen[s.Flag] = true
	}
	for name := range bind {
		if !seen[name] {
			errs = append(errs, fmt.Errorf("--%s: not in the settings table", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("settings table of %s: %w", cmd, err)
	}
	return nil
}

// parseInterleaved parses flags that may come after positional arguments too
// ("submit job.json --wait"), returning the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// String is how the help names a kind's value; "" for a boolean, whose flag
// stands alone.
func (k kind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindInt:
		return "int"
	case kindDuration:
		return "duration"
	case kindFloat:
		return "number"
	case kindBytes:
		return "size"
	case kindList:
		return "list"
	}
	return ""
}

// printFlags is every command's flag help, one format: each flag, its usage with
// the variable it falls back to, and its value before the command line (the
// default, the variable's or the file's) saying where that came from, and the
// default when the value is not it. A default that depends on the machine is
// described (setting.DefaultIs), never printed as this machine's.
func printFlags(w io.Writer, rows []setting, env Env) {
	for _, s := range rows {
		head := "  -" + s.Flag
		if k := s.Kind.String(); k != "" {
			head += " " + k
		}
		usage := s.Usage
		if s.Var != "" {
			usage += " (" + s.Var + ")"
		}
		v := s.before(env)
		shown := "-"
		switch {
		case v.from == fromDefault && s.DefaultIs != "":
			shown = s.DefaultIs
		case v.text != "":
			shown = strconv.Quote(s.mask(v.text))
		}
		from := v.describe()
		if v.from != fromDefault && s.Default != "" {
			from += " (default " + s.defaultShown() + ")"
		}
		fmt.Fprintf(w, "%s\n    \t%s\n    \t= %s, %s\n", head, usage, shown, from)
	}
}

// defaultShown is the default as the help prints it: quoted, or how it is found
// where it depends on the machine.
func (s setting) defaultShown() string {
	if s.DefaultIs != "" {
		return s.DefaultIs
	}
	return strconv.Quote(s.mask(s.Default))
}

// mask hides URL passwords in a secret setting's text.
func (s setting) mask(text string) string {
	if s.Secret {
		return maskURLs(text)
	}
	return text
}
