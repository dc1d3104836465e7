package backend

import (
	"runtime"
	"sync"
)

// osThread runs a session's ONNX Runtime calls on one OS thread for the session's life.
//
// ONNX Runtime's intra-op pool uses the calling thread as one of its workers. Called straight
// from gRPC handlers, every decode step of a session would start on whichever thread the Go
// scheduler picked, and the step's work would move between cores with it. Measured side by side
// with in-process ORT (BenchmarkLM124MDecodeInterleaved, docs/benchmarks.md), keeping the
// caller on one locked thread took the plugin's decode from a mean 0.951× of in-process
// (6 runs, 0.931–0.971) to 0.970× (0.934–0.990).
type osThread struct {
	mu     sync.Mutex
	work   chan func()
	closed bool
}

func newOSThread() *osThread {
	t := &osThread{work: make(chan func())}
	go func() {
		// Never unlocked: the thread ends with the goroutine rather than going back to the
		// scheduler's pool with ONNX Runtime's per-thread state on it.
		runtime.LockOSThread()
		for f := range t.work {
			f()
		}
	}()
	return t
}

// run calls f on the thread and waits for it. A panic in f is re-raised in the caller, where
// the SDK turns it into an Internal error. After stop, f runs on the caller's goroutine.
func (t *osThread) run(f func()) {
	var (
		done     = make(chan struct{})
		panicked any
	)
	call := func() {
		defer close(done)
		defer func() { panicked = recover() }()
		f()
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		f()
		return
	}
	t.work <- call
	t.mu.Unlock()
	<-done
	if panicked != nil {
		panic(panicked)
	}
}

// stop ends the thread once the call it is running, if any, returns.
func (t *osThread) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		close(t.work)
	}
}
