// Package server is the HTTP API of the modelrt daemon (`modelrt serve`): OpenAI-compatible
// completions and model listing for causal-lm models, pipeline runs with Server-Sent Events for
// generated text, KServe's Open Inference Protocol v2 for raw tensors, Prometheus metrics and
// health checks — over one engine.Engine, swapped for a new one on reload.
//
// Every request reaches only what the configuration declares: models and pipelines by name, and
// no request value is ever used as a file path (pipeline inputs that flow into image.load,
// image.save, file() or env() keep their configured values). Each model admits a bounded number
// of concurrent requests and queues a bounded number more; beyond that a request gets 429 with
// Retry-After. docs/server.md documents the API and these decisions.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelrt/modelrt/runtime/engine"
)

// Defaults for Options' zero values.
const (
	DefaultMaxBodyBytes   = 8 << 20
	DefaultMaxConcurrency = 4
	DefaultMaxQueue       = 64
	DefaultRequestTimeout = 5 * time.Minute
	DefaultRetryAfter     = time.Second
	// DefaultMaxBatch bounds the rows (prompts × n) of one completions or chat request.
	DefaultMaxBatch = 16
)

// Options configure a Server.
type Options struct {
	// Logger receives access logs and errors (slog.Default() when nil).
	Logger *slog.Logger
	// AuthToken, when set, is the bearer token every request but the health checks must carry.
	AuthToken string
	// MaxBodyBytes bounds a request body (413 beyond it).
	MaxBodyBytes int64
	// MaxConcurrency is how many requests run at once on one model; MaxQueue how many more
	// wait for a slot (0: DefaultMaxQueue; negative: none). A request beyond both gets 429
	// with Retry-After. 0 means DefaultMaxConcurrency, except for a causal-lm model, whose
	// slots are then the max_batch of its continuous-batching scheduler (its generations share
	// steps); a value set here bounds those too.
	MaxConcurrency int
	MaxQueue       int
	// RequestTimeout bounds each request from arrival to its last byte (504 or an SSE error).
	RequestTimeout time.Duration
	// RetryAfter is the delay a 429 suggests.
	RetryAfter time.Duration
	// MaxBatch bounds the rows (prompts × n) of one completions or chat request.
	MaxBatch int
	// Version is reported by GET /v2.
	Version string
	// ReadHeaderTimeout, BodyTimeout and IdleTimeout bound the arrival of a request's header,
	// of its body, and a kept-alive connection's wait for the next request; MaxConnections
	// caps the connections served at once (guard.go).
	ReadHeaderTimeout time.Duration
	BodyTimeout       time.Duration
	IdleTimeout       time.Duration
	MaxConnections    int
	// AllowedHosts are the Host names served besides loopback ("*": any); AllowedOrigins the
	// web origins allowed (none: CORS off). See browser.go.
	AllowedHosts   []string
	AllowedOrigins []string
	// MaxNumberLen bounds the characters of one number in a request (numbers.go).
	MaxNumberLen int
	// MaxResponseBytes bounds a response built in memory (v2response.go).
	MaxResponseBytes int
	// MaxImageFactor times a model's sample_size (MaxImageSide when it declares none) bounds
	// the sides of the images and latents a request gives it (imagesize.go).
	MaxImageFactor int
	MaxImageSide   int
	// SpecialTokens makes special-token spellings (<|endoftext|>) in completions prompts
	// their tokens; by default they are text. (Pipelines: engine.Options.OrdinaryText.)
	SpecialTokens bool
	// UI serves the playground page at GET / (ui.go).
	UI bool

	autoConcurrency bool // MaxConcurrency was not given (see slotsFor)
}

func (o *Options) fill() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = DefaultMaxConcurrency
		o.autoConcurrency = true
	}
	if o.MaxQueue < 0 {
		o.MaxQueue = 0
	} else if o.MaxQueue == 0 {
		o.MaxQueue = DefaultMaxQueue
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	o.fillLimits()
}

