package main

import (
	"context"
	"testing"
	"time"

	"github.com/modelrt/modelrt/conformance"
	"github.com/modelrt/modelrt/sdk"
)

// cpuTime is the plugin's CPU time so far.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	d, err := conformance.ProcessCPU(pid)
	if err != nil {
		t.Skipf("cannot read the plugin's CPU time (needs Linux /proc): %v", err)
	}
	return d
}

// Cancellation must stop the work, not just the caller's wait.
const (
	// busyBeforeCancel: how much CPU the decode must have used before the test cancels it (it
	// is then inside the mid-block attention, the longest step).
	busyBeforeCancel = 300 * time.Millisecond
	// idleWindow and maxIdleCPU: after the cancelled call returned, the plugin may use at most
	// maxIdleCPU over idleWindow. A decode running on uses about a core: ~idleWindow.
	idleWindow = time.Second
	maxIdleCPU = 100 * time.Millisecond
	// maxCPUAfterCancel: what the plugin may spend between the cancel and the call's return
	// (finishing the block of attention rows it is in, unwinding). The uncancelled decode
	// spends seconds more.
	maxCPUAfterCancel = 250 * time.Millisecond
)

// TestCancelledDecodeStops starts a VAE decode that takes the plugin many seconds (a 128×128
// latent: N = 16384 positions of attention), cancels it once it is computing, and checks that
// the call comes back Canceled, and that the plugin is idle from then on: the decode stopped
// in the plugin, and the host's call returned only once it had (sdk: the plugin holds its
// shared-memory slot busy until its Infer returns). Before, the decode ran to its end (~20 s
// on two loaded cores) while the daemon had already given the request's slot to the next one.
func TestCancelledDecodeStops(t *testing.T) {
	p := start(t, `{"max_image_scale": 64, "max_infer_bytes": 8589934592}`, map[string]string{"vae": "vae-tiny"})
	pid := p.Pid()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := p.Infer(ctx, &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 4, 128, 128)})
		done <- err
	}()
	start := cpuTime(t, pid)
	for deadline := time.Now().Add(time.Minute); cpuTime(t, pid)-start < busyBeforeCancel; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the decode ended (%v) before it was cancelled", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not start computing within a minute")
		}
	}
	cancel()
	cancelled, atCancel := time.Now(), cpuTime(t, pid)
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the cancelled call did not return within a minute")
	}
	t.Logf("returned %v after the cancel", time.Since(cancelled).Round(time.Millisecond))
	if sdk.CodeOf(err) != sdk.CodeCanceled {
		t.Fatalf("cancelled decode: %v, want Canceled", err)
	}
	before := cpuTime(t, pid)
	if used := before - atCancel; used > maxCPUAfterCancel {
		t.Errorf("between the cancel and the call's return the plugin used %v of CPU (limit %v): it went on decoding", used, maxCPUAfterCancel)
	}
	time.Sleep(idleWindow)
	if used := cpuTime(t, pid) - before; used > maxIdleCPU {
		t.Errorf("after the cancelled call returned the plugin used %v of CPU in %v: it is still decoding", used, idleWindow)
	}
	// It serves the next call at once, and is the same process.
	if _, err := p.Infer(context.Background(), &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 4, 8, 8)}); err != nil {
		t.Errorf("the next call: %v", err)
	}
	if p.Pid() != pid {
		t.Errorf("the plugin restarted (pid %d → %d)", pid, p.Pid())
	}
}
