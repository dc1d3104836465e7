package plugin

import (
	"context"
	"math"
	"testing"

	"github.com/modelrt/modelrt/sdk"
)

// logitsVocab is GPT-2's vocabulary size: one decode step's logits row.
const logitsVocab = 50257

// BenchmarkInferLogits measures one inference round trip that returns a (1, 50257) float32
// logits row: through a real plugin process (gRPC over a unix socket with mTLS, the row in the
// shared-memory segment), the same with the row inside the gRPC answer, and, for comparison,
// the same work done in-process.
func BenchmarkInferLogits(b *testing.B) {
	bytesPerCall := int64(logitsVocab * 4)
	for _, mode := range []struct {
		name  string
		noShm bool
		reuse bool // pass the last answer's memory back, as runtime/lm's decode loop does
	}{{"plugin", false, true}, {"plugin-shm-alloc", false, false}, {"plugin-grpc-only", true, true}} {
		b.Run(mode.name, func(b *testing.B) {
			cfg := testConfig(b)
			cfg.NoSharedMemory = mode.noShm
			p, err := Start(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			if _, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: "logits", Path: b.TempDir()}); err != nil {
				b.Fatal(err)
			}
			req := &sdk.InferRequest{Model: "logits", Inputs: map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{1, 1}, []int64{464})}}
			b.SetBytes(bytesPerCall)
			b.ResetTimer()
			for b.Loop() {
				r, err := p.Infer(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if r.Outputs["logits"].Len() != logitsVocab {
					b.Fatal("short logits")
				}
				if mode.reuse {
					req.OutputBuffers = map[string][]byte{"logits": r.Outputs["logits"].Data}
				}
			}
			b.StopTimer()
			if st := p.SharedMemoryStats(); (st.Calls > 0) == mode.noShm {
				b.Fatalf("shared-memory answers: %d, with NoSharedMemory=%v", st.Calls, mode.noShm)
			}
		})
	}
	// The fixed cost of a call (scheduling, HTTP/2, TLS records) apart from the payload.
	b.Run("plugin-1-logit", func(b *testing.B) {
		p, err := Start(context.Background(), testConfig(b))
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		ctx := context.Background()
		if _, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: "logits", Path: b.TempDir()}); err != nil {
			b.Fatal(err)
		}
		req := &sdk.InferRequest{Model: "logits", Params: map[string]string{"vocab": "1"},
			Inputs: map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{1, 1}, []int64{464})}}
		for b.Loop() {
			if _, err := p.Infer(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("in-process", func(b *testing.B) {
		// The same call without the boundary: the backend hands back its (cached) row and the
		// host validates and views it.
		row := make([]float32, logitsVocab)
		for i := range row {
			row[i] = float32(math.Sin(float64(i)))
		}
		b.SetBytes(bytesPerCall)
		for b.Loop() {
			t := sdk.FromFloat32([]int64{1, logitsVocab}, row)
			v, err := t.Float32s()
			if err != nil || len(v) != logitsVocab {
				b.Fatal("invalid")
			}
		}
	})
}
