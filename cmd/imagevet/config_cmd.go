package main

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
)

// printEffective writes the settings cmd reads (every command's when cmd is ""),
// those a variable or the file can set, each with its effective value before the
// command line and where it came from. Passwords in URLs are masked.
func printEffective(w io.Writer, cmd string, env Env) {
	tw := newTable(w, "KEY\tVARIABLE\tVALUE\tFROM\tFLAG\tCOMMANDS")
	for _, s := range settingsTable() {
		if (cmd != "" && !slices.Contains(s.Commands, cmd)) || (s.Var == "" && s.Key == "") {
			continue
		}
		v := s.before(env)
		shown := "-"
		if v.text != "" {
			shown = s.mask(v.text)
		}
		where := "default"
		switch {
		case v.from == fromEnv && v.where == s.Var:
			where = "environment"
		case v.from == fromEnv:
			where = "environment (" + v.where + ")"
		case v.from == fromFile:
			where = v.where
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t--%s\t%s\n", orDash(s.name()), orDash(s.Var), shown, where, s.Flag, strings.Join(s.Commands, ","))
	}
	tw.Flush()
}

// maskURLs replaces the password of every URL in a comma-separated list.
func maskURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else { // a token
				u.User = url.User("xxxxx")
			}
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

const configUsage = `usage: imagevet config [COMMAND]

Prints the settings COMMAND reads (every command's without one) that a variable or
the configuration file can set: the file key, the IMAGEVET_* variable, the effective
value before the command line and where it came from (environment, FILE:LINE or
default), and the flag that overrides it. URL passwords are masked.
`

// cmdConfig is imagevet config [COMMAND].
func cmdConfig(args []string, env Env) int {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	switch {
	case len(args) > 1 || (len(args) == 1 && strings.HasPrefix(args[0], "-")):
		fmt.Fprint(env.Stderr, configUsage)
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return exitError
	case len(args) == 1 && !slices.Contains(names, args[0]):
		fmt.Fprintf(env.Stderr, "imagevet config: no command %q (commands: %s)\n", args[0], strings.Join(names, ", "))
		return exitError
	}
	cmd := ""
	if len(args) == 1 {
		cmd = args[0]
	}
	if env.config != nil {
		fmt.Fprintf(env.Stdout, "configuration file: %s\n", env.config.path)
	} else {
		fmt.Fprintln(env.Stdout, "configuration file: none")
	}
	printEffective(env.Stdout, cmd, env)
	return 0
}
