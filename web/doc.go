// Package web is the operators' page: a read-only, server-rendered view of what
// imagevet knows from NATS alone. The overview shows one row per image (latest
// verdict, why, when, and a strip of its last runs), failures first, filtered and
// paged by its URL's query; a family's page shows every release vetted against the
// 24-hour promise, with server-drawn charts of boot time, time to verdict and image
// size; a job page shows the checks, a to-scale timeline of the stages with the
// console's milestones, the console tail with the fatal line highlighted, the image
// facts and links to the JSON result, JUnit and the full console log; the queue and
// workers pages show what runs where.
// A running job's page follows its progress live (server-sent events).
//
// Everything the page needs (templates, stylesheet, script) is embedded; nothing is
// fetched from elsewhere. The package reads NATS through Source and keeps an Index
// of the results stream in memory, so rendering the overview costs no NATS round
// trip.
package web
