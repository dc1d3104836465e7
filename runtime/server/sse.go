package server

import (
	"encoding/json"
	"net/http"
	"sync"
)

// sseWriter writes Server-Sent Events. send is safe for concurrent use (pipeline stages
// stream from their own goroutines); after the first failed write every send fails, and
// the caller cancels the work whose output nobody reads.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu  sync.Mutex
	err error
}

func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	s.err = s.rc.Flush()
	return s
}

// send writes one event: "event: NAME" when event is set, then v as one "data:" line.
func (s *sseWriter) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.raw(event, b)
}

func (s *sseWriter) raw(event string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	buf := make([]byte, 0, len(data)+len(event)+16)
	if event != "" {
		buf = append(append(append(buf, "event: "...), event...), '\n')
	}
	buf = append(append(append(buf, "data: "...), data...), "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		s.err = err
		return err
	}
	s.err = s.rc.Flush()
	return s.err
}
