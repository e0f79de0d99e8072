// Package queue is imagevet's NATS layer: every stream, key-value bucket and object
// store the services share, with their settings and replicas in one place, and the
// connection that reaches them.
//
//	stream IMAGEVET_JOBS      submitted jobs until a worker reports them (jobs.go, submit.go)
//	stream IMAGEVET_RESULTS   one result per job, what publishers act on (results.go, follow.go)
//	stream IMAGEVET_PROGRESS  a day of progress events, for pages opened mid-job (live.go)
//	kv imagevet_queue         the queue's settings, written once (queue.go)
//	kv imagevet_status        the latest verdict per image name (status.go)
//	kv imagevet_jobs          each job's attempts and stage (jobs.go)
//	kv imagevet_workers       live workers' heartbeats (workers.go)
//	kv imagevet_releases      the watcher's release per family (releases.go)
//	kv imagevet_published     the publisher's Latest per family and cloud (published.go)
//	kv imagevet_publications  each job's publication per cloud (publications.go)
//	kv imagevet_leases        leases a service holds on a family (leases.go)
//	kv imagevet_vetted        each family's verdicts, what a new release is compared with (vetted.go)
//	kv imagevet_live_consoles each running job's console so far (live.go)
//	obj imagevet_consoles     every attempt's full console log (results.go)
//
// Services hold a *Queue and declare, where they use it, the narrow interface they
// need of it. The documents that travel here are package jobs'.
package queue