// state is one engine with what the server keeps per engine: the per-model limiters, the
// pipelines' file-path inputs, and the requests in flight on it (so that a reload can close it
// once they are done).
type state struct {
	e       *engine.Engine
	limits  map[string]*limiter
	guards  map[string]*pathGuard
	flight  sync.WaitGroup
	created time.Time
}

// Server is the daemon's HTTP handler. It owns the engines it is given: Swap retires the old
// one once its requests finish, Close closes the current one.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	mux     *http.ServeMux
	token   [32]byte

	mu       sync.RWMutex
	cur      *state
	closed   bool
	retiring sync.WaitGroup
	draining atomic.Bool
}

// New returns a Server serving e.
func New(e *engine.Engine, opts Options) *Server {
	opts.fill()
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	if opts.AuthToken != "" {
		s.token = sha256.Sum256([]byte(opts.AuthToken))
	}
	s.metrics = newMetrics(s)
	s.cur = s.newState(e)
	s.routes()
	return s
}

func (s *Server) newState(e *engine.Engine) *state {
	st := &state{e: e, limits: map[string]*limiter{}, guards: map[string]*pathGuard{}, created: time.Now()}
	e.OnModelEvent(s.metrics.modelEvent)
	for _, m := range e.Models() {
		st.limits[m.Name] = newLimiter(s.slotsFor(e, m), s.opts.MaxQueue, s.metrics.queue.WithLabelValues(m.Name), s.metrics.active.WithLabelValues(m.Name))
	}
	for _, p := range e.Pipelines() {
		st.guards[p.Name] = guardPaths(p)
	}
	return st
}

// Swap makes e serve new requests. Requests already running on the old engine finish there;
// then the old engine is closed (in the background: Close waits for it). After Close, Swap
// closes e instead.
func (s *Server) Swap(e *engine.Engine) {
	st := s.newState(e)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = e.Close()
		return
	}
	old := s.cur
	s.cur = st
	s.mu.Unlock()
	s.retire(old)
	s.log.Info("configuration swapped", "models", len(e.Models()), "pipelines", len(e.Pipelines()))
}

func (s *Server) retire(old *state) {
	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		old.flight.Wait()
		if err := old.e.Close(); err != nil {
			s.log.Warn("closing the previous engine", "err", err)
		}
	}()
}

// Drain makes the readiness checks fail, so that a load balancer stops sending requests while
// the HTTP server shuts down.
func (s *Server) Drain() { s.draining.Store(true) }

// Close waits for the requests in flight, then closes the current and every retired engine.
// Cancel the requests' contexts (http.Server.BaseContext) first to make it quick.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cur := s.cur
	s.mu.Unlock()
	cur.flight.Wait()
	err := cur.e.Close()
	s.retiring.Wait()
	return err
}

// Engine returns the engine serving new requests.
func (s *Server) Engine() *engine.Engine {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur.e
}

// acquire returns the current state with the request counted in flight on it.
func (s *Server) acquire() (*state, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errorf(http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
	}
	s.cur.flight.Add(1)
	return s.cur, nil
}

