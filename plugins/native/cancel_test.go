package main

import (
	"context"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/modelrt/modelrt/conformance"
	"github.com/modelrt/modelrt/sdk"
)

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
	c, err := conformance.CancelWhenBusy(pid, busyBeforeCancel, idleWindow, func(ctx context.Context) error {
		_, err := p.Infer(ctx, &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 4, 128, 128)})
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("cannot measure the plugin (needs Linux /proc): %v", err)
	}
	if err != nil {
		t.Fatalf("measuring the cancelled decode: %v", err)
	}
	t.Logf("returned %v after the cancel; CPU %v before it, %v after", c.Wall.Round(time.Millisecond), c.BeforeCPU, c.AfterCPU)
	if sdk.CodeOf(c.Err) != sdk.CodeCanceled {
		t.Fatalf("cancelled decode: %v, want Canceled", c.Err)
	}
	if c.AfterCPU > maxCPUAfterCancel {
		t.Errorf("between the cancel and the call's return the plugin used %v of CPU (limit %v): it went on decoding", c.AfterCPU, maxCPUAfterCancel)
	}
	if c.IdleCPU > maxIdleCPU {
		t.Errorf("after the cancelled call returned the plugin used %v of CPU in %v: it is still decoding", c.IdleCPU, idleWindow)
	}
	// It serves the next call at once, and is the same process.
	if _, err := p.Infer(context.Background(), &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 4, 8, 8)}); err != nil {
		t.Errorf("the next call: %v", err)
	}
	if p.Pid() != pid {
		t.Errorf("the plugin restarted (pid %d → %d)", pid, p.Pid())
	}
}
