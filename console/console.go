// Package console follows a guest's serial console log while the guest runs and
// judges it against a table of patterns (mantle-style console checks): the first
// fatal match is reported within one poll interval of the line being written, boot
// milestones are timed, warnings are recorded, and a bounded tail is kept for the
// result.
package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for Options.
const (
	DefaultPollInterval = 50 * time.Millisecond
	DefaultTailLines    = 200
	DefaultTailBytes    = 64 << 10
	// maxLine bounds a line without newline; longer runs are split.
	maxLine = 8 << 10
	// maxStageLines bounds the lines kept of each provisioning stage, apart
	// from the tail, so a stage's own words outlive a long grace full of
	// other services' status lines.
	maxStageLines = 100
	// maxWarnings bounds the recorded warnings.
	maxWarnings = 100
)

// Match is one console line that matched a check.
type Match struct {
	Check  string
	Kind   Kind
	Reason string
	// Line is the matching console line, control characters and escapes removed.
	Line string
	// Time is when the watcher read the line; Elapsed is Time minus the start of
	// the watch.
	Time    time.Time
	Elapsed time.Duration
}

// String renders the match as one line: "reason: line".
func (m Match) String() string {
	line := strings.TrimSpace(m.Line)
	if len(line) > 300 {
		line = line[:300] + "…"
	}
	return m.Reason + ": " + line
}

// Options tune a watch; the zero value uses the defaults.
type Options struct {
	PollInterval time.Duration
	TailLines    int
	TailBytes    int
}

// Console is a live watch of one console log file. Its methods are safe for
// concurrent use.
type Console struct {
	path   string
	checks []Rule
	opts   Options
	start  time.Time

	failed chan Match
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	mu         sync.Mutex
	fatal      *Match
	pending    *Match // a fatal match waiting for its explanation (Rule.Await)
	awaiting   string // the check that would explain it
	pendTimer  *time.Timer
	warnings   []Match
	milestones []Match
	seen       map[string]bool  // milestone names already recorded
	latest     map[string]Match // the latest match of each activity check
	tail       []string
	tailBytes  int
	stageLines map[string][]string // each provisioning stage's own last lines
	partial    string
	partialHit map[string]bool // checks already matched on the partial line
	lastAfter  map[string]int  // contextual checks: line number of the last After match
	lineNo     int
	bytesRead  int64
	printed    printedKeys // host keys the guest printed
	lastGrew   time.Time   // when the file last grew
	readErr    error
}

// Watch starts following the console log at path with DefaultPollInterval.
// The file may not exist yet and may be truncated or replaced while watched. The
// watch ends when ctx is done or Close is called.
func Watch(ctx context.Context, path string, checks []Rule) *Console {
	return WatchWith(ctx, path, checks, Options{})
}

// WatchWith is Watch with explicit options.
func WatchWith(ctx context.Context, path string, checks []Rule, opts Options) *Console {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.TailLines <= 0 {
		opts.TailLines = DefaultTailLines
	}
	if opts.TailBytes <= 0 {
		opts.TailBytes = DefaultTailBytes
	}
	c := &Console{
		path:       path,
		checks:     checks,
		opts:       opts,
		start:      time.Now(),
		failed:     make(chan Match, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		seen:       map[string]bool{},
		latest:     map[string]Match{},
		partialHit: map[string]bool{},
		lastAfter:  map[string]int{},
		stageLines: map[string][]string{},
	}
	go c.run(ctx)
	return c
}

// Failed delivers the first fatal match, once. It is never closed; select on it
// together with the job context.
func (c *Console) Failed() <-chan Match { return c.failed }

// Started is when the watch began: match times are measured from it.
func (c *Console) Started() time.Time { return c.start }

// Done is closed when the watch has ended and the file has been read a last time.
func (c *Console) Done() <-chan struct{} { return c.done }

// Close ends the watch after one final read of the file, so lines written before
// Close are judged, and waits for it. It is idempotent.
func (c *Console) Close() error {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// Fatal returns the first fatal match, if any.
func (c *Console) Fatal() (Match, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fatal == nil {
		return Match{}, false
	}
	return *c.fatal, true
}

// Warnings returns the recorded warning matches in console order (at most 100).
func (c *Console) Warnings() []Match {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Match(nil), c.warnings...)
}

// Milestones returns the first match of each milestone check, in console order.
func (c *Console) Milestones() []Match {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Match(nil), c.milestones...)
}

// Milestone returns the first match of the named milestone, if seen.
func (c *Console) Milestone(name string) (Match, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.milestones {
		if m.Check == name {
			return m, true
		}
	}
	return Match{}, false
}

// Latest returns the latest match of the named activity check, if seen.
func (c *Console) Latest(name string) (Match, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.latest[name]
	return m, ok
}

