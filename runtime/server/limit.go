package server

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// errQueueFull: every slot of a model is busy and its queue is full.
var errQueueFull = errors.New("server: queue full")

// limiter admits at most cap(slots) requests to a model at once and lets at most maxQueue more
// wait. A full queue fails at once rather than waiting: the client is told to retry, which
// keeps latency bounded for the requests already admitted.
type limiter struct {
	slots    chan struct{}
	maxQueue int
	queue    prometheus.Gauge // requests waiting
	active   prometheus.Gauge // requests holding a slot

	mu      sync.Mutex
	waiting int
}

func newLimiter(concurrency, maxQueue int, queue, active prometheus.Gauge) *limiter {
	return &limiter{slots: make(chan struct{}, concurrency), maxQueue: maxQueue, queue: queue, active: active}
}

// acquire takes a slot, waiting in the queue if there is room; it returns errQueueFull when
// there is none, or ctx's error when ctx ends first.
func (l *limiter) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		l.active.Inc()
		return nil
	default:
	}
	l.mu.Lock()
	if l.waiting >= l.maxQueue {
		l.mu.Unlock()
		return errQueueFull
	}
	l.waiting++
	l.mu.Unlock()
	l.queue.Inc()
	defer func() {
		l.mu.Lock()
		l.waiting--
		l.mu.Unlock()
		l.queue.Dec()
	}()
	select {
	case l.slots <- struct{}{}:
		l.active.Inc()
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (l *limiter) release() {
	<-l.slots
	l.active.Dec()
}

// queued returns how many requests wait.
func (l *limiter) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting
}

func sortedUnique(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}
