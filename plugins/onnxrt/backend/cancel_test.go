package backend_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/conformance"
	"github.com/modelrt/modelrt/sdk"
)

const (
	// busyBeforeCancel: the share of the uncancelled decode's CPU time the cancelled one must
	// have used before the test cancels it.
	busyBeforeCancel = 0.2
	// maxAfterCancel: the share of the uncancelled decode's CPU time the plugin may spend
	// between the cancel and the call's return. ONNX Runtime checks its terminate flag between
	// nodes only, so the node running at the cancel (one attention MatMul can be a large part
	// of a decode) finishes first. A decode that ignored the cancel would spend about
	// 1 − busyBeforeCancel = 0.8; one that stops at the next node boundary measured 0.11–0.22
	// with idle threads not spinning (the same with two busy loops beside it), so 0.65 separates
	// the two.
	maxAfterCancel = 0.65
	// idleWindow and maxIdleCPU: afterwards the plugin is idle.
	idleWindow = time.Second
	maxIdleCPU = 100 * time.Millisecond
	// cancelAttempts: how many cancelled decodes the test measures at most (it stops at the
	// first that returns Canceled within maxAfterCancel and then idles).
	cancelAttempts = 3
)

// TestCancelledDecodeStops cancels a VAE decode that takes ONNX Runtime seconds (four 64×64
// latents of the 16-px test VAE) once it has done a fifth of its work: the run is terminated
// through its run options, the call comes back Canceled, the plugin spends well under the rest
// of the decode's CPU after the cancel, and none afterwards.
func TestCancelledDecodeStops(t *testing.T) {
	p := startPlugin(t)
	ctx := context.Background()
	// Idle ORT threads do not spin: the test counts the plugin's CPU time, and spinning threads
	// count time spent waiting for a descheduled peer as work, which varies with the machine's
	// load (a CI run with other packages beside it measured 0.92 of the decode after the cancel).
	if _, err := p.Configure(ctx, &sdk.ConfigureRequest{Config: json.RawMessage(`{"max_image_scale": 64, "max_infer_bytes": 8589934592, "allow_spinning": false}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: "vae", Path: fixture("vae-tiny-onnx")}); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	cpu := func() time.Duration {
		d, err := conformance.ProcessCPU(pid)
		if err != nil {
			t.Skipf("cannot read the plugin's CPU time (needs Linux /proc): %v", err)
		}
		return d
	}
	latent := conformance.Zeros("latent", 4, 4, 64, 64)
	// Each attempt pairs an uncancelled decode with a cancelled one, so that both see the same
	// load. ORT stops at a node boundary, and where the cancel lands among the few large nodes
	// (the mid-block attention at 4096 positions) varies: under CI's parallel packages a cancel
	// that lands as a large node starts has measured 0.92 of a decode after it. A decode that
	// ignored the cancel would fail every attempt.
	var failures []string
	for attempt := 1; attempt <= cancelAttempts; attempt++ {
		start := cpu()
		if _, err := p.Infer(ctx, &sdk.InferRequest{Model: "vae", Inputs: latent}); err != nil {
			t.Fatal(err)
		}
		full := cpu() - start
		c, err := conformance.CancelWhenBusy(pid, time.Duration(busyBeforeCancel*float64(full)), idleWindow, func(ctx context.Context) error {
			_, err := p.Infer(ctx, &sdk.InferRequest{Model: "vae", Inputs: latent})
			return err
		})
		if err != nil {
			t.Fatalf("attempt %d: measuring the cancelled decode: %v", attempt, err)
		}
		t.Logf("attempt %d: the uncancelled decode took %v of CPU; the cancelled one returned %v (%v) after the cancel, CPU %v before it, %v after, %v in the %v after it returned",
			attempt, full, c.Wall.Round(time.Millisecond), c.Err, c.BeforeCPU, c.AfterCPU, c.IdleCPU, idleWindow)
		var why []string
		if sdk.CodeOf(c.Err) != sdk.CodeCanceled {
			why = append(why, fmt.Sprintf("returned %v, want Canceled", c.Err))
		}
		if f := float64(c.AfterCPU) / float64(full); f > maxAfterCancel {
			why = append(why, fmt.Sprintf("used %.2f of a whole decode's CPU after the cancel, more than %.2f", f, maxAfterCancel))
		}
		if c.IdleCPU > maxIdleCPU {
			why = append(why, fmt.Sprintf("used %v of CPU in the %v after it returned: still decoding", c.IdleCPU, idleWindow))
		}
		if len(why) == 0 {
			failures = nil
			break
		}
		failures = append(failures, fmt.Sprintf("attempt %d: %s", attempt, strings.Join(why, "; ")))
	}
	if len(failures) > 0 {
		t.Errorf("no cancelled decode stopped as it should:\n%s", strings.Join(failures, "\n"))
	}
	if _, err := p.Infer(ctx, &sdk.InferRequest{Model: "vae", Inputs: conformance.Zeros("latent", 1, 4, 8, 8)}); err != nil {
		t.Errorf("the next call: %v", err)
	}
}
