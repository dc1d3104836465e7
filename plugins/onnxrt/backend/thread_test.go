package backend

import (
	"sync"
	"syscall"
	"testing"
)

func TestOSThreadKeepsOneThread(t *testing.T) {
	th := newOSThread()
	var first int
	th.run(func() { first = syscall.Gettid() })
	// Other goroutines calling run must still land on the session's thread.
	var wg sync.WaitGroup
	tids := make([]int, 16)
	for i := range tids {
		wg.Go(func() { th.run(func() { tids[i] = syscall.Gettid() }) })
	}
	wg.Wait()
	for i, tid := range tids {
		if tid != first {
			t.Fatalf("call %d ran on thread %d, want %d (the session's)", i, tid, first)
		}
	}
	// A panic reaches the caller, and the thread keeps serving.
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the panic re-raised in the caller", r)
			}
		}()
		th.run(func() { panic("boom") })
	}()
	var after int
	th.run(func() { after = syscall.Gettid() })
	if after != first {
		t.Errorf("after a panic the call ran on thread %d, want %d", after, first)
	}
	// After stop, calls still run (on the caller's thread) instead of blocking or panicking.
	th.stop()
	th.stop()
	ran := false
	th.run(func() { ran = true })
	if !ran {
		t.Error("run after stop did not call f")
	}
}
