// Package worker runs imagevet jobs on one host. One job is one lifecycle, read top
// to bottom in Runner.Run and jobRun.run:
//
//	Runner.Run ─ validate ─► jobRun.run ──────────────────────────────────────────┐
//	  accel       kvm|tcg (probed once); scales every guest timeout under tcg      │
//	  fetch       image store: download|copy, verify digests, inspect, convert to  │
//	              publish.disk_format, cache        ─ fails `image` / errors       │
//	  prepare     job dir: overlay over the cached base, keys, seed ISO,           │
//	              metadata service                  ─ a bad seed is a bad job      │
//	  inspect     beside the boot, from its start: libguestfs looks inside the     │
//	              read-only base (inspection.go, package inspect); joined when     │
//	              run returns (at once cancelled if the job already failed)        │
//	              ─ records the facts, judges `identity`                           │
//	  boot        libvirt domain; the console is watched from its first byte: a    │
//	              fatal line cancels the guest context at once (the verdict is     │
//	              the console's match, not the cancel)                             │
//	  wait SSH    awaitSSH (login.go): the SSH probe within the boot timeout, or   │
//	              sooner when the console proves it will not come; judges nothing  │
//	  judge boot  judgeBoot (boot.go): the boot verdict from the console, the      │
//	              machine and the wait                  ─ fails `boot`             │
//	  login       the ssh check from the wait; skipped when boot failed            │
//	              ─ fails `ssh` (a provisioning stage that stalled: its own check) │
//	  checks      the guestChecks table (checks.go): provisioning (cloud-init or   │
//	              Ignition) beside metadata, then hostname, then the job's commands│
//	  verdict     a fatal console line seen during the checks still fails `boot`   │
//	                                                                               ▼
//	  cleanup (always, deferred in Run): on its own bounded context, never the job's
//	  cancelled one: close SSH, destroy the domain (or keep it when asked), stop the
//	  metadata service, release the cached image, remove the job dir; then the
//	  recorder's finish() builds the one Result.
//
// Who decides: each stage records its own outcome in the recorder (record.go) as a
// value — a check's result, or stop(stage, err) for an error that ends the job;
// Classify (verdict.go) maps such an error to image fault (fail), bad job or
// infrastructure (error, retryable as the error says). The job context carries
// deadlines and shutdown only, never a verdict. Who cleans up: jobRun owns every
// resource it made (machine, metadata server, image hold, directory) from the
// moment it exists, and cleanup releases each exactly once.
package worker
