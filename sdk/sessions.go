package sdk

import (
	"strconv"
	"sync"
)

// MaxBatchSize bounds OpenSessionRequest.BatchSize.
const MaxBatchSize = 1024

// BatchSize returns the batch size an OpenSessionRequest asks for: 1 when unset, an
// InvalidArgument error outside [1, MaxBatchSize].
func BatchSize(req *OpenSessionRequest) (int, error) {
	switch b := req.BatchSize; {
	case b == 0:
		return 1, nil
	case b < 0 || b > MaxBatchSize:
		return 0, InvalidArgument("batch_size %d outside [1, %d]", b, MaxBatchSize)
	default:
		return b, nil
	}
}

// SessionTable is the bookkeeping of open sessions that every backend with Sessions needs: ids,
// the model each belongs to, lookup that answers NotFound, and closing a model's sessions when
// it is unloaded. S is the backend's per-session state (a KV cache). It is safe for concurrent
// use; the state itself is the backend's to guard.
type SessionTable[S any] struct {
	prefix string
	mu     sync.Mutex
	next   int
	byID   map[string]sessionEntry[S]
}

type sessionEntry[S any] struct {
	model string
	state S
}

// NewSessionTable returns an empty table whose ids start with prefix ("native-1", ...).
func NewSessionTable[S any](prefix string) *SessionTable[S] {
	return &SessionTable[S]{prefix: prefix, byID: map[string]sessionEntry[S]{}}
}

// Add registers a session of model and returns its new id.
func (t *SessionTable[S]) Add(model string, state S) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	id := t.prefix + "-" + strconv.Itoa(t.next)
	t.byID[id] = sessionEntry[S]{model: model, state: state}
	return id
}

// Get returns the state of session id, which must belong to model (any model when model is
// ""). An unknown id is NotFound; a session of another model is InvalidArgument.
func (t *SessionTable[S]) Get(id, model string) (S, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byID[id]
	if !ok {
		var zero S
		return zero, NotFound("session %q is not open", id)
	}
	if model != "" && e.model != model {
		var zero S
		return zero, InvalidArgument("session %q belongs to model %q, not %q", id, e.model, model)
	}
	return e.state, nil
}

// Remove forgets session id and returns its state so the caller can free it; unknown ids are
// NotFound.
func (t *SessionTable[S]) Remove(id string) (S, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byID[id]
	if !ok {
		var zero S
		return zero, NotFound("session %q is not open", id)
	}
	delete(t.byID, id)
	return e.state, nil
}

// RemoveModel forgets every session of model and returns their states.
func (t *SessionTable[S]) RemoveModel(model string) []S {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []S
	for id, e := range t.byID {
		if e.model == model {
			out = append(out, e.state)
			delete(t.byID, id)
		}
	}
	return out
}

// Count returns the number of open sessions of model, or of all models when model is "".
func (t *SessionTable[S]) Count(model string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if model == "" {
		return len(t.byID)
	}
	n := 0
	for _, e := range t.byID {
		if e.model == model {
			n++
		}
	}
	return n
}