// ServeHTTP implements http.Handler: access log, auth, body limit, then the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		// Probes and scrapes arrive every few seconds: keep them out of the log unless asked.
		level := slog.LevelInfo
		switch {
		case rec.status >= 500 || rec.outcome >= 500:
			level = slog.LevelWarn
		case rec.status < 300 && (isHealthPath(r.URL.Path) || r.URL.Path == "/metrics"):
			level = slog.LevelDebug
		}
		s.log.Log(r.Context(), level, "http request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"bytes", rec.bytes, "duration_ms", float64(time.Since(start).Microseconds())/1000,
			"remote", r.RemoteAddr, "target", rec.target)
	}()
	rec.req = r
	if !s.guardBody(rec, r, start) || !s.checkBrowser(rec, r) {
		return
	}
	if !s.authorized(r) {
		rec.Header().Set("WWW-Authenticate", `Bearer realm="modelrt"`)
		if s.opts.UI {
			rec.Header().Add("WWW-Authenticate", `Basic realm="modelrt", charset="UTF-8"`)
		}
		writeError(rec, r, errorf(http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token"))
		return
	}
	s.mux.ServeHTTP(rec, r)
	if rec.api != "" {
		status := rec.status
		if rec.outcome != 0 {
			status = rec.outcome
		}
		s.metrics.requests.WithLabelValues(rec.api, rec.target, strconv.Itoa(status)).Inc()
		s.metrics.latency.WithLabelValues(rec.api, rec.target).Observe(time.Since(start).Seconds())
	}
}

// authorized checks the bearer token in constant time (comparing digests, so the length of
// the token does not leak either). Health checks are open: probes carry no token.
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.AuthToken == "" || isHealthPath(r.URL.Path) {
		return true
	}
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return s.uiBasicAuthorized(r)
	}
	got := sha256.Sum256([]byte(h[len(prefix):]))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

func isHealthPath(p string) bool {
	return p == "/healthz" || p == "/v2/health/live" || p == "/v2/health/ready"
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.healthz)
	m.Handle("GET /metrics", s.metrics.handler())
	m.HandleFunc("GET /v1/models", s.on(s.listModels))
	m.HandleFunc("GET /v1/models/{model}", s.on(s.getModel))
	m.HandleFunc("POST /v1/completions", s.on(s.completions))
	m.HandleFunc("POST /v1/chat/completions", s.on(s.chatCompletions))
	m.HandleFunc("POST /v1/images/generations", s.on(s.imageGenerations))
	m.HandleFunc("GET /v1/pipelines", s.on(s.listPipelines))
	m.HandleFunc("POST /v1/pipelines/{name}", s.on(s.runPipeline))
	m.HandleFunc("GET /v2", s.v2Server)
	m.HandleFunc("GET /v2/health/live", s.v2Live)
	m.HandleFunc("GET /v2/health/ready", s.v2Ready)
	m.HandleFunc("POST /v2/repository/index", s.on(s.repositoryIndex))
	m.HandleFunc("POST /v2/repository/models/{model}/load", s.on(s.repositoryLoad))
	m.HandleFunc("POST /v2/repository/models/{model}/unload", s.on(s.repositoryUnload))
	for _, prefix := range []string{"/v2/models/{model}", "/v2/models/{model}/versions/{version}"} {
		m.HandleFunc("GET "+prefix, s.on(s.v2Model))
		m.HandleFunc("GET "+prefix+"/ready", s.on(s.v2ModelReady))
		m.HandleFunc("POST "+prefix+"/infer", s.on(s.v2Infer))
	}
	s.uiRoutes()
	m.HandleFunc("/", s.noRoute)
}

// on adapts an API handler: it runs on the current engine, counted in flight there so that a
// reload closes that engine only after the request is done.
func (s *Server) on(h func(http.ResponseWriter, *http.Request, *state)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !requireJSON(w, r) {
			return
		}
		st, err := s.acquire()
		if err != nil {
			writeError(w, r, err)
			return
		}
		defer st.flight.Done()
		h(w, r, st)
	}
}

// healthz reports liveness and what is loaded; it fails (503) while draining or while a
// backend is not running (restarting, or failed: crashing in a row, retried with backoff).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	e := s.Engine()
	type backend struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Restarts int    `json:"restarts"`
		// Why a backend is not running, and when the host tries again.
		CrashesInARow int    `json:"crashes_in_a_row,omitempty"`
		LastError     string `json:"last_error,omitempty"`
		NextRestart   string `json:"next_restart,omitempty"` // RFC 3339
	}
	doc := struct {
		Status    string    `json:"status"`
		Models    []string  `json:"models"`
		Pipelines []string  `json:"pipelines"`
		Backends  []backend `json:"backends"`
	}{Status: "ok", Models: []string{}, Pipelines: []string{}}
	for _, m := range e.Models() {
		doc.Models = append(doc.Models, m.Name)
	}
	for _, p := range e.Pipelines() {
		doc.Pipelines = append(doc.Pipelines, p.Name)
	}
	for _, b := range e.Backends() {
		hb := backend{Name: b.Name, State: b.State, Restarts: b.Restarts, CrashesInARow: b.CrashesInARow, LastError: b.LastError}
		if !b.NextRestart.IsZero() {
			hb.NextRestart = b.NextRestart.UTC().Format(time.RFC3339Nano)
		}
		doc.Backends = append(doc.Backends, hb)
	}
	status := http.StatusOK
	if !s.ready(e) {
		doc.Status, status = "unavailable", http.StatusServiceUnavailable
	}
	writeJSON(w, status, doc)
}

