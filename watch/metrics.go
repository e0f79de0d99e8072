package watch

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imagevet/imagevet/watch/feed"
)

// Metrics are the watcher's Prometheus metrics, per family.
type Metrics struct {
	reg         *prometheus.Registry
	lastSuccess *prometheus.GaugeVec
	found       *prometheus.CounterVec
	feedErrors  *prometheus.CounterVec
	requests    *prometheus.CounterVec
	pollSeconds *prometheus.HistogramVec
}

// NewMetrics makes the metrics in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "imagevet_watch_last_success_timestamp_seconds", Help: "End of the family's last successful feed check (Unix time).",
		}, []string{"family"}),
		found: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagevet_watch_releases_found_total", Help: "New releases this watcher recorded and queued, by family.",
		}, []string{"family"}),
		feedErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagevet_watch_feed_errors_total", Help: "Failed feed checks, by family and kind (unavailable, malformed, untrusted, other).",
		}, []string{"family", "kind"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagevet_watch_feed_requests_total", Help: "HTTP requests sent to vendor feeds, by family.",
		}, []string{"family"}),
		pollSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imagevet_watch_check_seconds", Help: "Time one feed check took, by family.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}, []string{"family"}),
	}
	m.reg.MustRegister(m.lastSuccess, m.found, m.feedErrors, m.requests, m.pollSeconds)
	return m
}

func (m *Metrics) observe(o Outcome, took time.Duration) {
	m.requests.WithLabelValues(o.Family).Add(float64(o.Requests))
	m.pollSeconds.WithLabelValues(o.Family).Observe(took.Seconds())
	if o.State == OutcomeFailed {
		m.feedErrors.WithLabelValues(o.Family, errorKind(o.Err)).Inc()
		return
	}
	m.lastSuccess.WithLabelValues(o.Family).Set(float64(time.Now().Unix()))
	if o.State == OutcomeQueued {
		m.found.WithLabelValues(o.Family).Inc()
	}
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, feed.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, feed.ErrMalformed):
		return "malformed"
	case errors.Is(err, feed.ErrUntrusted):
		return "untrusted"
	}
	return "other"
}

// Handler serves /metrics, and /healthz answering 200 while healthy returns nil.
func (m *Metrics) Handler(healthy func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
