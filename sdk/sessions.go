package sdk

import (
	"context"
	"maps"
	"slices"
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

// ModelTable is the bookkeeping of loaded models that every backend needs, with the sessions
// of each: a model by name that answers NotFound, a load that replaces a model of the same name
// (closing its sessions), UnloadModel and CloseSession, opening a session on a model, and the
// per-model part of Stats. M is the backend's loaded model, S its per-session state. A backend
// embeds *ModelTable, which gives it UnloadModel and CloseSession, and writes only what is its
// own: LoadModel (ending in Put), Infer (starting with Get), OpenSession (a call of Open). It
// is safe for concurrent use; M and S are the backend's to guard.
type ModelTable[M, S any] struct {
	mu          sync.Mutex
	models      map[string]modelEntry[M]
	loads       uint64 // counts Puts: tells a model from its replacement
	sessions    *SessionTable[S]
	maxSessions int
	freeModel   func(M)
	freeSession func(S)
}

type modelEntry[M any] struct {
	m    M
	load uint64
}

// NewModelTable returns an empty table whose session ids start with prefix. freeModel and
// freeSession, when not nil, release what a model or session holds outside the Go heap (a cgo
// handle, a thread); they are called once for every model replaced or unloaded and every
// session closed or dropped with its model, outside the table's lock.
func NewModelTable[M, S any](prefix string, freeModel func(M), freeSession func(S)) *ModelTable[M, S] {
	return &ModelTable[M, S]{models: map[string]modelEntry[M]{}, sessions: NewSessionTable[S](prefix), freeModel: freeModel, freeSession: freeSession}
}

// SetMaxSessions bounds the sessions open at once over all models (0: no bound); OpenSession
// beyond it is ResourceExhausted.
func (t *ModelTable[M, S]) SetMaxSessions(n int) {
	t.mu.Lock()
	t.maxSessions = n
	t.mu.Unlock()
}

// Put makes m the model called name, replacing (and freeing, with its sessions) any model of
// that name.
func (t *ModelTable[M, S]) Put(name string, m M) {
	t.mu.Lock()
	old, replaced := t.models[name]
	t.loads++
	t.models[name] = modelEntry[M]{m: m, load: t.loads}
	var dropped []S
	if replaced {
		dropped = t.sessions.RemoveModel(name)
	}
	t.mu.Unlock()
	if replaced {
		t.free(old.m, dropped)
	}
}

// Get returns the model called name; an unknown name is NotFound.
func (t *ModelTable[M, S]) Get(name string) (M, error) {
	e, err := t.entry(name)
	return e.m, err
}

func (t *ModelTable[M, S]) entry(name string) (modelEntry[M], error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.models[name]
	if !ok {
		return e, NotFound("model %q is not loaded", name)
	}
	return e, nil
}

// UnloadModel implements the Backend method: it forgets the model and frees it and its
// sessions. An unknown name is NotFound.
func (t *ModelTable[M, S]) UnloadModel(_ context.Context, req *UnloadModelRequest) (*UnloadModelResponse, error) {
	t.mu.Lock()
	e, ok := t.models[req.Name]
	if !ok {
		t.mu.Unlock()
		return nil, NotFound("model %q is not loaded", req.Name)
	}
	delete(t.models, req.Name)
	dropped := t.sessions.RemoveModel(req.Name)
	t.mu.Unlock()
	t.free(e.m, dropped)
	return &UnloadModelResponse{}, nil
}

func (t *ModelTable[M, S]) free(m M, sessions []S) {
	if t.freeSession != nil {
		for _, s := range sessions {
			t.freeSession(s)
		}
	}
	if t.freeModel != nil {
		t.freeModel(m)
	}
}

// Open opens a session of req.Model for the batch size req asks for (BatchSize's
// rules): open makes the state, or returns an error (FailedPrecondition for a model without
// sessions). An unknown model is NotFound; more sessions than SetMaxSessions allows is
// ResourceExhausted. A model unloaded or replaced while open ran gets no session (NotFound).
func (t *ModelTable[M, S]) Open(req *OpenSessionRequest, open func(m M, batch int) (S, error)) (*OpenSessionResponse, error) {
	e, err := t.entry(req.Model)
	if err != nil {
		return nil, err
	}
	batch, err := BatchSize(req)
	if err != nil {
		return nil, err
	}
	if err := t.sessionRoom(); err != nil {
		return nil, err
	}
	s, err := open(e.m, batch)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	cur, ok := t.models[req.Model]
	err = t.sessionRoomLocked()
	if err == nil && (!ok || cur.load != e.load) {
		err = NotFound("model %q was unloaded while a session was opened", req.Model)
	}
	if err != nil {
		t.mu.Unlock()
		if t.freeSession != nil {
			t.freeSession(s)
		}
		return nil, err
	}
	id := t.sessions.Add(req.Model, s)
	t.mu.Unlock()
	return &OpenSessionResponse{Session: id}, nil
}

func (t *ModelTable[M, S]) sessionRoom() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessionRoomLocked()
}

func (t *ModelTable[M, S]) sessionRoomLocked() error {
	if n := t.sessions.Count(""); t.maxSessions > 0 && n >= t.maxSessions {
		return ResourceExhausted("%d sessions are open (at most %d)", n, t.maxSessions)
	}
	return nil
}

// Session returns the state of session id, which must belong to model: an unknown id is
// NotFound, a session of another model InvalidArgument.
func (t *ModelTable[M, S]) Session(id, model string) (S, error) { return t.sessions.Get(id, model) }

// CloseSession implements the Sessions method: it forgets the session and frees its state. An
// unknown id is NotFound.
func (t *ModelTable[M, S]) CloseSession(_ context.Context, req *CloseSessionRequest) (*CloseSessionResponse, error) {
	s, err := t.sessions.Remove(req.Session)
	if err != nil {
		return nil, err
	}
	if t.freeSession != nil {
		t.freeSession(s)
	}
	return &CloseSessionResponse{}, nil
}

// Report returns a StatsResponse with the process-wide fields (ProcessStats), the open
// sessions, and one ModelStats per model from stat, whose Name and OpenSessions the table
// fills in.
func (t *ModelTable[M, S]) Report(stat func(m M) ModelStats) *StatsResponse {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &StatsResponse{OpenSessions: t.sessions.Count("")}
	ProcessStats(s)
	for _, name := range slices.Sorted(maps.Keys(t.models)) {
		ms := stat(t.models[name].m)
		ms.Name, ms.OpenSessions = name, t.sessions.Count(name)
		s.Models = append(s.Models, ms)
	}
	return s
}