// ready: not draining and every backend running (a restarting backend is not ready).
func (s *Server) ready(e *engine.Engine) bool {
	if s.draining.Load() {
		return false
	}
	for _, b := range e.Backends() {
		if b.State != "running" {
			return false
		}
	}
	return true
}

// withTimeout bounds a request's context by the request timeout, and its connection's writes
// too: a client that stops reading a stream must not hold a handler (or a model's slot)
// beyond it. (Reads are bounded by guardBody: the body's deadline, then the request's.)
func (s *Server) withTimeout(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(s.opts.RequestTimeout)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(deadline.Add(time.Second))
	return context.WithDeadline(r.Context(), deadline)
}

// admit waits for a slot on every model named (in sorted order, so that two requests needing
// the same models cannot deadlock) and returns the function that frees them.
func (s *Server) admit(ctx context.Context, st *state, models []string) (func(), error) {
	var held []*limiter
	release := func() {
		for _, l := range held {
			l.release()
		}
	}
	for _, name := range sortedUnique(models) {
		l := st.limits[name]
		if l == nil {
			continue
		}
		if err := l.acquire(ctx); err != nil {
			release()
			if errors.Is(err, errQueueFull) {
				return nil, &httpError{status: http.StatusTooManyRequests, code: "queue_full",
					msg:        fmt.Sprintf("model %q is at its limit of concurrent and queued requests; retry later", name),
					retryAfter: max(1, int(math.Ceil(s.opts.RetryAfter.Seconds())))}
			}
			return nil, err
		}
		held = append(held, l)
	}
	return release, nil
}

// admitHold admits a request on the models named (admit), then holds them (engine.Use): an
// unload waits for the request, and a model keep_alive unloaded is loaded again first. The
// function returned frees both.
func (s *Server) admitHold(ctx context.Context, st *state, models []string) (func(), error) {
	release, err := s.admit(ctx, st, models)
	if err != nil {
		return nil, err
	}
	var held []func()
	done := func() {
		for _, r := range held {
			r()
		}
		release()
	}
	for _, name := range sortedUnique(models) {
		_, r, err := st.e.Use(ctx, name)
		if err != nil {
			done()
			return nil, err
		}
		held = append(held, r)
	}
	return done, nil
}

// recorder keeps the status and size of a response for the access log and metrics; it passes
// Flush and the rest through (Unwrap, for http.ResponseController).
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	// api and target label the request's metrics; outcome, when set, is the status to count
	// instead of the one sent (an error inside a stream whose status line said 200).
	api     string
	target  string
	outcome int
	// req and body are the request and its guarded body (guard.go).
	req  *http.Request
	body *bodyGuard
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
		r.beforeHeader(r.req)
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// labels returns the request's recorder so that a handler can name its API and, once it is
// known to be declared, its model or pipeline: metric labels never carry names a client made
// up. Outside ServeHTTP (a handler called directly) it returns a recorder nobody reads.
func labels(w http.ResponseWriter, api string) *recorder {
	for {
		switch rw := w.(type) {
		case *recorder:
			rw.api = api
			return rw
		case interface{ Unwrap() http.ResponseWriter }:
			w = rw.Unwrap()
		default:
			return &recorder{}
		}
	}
}
