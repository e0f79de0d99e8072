package jobs

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteJUnit writes results as JUnit XML for CI: one testsuite per job, one testcase
// per check. Failed and errored checks carry their reason, detail and the console
// tail; a result that failed before any check ran becomes a single "job" testcase.
func WriteJUnit(w io.Writer, results ...Result) error {
	doc := junitSuites{Name: "imagevet"}
	for _, r := range results {
		doc.Suites = append(doc.Suites, junitSuiteOf(r))
	}
	for _, s := range doc.Suites {
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		doc.Skipped += s.Skipped
		doc.Time += s.Time
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     junitSeconds `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       junitSeconds    `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Hostname   string          `xml:"hostname,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  *junitText      `xml:"system-out,omitempty"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      junitSeconds  `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",cdata"`
}

type junitText struct {
	Text string `xml:",cdata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr,omitempty"`
}

type junitSeconds time.Duration

func (s junitSeconds) MarshalXMLAttr(name xml.Name) (xml.Attr, error) {
	return xml.Attr{Name: name, Value: fmt.Sprintf("%.3f", time.Duration(s).Seconds())}, nil
}

func (s *junitSeconds) UnmarshalXMLAttr(attr xml.Attr) error {
	v, err := strconv.ParseFloat(attr.Value, 64)
	if err != nil {
		return fmt.Errorf("junit time %q: %w", attr.Value, err)
	}
	*s = junitSeconds(time.Duration(v * float64(time.Second)))
	return nil
}

// xmlText makes s safe for CDATA: characters XML 1.0 does not allow (terminal
// escapes, NULs, broken UTF-8) become U+FFFD.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r == utf8.RuneError, r >= 0xFFFE && r <= 0xFFFF, r >= 0xD800 && r <= 0xDFFF:
			return '\uFFFD'
		}
		return r
	}, s)
}

func junitSuiteOf(r Result) junitSuite {
	name := r.JobID
	if r.Publish.Name != "" && r.Publish.Name != r.JobID {
		name = r.JobID + " (" + r.Publish.Name + ")"
	}
	s := junitSuite{Name: name, Hostname: r.Worker}
	if r.ConsoleTail != "" {
		s.SystemOut = &junitText{Text: xmlText(r.ConsoleTail)}
	}
	if !r.StartedAt.IsZero() {
		s.Timestamp = r.StartedAt.UTC().Format(time.RFC3339)
		if r.FinishedAt.After(r.StartedAt) {
			s.Time = junitSeconds(r.FinishedAt.Sub(r.StartedAt))
		}
	}
	s.Properties = append(s.Properties,
		junitProperty{"verdict", string(r.Verdict)},
		junitProperty{"attempt", fmt.Sprint(r.Attempt)})
	if r.ImageFacts != nil {
		s.Properties = append(s.Properties,
			junitProperty{"os_hash_algo", r.ImageFacts.OSHashAlgo},
			junitProperty{"os_hash_value", r.ImageFacts.OSHashValue})
	}
	if r.ConsoleLog != "" {
		s.Properties = append(s.Properties, junitProperty{"console_log", r.ConsoleLog})
	}
	class := "imagevet." + r.JobID
	for _, c := range r.Checks {
		tc := junitCase{Name: c.Name, Classname: class, Time: junitSeconds(c.Duration)}
		body := problemBody(c.Reason, c.Detail, r.ConsoleTail)
		switch c.Status {
		case StatusFail:
			if c.Required {
				tc.Failure = &junitProblem{Message: c.Reason, Type: "fail", Body: body}
			} else {
				// A check the job did not require does not fail the image.
				tc.Skipped = &junitSkipped{Message: "not required, failed: " + c.Reason}
			}
		case StatusError:
			tc.Error = &junitProblem{Message: c.Reason, Type: "error", Body: body}
		case StatusSkip:
			tc.Skipped = &junitSkipped{Message: c.Reason}
		}
		s.add(tc)
	}
	// A verdict no check explains (a bad job, infrastructure trouble before any
	// check, or a failure outside the check list) still shows up as a testcase.
	if r.Verdict != VerdictPass && !s.explains(r) {
		tc := junitCase{Name: "job", Classname: class}
		msg := r.Reason
		if r.FailedCheck != "" {
			msg = r.FailedCheck + ": " + r.Reason
		}
		p := &junitProblem{Message: msg, Type: string(r.Verdict), Body: problemBody(r.Reason, "", r.ConsoleTail)}
		if r.Verdict == VerdictFail {
			tc.Failure = p
		} else {
			tc.Error = p
		}
		s.add(tc)
	}
	return s
}

func (s *junitSuite) add(tc junitCase) {
	s.Tests++
	switch {
	case tc.Failure != nil:
		s.Failures++
	case tc.Error != nil:
		s.Errors++
	case tc.Skipped != nil:
		s.Skipped++
	}
	s.Cases = append(s.Cases, tc)
}

func (s *junitSuite) explains(r Result) bool {
	for _, c := range s.Cases {
		if (r.Verdict == VerdictFail && c.Failure != nil) || (r.Verdict == VerdictError && c.Error != nil) {
			return true
		}
	}
	return false
}

func problemBody(reason, detail, console string) string {
	return xmlText(problemText(reason, detail, console))
}

func problemText(reason, detail, console string) string {
	var b strings.Builder
	b.WriteString(reason)
	if detail != "" {
		b.WriteString("\n\n")
		b.WriteString(detail)
	}
	if console != "" {
		b.WriteString("\n\n--- console tail ---\n")
		b.WriteString(console)
	}
	return b.String()
}
