package jobs

import "time"

// Progress is one live event of a running job: a stage starting or ending, or a
// notable console milestone. Submitters follow them while they wait.
type Progress struct {
	JobID   string    `json:"job_id"`
	Attempt int       `json:"attempt,omitempty"`
	Worker  string    `json:"worker,omitempty"`
	Time    time.Time `json:"time"`
	Stage   string    `json:"stage"`             // fetch, seed, boot, ssh, a check name, cleanup
	Event   string    `json:"event"`             // start, done, fail, info, or EventConsole
	Message string    `json:"message,omitempty"` // one line
	// Console is set on an EventConsole event only.
	Console *LiveConsole `json:"console,omitempty"`
}

// EventConsole is the Progress event a runner sends while the guest's console
// grows (at most every LiveConsoleInterval), carrying the console so far. A worker
// keeps the latest one per job for pages to show (queue.PutLiveConsole) instead of
// sending it to the job's followers; views that print events skip it.
const EventConsole = "console"

// LiveConsoleInterval is how often a runner sends the console of a running job at
// most; LiveConsoleLines bounds the lines it sends.
const (
	LiveConsoleInterval = time.Second
	LiveConsoleLines    = 200
)

// LiveConsole is a running attempt's console so far: its last lines (cleaned, at
// most LiveConsoleLines) and the boot milestones and fatal line the console
// watcher marked, as a result would carry them.
type LiveConsole struct {
	JobID   string        `json:"job_id"`
	Attempt int           `json:"attempt"`
	Worker  string        `json:"worker"`
	Updated time.Time     `json:"updated"`
	Tail    string        `json:"tail"`
	Marks   []ConsoleMark `json:"marks,omitempty"`
}
