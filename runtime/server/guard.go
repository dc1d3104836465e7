package server

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
)

// Connection limits: no connection may be held by a client that sends nothing, or sends a body
// the handler never reads, and the daemon holds a bounded number of connections.
const (
	// DefaultReadHeaderTimeout bounds the arrival of a request's header.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultBodyTimeout bounds the arrival of a request's body (from the end of its header).
	DefaultBodyTimeout = 30 * time.Second
	// DefaultIdleTimeout bounds a kept-alive connection between requests.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxConnections caps the connections served at once; more wait in the kernel's
	// accept queue.
	DefaultMaxConnections = 512
)

// HTTPServer returns an http.Server that serves s with the header and idle timeouts of its
// Options. base is every request's parent context; errLog receives net/http's own errors.
func (s *Server) HTTPServer(base context.Context, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           s,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		ErrorLog:          errLog,
	}
}

// Listener caps the connections accepted from ln at Options.MaxConnections: beyond it Accept
// waits until one closes, so a flood of idle connections cannot exhaust file descriptors.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return netutil.LimitListener(ln, s.opts.MaxConnections)
}

// bodyGuard wraps a request body. It notes when the body has been read to its end, and then
// calls onEOF (which moves the connection's read deadline from the body's to the request's).
type bodyGuard struct {
	io.ReadCloser
	eof   atomic.Bool
	onEOF func()
}

func (b *bodyGuard) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.eof.Swap(true) && b.onEOF != nil {
		b.onEOF()
	}
	return n, bodyReadError(err)
}

// unread reports whether the request declared a body that has not been read to its end.
func (b *bodyGuard) unread(r *http.Request) bool {
	return b != nil && r.ContentLength != 0 && !b.eof.Load()
}

// guardBody bounds the request body in size and in time, before any handler runs:
//   - a declared Content-Length over the limit is a 413 at once (an `Expect: 100-continue`
//     client never gets its 100 Continue, so it never sends the body);
//   - the body must arrive within BodyTimeout (and the request timeout): the connection's read
//     deadline says so, whichever route is called — the 401 path, health checks and unknown
//     routes too, which never read it;
//   - a response to a request whose body was not read closes the connection at once (see
//     beforeHeader), so net/http does not wait for the rest of the body to reuse it.
//
// It returns false when it has answered the request.
func (s *Server) guardBody(rec *recorder, r *http.Request, start time.Time) bool {
	g := &bodyGuard{ReadCloser: &numberScanner{ReadCloser: r.Body, max: s.opts.MaxNumberLen, drain: s.opts.MaxBodyBytes}}
	rec.body = g
	if r.ContentLength > s.opts.MaxBodyBytes {
		writeError(rec, r, errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the request body (Content-Length %d) exceeds the limit of %d bytes", r.ContentLength, s.opts.MaxBodyBytes))
		return false
	}
	if r.ContentLength != 0 {
		rc := http.NewResponseController(rec)
		requestDeadline := start.Add(s.opts.RequestTimeout)
		bodyDeadline := start.Add(s.opts.BodyTimeout)
		if bodyDeadline.After(requestDeadline) {
			bodyDeadline = requestDeadline
		}
		_ = rc.SetReadDeadline(bodyDeadline)
		// Once the body is in, the connection only carries the client's hang-up: reads may
		// wait as long as the request runs, and a moment more, so that the request's own
		// deadline (withTimeout) ends it as a timeout before the expired read deadline
		// cancels it as a hang-up.
		g.onEOF = func() { _ = rc.SetReadDeadline(requestDeadline.Add(time.Second)) }
	}
	r.Body = http.MaxBytesReader(rec, g, s.opts.MaxBodyBytes)
	return true
}

// beforeHeader runs as the response's header is sent. When the request's body has not been
// read, the handler is done with it: the connection closes after the response, and its read
// deadline passes now, so that net/http's drain of the unread body ends at once instead of
// waiting for bytes the client may never send.
func (r *recorder) beforeHeader(req *http.Request) {
	if r.body.unread(req) {
		r.ResponseWriter.Header().Set("Connection", "close")
		_ = http.NewResponseController(r.ResponseWriter).SetReadDeadline(time.Now())
	}
}

func (o *Options) fillLimits() {
	orDefault(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	orDefault(&o.BodyTimeout, DefaultBodyTimeout)
	orDefault(&o.IdleTimeout, DefaultIdleTimeout)
	orDefault(&o.MaxConnections, DefaultMaxConnections)
	orDefault(&o.MaxResponseBytes, DefaultMaxResponseBytes)
	orDefault(&o.MaxImageFactor, DefaultMaxImageFactor)
	orDefault(&o.MaxImageSide, DefaultMaxImageSide)
	orDefault(&o.MaxNumberLen, DefaultMaxNumberLen)
}

// orDefault sets *v to d when it is zero or negative (an Options field left unset).
func orDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}
