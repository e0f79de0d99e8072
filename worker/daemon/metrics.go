package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the daemon's Prometheus series, on a registry of its own.
type metrics struct {
	reg            *prometheus.Registry
	jobs           *prometheus.CounterVec   // by verdict
	deliveries     *prometheus.CounterVec   // by outcome: ack, nak, term, duplicate, shutdown
	stages         *prometheus.HistogramVec // by stage
	queueLag       prometheus.Histogram
	jobsRunning    prometheus.Gauge
	vmsRunning     prometheus.Gauge
	memoryGranted  prometheus.Gauge
	admissionWaits prometheus.Counter
	admissionWait  prometheus.Histogram
	admissionNaks  prometheus.Counter
}

func newMetrics() *metrics {
	durations := prometheus.ExponentialBuckets(0.1, 2.5, 12) // 0.1 s … ~6 h
	m := &metrics{
		reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagevet_jobs_total", Help: "Jobs reported, by verdict.",
		}, []string{"verdict"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagevet_deliveries_total", Help: "Job deliveries by how they were settled (ack, nak, term, duplicate, shutdown, admission).",
		}, []string{"outcome"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imagevet_stage_duration_seconds", Help: "Duration of job lifecycle stages, from results.", Buckets: durations,
		}, []string{"stage"}),
		queueLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "imagevet_queue_lag_seconds", Help: "Time from a job's submission to its delivery to this worker.", Buckets: durations,
		}),
		jobsRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imagevet_jobs_running", Help: "Jobs held by this worker (admitting or running).",
		}),
		vmsRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imagevet_vms_running", Help: "Admitted jobs inside the runner, each owning at most one VM.",
		}),
		memoryGranted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imagevet_memory_granted_mib", Help: "Memory granted to admitted jobs, including overhead.",
		}),
		admissionWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imagevet_admission_waits_total", Help: "Jobs that had to wait for memory before starting.",
		}),
		admissionWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "imagevet_admission_wait_seconds", Help: "Time jobs waited for memory.", Buckets: durations,
		}),
		admissionNaks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imagevet_admission_naks_total", Help: "Jobs handed back because the host could not give their memory.",
		}),
	}
	m.reg.MustRegister(m.jobs, m.deliveries, m.stages, m.queueLag, m.jobsRunning, m.vmsRunning,
		m.memoryGranted, m.admissionWaits, m.admissionWait, m.admissionNaks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// serveHTTP serves /metrics and /healthz on addr until ctx ends. /healthz answers 200
// while health returns nil (the NATS connection is up), 503 with its error otherwise.
func serveHTTP(ctx context.Context, addr string, m *metrics, health func() error, log *slog.Logger) (net.Addr, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}
	return ln.Addr(), stop, nil
}
