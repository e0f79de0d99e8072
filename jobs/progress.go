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
	Event   string    `json:"event"`             // start, done, fail, info
	Message string    `json:"message,omitempty"` // one line
}
