package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestQueueFull: with one slot and one queue place taken, the next request is refused at once
// with 429 and Retry-After; the queued one runs when the slot frees.
func TestQueueFull(t *testing.T) {
	s, ts := newTestServer(t, Options{MaxConcurrency: 1, MaxQueue: 1, RetryAfter: 2 * time.Second})
	c := ts.Client()
	l := s.cur.limits["gpt2"]
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	queued := make(chan int, 1)
	go func() {
		resp, err := c.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"model":"gpt2","prompt":"Hi","max_tokens":2}`))
		if err != nil {
			queued <- -1
			return
		}
		resp.Body.Close()
		queued <- resp.StatusCode
	}()
	if !settle(10*time.Second, func() bool { return l.queued() == 1 }) {
		t.Fatal("the first request never queued")
	}
	status, h, body := call(t, c, "POST", ts.URL+"/v1/completions", `{"model":"gpt2","prompt":"Hi","max_tokens":2}`)
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "2" || !strings.Contains(string(body), "rate_limit_error") {
		t.Errorf("over the limit: %d Retry-After=%q %s", status, h.Get("Retry-After"), body)
	}
	l.release()
	if got := <-queued; got != 200 {
		t.Errorf("queued request: status %d", got)
	}
	_, _, metrics := call(t, c, "GET", ts.URL+"/metrics", nil)
	for _, want := range []string{`modelrt_requests_total{api="completions",code="429",target="gpt2"} 1`, `modelrt_queue_depth{model="gpt2"} 0`, `modelrt_plugin_restarts_total{backend="native"} 0`, "modelrt_request_duration_seconds_bucket"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
