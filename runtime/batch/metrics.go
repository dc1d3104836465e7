package batch

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are a scheduler's Prometheus series, labelled with its model. They implement
// prometheus.Collector; a server collects the schedulers of its current engine at scrape time.
type Metrics struct {
	batch    prometheus.Histogram // sessions per step
	wait     prometheus.Histogram // seconds a step's work waited in the scheduler
	ttft     prometheus.Histogram // seconds from a session's open to its first logits
	itl      prometheus.Histogram // seconds between consecutive logits of a session
	tokens   prometheus.Counter   // tokens fed to the backend (prompt and generated)
	beside   prometheus.Counter   // prompts fed beside a step in flight
	sessions prometheus.Gauge     // open sessions
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .02, .04, .08, .16, .32, .64, 1.28, 2.56, 5, 10, 30}

func newMetrics(model string) *Metrics {
	l := prometheus.Labels{"model": model}
	return &Metrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "modelrt_batch_size", ConstLabels: l,
			Help:    "Sessions advanced by one step of the continuous-batching scheduler.",
			Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64}}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "modelrt_batch_queue_wait_seconds", ConstLabels: l,
			Help: "Time a session's step waited in the scheduler before its batch ran.", Buckets: latencyBuckets}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "modelrt_time_to_first_token_seconds", ConstLabels: l,
			Help: "Time from a generation's session opening to its first logits.", Buckets: latencyBuckets}),
		itl: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "modelrt_inter_token_seconds", ConstLabels: l,
			Help: "Time between consecutive tokens' logits of one generation.", Buckets: latencyBuckets}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "modelrt_batch_tokens_total", ConstLabels: l,
			Help: "Tokens fed through the scheduler (prompt and generated); its rate is tokens/s."}),
		beside: prometheus.NewCounter(prometheus.CounterOpts{Name: "modelrt_batch_prompts_beside_total", ConstLabels: l,
			Help: "Prompts fed as a call of their own beside the step in flight (a newcomer's first token)."}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "modelrt_batch_sessions", ConstLabels: l,
			Help: "Generations open in the scheduler."}),
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batch, m.wait, m.ttft, m.itl, m.tokens, m.beside, m.sessions}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// Beside returns how many prompts were fed beside a step in flight (Session.Step).
func (m *Metrics) Beside() uint64 {
	var d dto.Metric
	if err := m.beside.Write(&d); err != nil {
		return 0
	}
	return uint64(d.GetCounter().GetValue())
}

// Steps returns how many steps the scheduler ran and how many session advances they made in
// all (the modelrt_batch_size histogram's count and sum): rows/steps > 1 means generations
// shared steps.
func (m *Metrics) Steps() (steps uint64, rows float64) {
	var d dto.Metric
	if err := m.batch.Write(&d); err != nil {
		return 0, 0
	}
	return d.GetHistogram().GetSampleCount(), d.GetHistogram().GetSampleSum()
}
