package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelrt/modelrt/runtime/engine"
)

// slotsFor is how many requests run at once on model m: for a causal LM the max_batch of its
// continuous-batching scheduler (they share its steps), bounded by MaxConcurrency when that
// was given; MaxConcurrency otherwise.
func (s *Server) slotsFor(e *engine.Engine, m *engine.Model) int {
	mb := e.MaxBatch(m.Name) // the declaration's: the model may be unloaded now
	switch {
	case mb == 0:
		return s.opts.MaxConcurrency
	case s.opts.autoConcurrency:
		return mb
	default:
		return min(s.opts.MaxConcurrency, mb)
	}
}

// schedulerCollector reports the schedulers of the current engine at scrape time: batch size
// per step, queue wait, time to first token, inter-token latency, tokens fed (runtime/batch).
// It is unchecked (no Describe output): the series come and go with the engine's models.
type schedulerCollector struct{ s *Server }

func (c *schedulerCollector) Describe(chan<- *prometheus.Desc) {}

func (c *schedulerCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.s.Engine()
	for _, m := range e.Models() {
		if sc := e.Scheduler(m.Name); sc != nil {
			sc.Metrics().Collect(ch)
		}
	}
}