// BytesRead is how much of the console log has been read so far.
func (c *Console) BytesRead() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytesRead
}

// Tail returns the last n cleaned lines of the console (n <= 0: all kept lines),
// including an unterminated last line, joined with newlines.
func (c *Console) Tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := c.tail
	if c.partial != "" {
		lines = append(append([]string(nil), lines...), c.partial)
	}
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *Console) run(ctx context.Context) {
	defer close(c.done)
	defer c.settlePending() // the console ended: nothing more will explain it
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var off int64
	var dec lineSplitter
	buf := make([]byte, 64<<10)
	t := time.NewTicker(c.opts.PollInterval)
	defer t.Stop()

	poll := func() {
		if f == nil {
			var err error
			f, err = os.Open(c.path)
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					c.setErr(fmt.Errorf("console: open %s: %w", c.path, err))
				}
				f = nil
				return
			}
			off = 0
		}
		// Read what is there from the current handle first, so a rotated file's
		// last lines are not lost, then follow a replacement or truncation.
		for {
			n, err := f.ReadAt(buf, off)
			if n > 0 {
				c.grew(time.Now())
				off += int64(n)
				c.feed(dec.write(buf[:n]))
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					c.setErr(fmt.Errorf("console: read %s: %w", c.path, err))
				}
				break
			}
		}
		c.feedPartial(dec.pending())
		fi, err := f.Stat()
		if err != nil {
			return
		}
		if fi.Size() < off { // truncated in place
			off = 0
			c.feed(dec.flush())
			return
		}
		if pi, err := os.Stat(c.path); err == nil && !sameFile(fi, pi) { // replaced
			f.Close()
			f = nil
			c.feed(dec.flush())
		}
	}

	for {
		poll()
		select {
		case <-ctx.Done():
			poll()
			c.feed(dec.flush())
			return
		case <-c.stop:
			poll()
			c.feed(dec.flush())
			return
		case <-t.C:
		}
	}
}

func sameFile(a, b os.FileInfo) bool {
	as, ok1 := a.Sys().(*syscall.Stat_t)
	bs, ok2 := b.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return os.SameFile(a, b)
	}
	return as.Dev == bs.Dev && as.Ino == bs.Ino
}

// failWith records m as the fatal match. c.mu must be held.
func (c *Console) failWith(m Match) {
	if c.pendTimer != nil {
		c.pendTimer.Stop()
	}
	c.pending = nil
	c.fatal = &m
	c.failed <- m // buffered, sent once
}

// settlePending fails with the pending match when its explanation did not come.
func (c *Console) settlePending() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fatal == nil && c.pending != nil {
		c.failWith(*c.pending)
	}
}

func (c *Console) grew(now time.Time) {
	c.mu.Lock()
	c.lastGrew = now
	c.mu.Unlock()
}

// LastOutput is when (since the watch began) the guest last wrote to its console,
// and false while it has written nothing.
func (c *Console) LastOutput() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastGrew.IsZero() {
		return 0, false
	}
	return c.lastGrew.Sub(c.start), true
}

func (c *Console) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr == nil {
		c.readErr = err
	}
}

