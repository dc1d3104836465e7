package lm

import (
	"context"

	"github.com/modelrt/modelrt/runtime/generate"
)

// StepSession is a session a decode loop can run: a *Session, or a session of a continuous-
// batching scheduler (runtime/batch) whose steps are shared with other generations.
type StepSession interface {
	generate.Stepper
	ID() string
	// Close frees the session in the backend, even when the request was cancelled.
	Close() error
}

// Batcher opens batch-1 sessions whose steps are shared with the model's other generations
// (runtime/batch's Scheduler).
type Batcher interface {
	OpenShared(ctx context.Context) (StepSession, error)
}

// OpenStepSession opens a session for batch rows: through m.Batcher when it is set and batch
// is 1 (one prompt, no guidance), otherwise a session of its own (Open).
func (m *Model) OpenStepSession(ctx context.Context, batch int) (StepSession, error) {
	if m.Batcher != nil && batch == 1 {
		return m.Batcher.OpenShared(ctx)
	}
	return m.Open(ctx, batch)
}