// feed judges complete lines and appends them to the tail.
func (c *Console) feed(lines []string) {
	if len(lines) == 0 {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, raw := range lines {
		c.bytesRead += int64(len(raw)) + 1
		line := Clean(raw)
		c.lineNo++
		c.printed.scan(line, now)
		for i := range c.checks {
			ck := &c.checks[i]
			if c.partialHit[ck.Name] {
				continue
			}
			if c.match(ck, line, true) {
				c.record(ck, line, now)
			}
		}
		clear(c.partialHit)
		c.partial = ""
		c.appendTail(line)
		c.appendStageLine(line)
	}
}

// feedPartial judges the unterminated last line: prompts (login:, grub rescue>,
// (initramfs)) never end with a newline.
func (c *Console) feedPartial(raw string) {
	line := Clean(raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = line
	if line == "" {
		return
	}
	now := time.Now()
	for i := range c.checks {
		ck := &c.checks[i]
		if c.partialHit[ck.Name] {
			continue
		}
		if c.match(ck, line, false) {
			c.partialHit[ck.Name] = true
			c.record(ck, line, now)
		}
	}
}

// match reports whether ck matches line. For contextual checks complete lines
// update the After window; partial lines only read it.
func (c *Console) match(ck *Rule, line string, complete bool) bool {
	if ck.After == nil {
		return ck.Pattern.MatchString(line)
	}
	lineNo := c.lineNo
	if !complete {
		lineNo = c.lineNo + 1
	}
	if complete && ck.After.MatchString(line) {
		c.lastAfter[ck.Name] = lineNo
	}
	last, ok := c.lastAfter[ck.Name]
	if !ok || lineNo-last > ck.Within {
		return false
	}
	return ck.Pattern.MatchString(line)
}

func (c *Console) record(ck *Rule, line string, now time.Time) {
	m := Match{Check: ck.Name, Kind: ck.Kind, Reason: ck.Reason, Line: line, Time: now, Elapsed: now.Sub(c.start)}
	switch ck.Kind {
	case Fatal:
		switch {
		case c.fatal != nil:
		case c.pending != nil && ck.Name != c.awaiting:
			// Not the explanation: the pending match stands.
		case c.pending == nil && ck.Await != "" && ck.AwaitFor > 0:
			c.pending, c.awaiting = &m, ck.Await
			c.pendTimer = time.AfterFunc(ck.AwaitFor, c.settlePending)
		default:
			c.failWith(m)
		}
	case Warning:
		if len(c.warnings) < maxWarnings {
			c.warnings = append(c.warnings, m)
		}
	case Milestone:
		if !c.seen[ck.Name] {
			c.seen[ck.Name] = true
			c.milestones = append(c.milestones, m)
		}
	case Activity:
		c.latest[ck.Name] = m
	}
}

// stages are the provisioning stages whose own lines the console keeps.
var stages = ProvisioningStages()

// appendStageLine keeps line among the last lines of each provisioning stage
// it belongs to, its first KiB; of consecutive running-job lines, the last.
func (c *Console) appendStageLine(line string) {
	for _, st := range stages {
		if !st.Lines.MatchString(line) {
			continue
		}
		line = strings.TrimSpace(line)
		if len(line) > 1024 {
			line = strings.ToValidUTF8(line[:1024], "") + "…"
		}
		kept := c.stageLines[st.Name]
		if n := len(kept); n > 0 && RunningJob.MatchString(line) && RunningJob.MatchString(kept[n-1]) {
			// systemd repeats its running-job line every half second: one
			// stands for a run of them, and the stage's words stay kept.
			kept = kept[:n-1]
		}
		kept = append(kept, line)
		if len(kept) > 2*maxStageLines {
			kept = append([]string(nil), kept[len(kept)-maxStageLines:]...)
		}
		c.stageLines[st.Name] = kept
	}
}

// StageLines returns the last lines (at most 100, oldest first) that are the
// named provisioning stage's own (ProvisioningStage.Lines), however much else
// the console printed after them.
func (c *Console) StageLines(name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.stageLines[name]
	return append([]string(nil), kept[max(0, len(kept)-maxStageLines):]...)
}

func (c *Console) appendTail(line string) {
	c.tail = append(c.tail, line)
	c.tailBytes += len(line) + 1
	drop := 0
	for len(c.tail)-drop > c.opts.TailLines || (c.tailBytes > c.opts.TailBytes && len(c.tail)-drop > 1) {
		c.tailBytes -= len(c.tail[drop]) + 1
		drop++
	}
	if drop > 0 {
		// Copy down once the dropped prefix is large, so memory stays bounded.
		c.tail = c.tail[drop:]
		if cap(c.tail) > 4*c.opts.TailLines {
			c.tail = append([]string(nil), c.tail...)
		}
	}
}

// lineSplitter turns a byte stream into lines, holding back an unterminated end.
type lineSplitter struct{ buf []byte }

func (s *lineSplitter) write(p []byte) []string {
	s.buf = append(s.buf, p...)
	var lines []string
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, string(s.buf[:i]))
		s.buf = s.buf[i+1:]
	}
	for len(s.buf) > maxLine {
		lines = append(lines, string(s.buf[:maxLine]))
		s.buf = s.buf[maxLine:]
	}
	if len(s.buf) == 0 {
		s.buf = nil
	}
	return lines
}

func (s *lineSplitter) pending() string { return string(s.buf) }

func (s *lineSplitter) flush() []string {
	if len(s.buf) == 0 {
		return nil
	}
	l := string(s.buf)
	s.buf = nil
	return []string{l}
}

// ansi matches CSI and OSC escape sequences, character-set selections and the
// other two-byte escapes (Fp, Fe and Fs: ESC 7, ESC M, ESC c that resets the
// terminal).
var ansi = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[()][0-9A-Za-z]|[0-Z\\-~])`)

// Clean removes ANSI escape sequences, the line-ending carriage return and other
// control characters (tabs and inner carriage returns become spaces) from a
// console line.
func Clean(s string) string {
	if strings.IndexByte(s, 0x1b) >= 0 {
		s = ansi.ReplaceAllString(s, "")
	}
	// Line ends are "\r\n" on a serial console; a carriage return inside a line
	// (progress output) becomes a space so no text is lost to matching.
	s = strings.TrimRight(s, "\r")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\r':
			return ' '
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, s)
}
