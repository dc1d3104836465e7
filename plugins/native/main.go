// Command modelrt-native is the pure-Go backend plugin: GPT-2 (task causal-lm) and diffusers
// AutoencoderKL (task vae) on safetensors weights, computed by the kernels in native/.
// It builds with CGO_ENABLED=0.
package main

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"

	"github.com/modelrt/modelrt/plugins/native/backend"
	"github.com/modelrt/modelrt/sdk"
)

// loadGCPercent is the plugin's GOGC while it has no model, and while a load runs.
const loadGCPercent = 20

// gcHeadroom is the garbage the plugin lets pile up between collections once a model is
// loaded. The weights are nearly all of the live heap and never garbage, and they hold no
// pointers, so a collection costs little however large they are; but GOGC is a fraction of the
// live heap, and even at 20 a GPT-2 124M's 474 MiB of weights let ~95 MiB of dead logits and
// request buffers stay resident before a collection ran. So after each load and unload the
// percentage is set to give this much headroom over the live heap, between minGCPercent and
// loadGCPercent (a KV cache is off the heap and freed when its session ends: not part of this).
// It never goes above loadGCPercent: a VAE's weights are small, and its activations, not its
// weights, make the live heap of a decode: at 100% the bench's quick VAE peaked at 195 MiB
// (onnxrt 130).
const (
	gcHeadroom   = 16 << 20
	minGCPercent = 2
)

// gcTuned is the native backend with the GC percentage retuned after every load and unload.
type gcTuned struct{ *backend.Backend }

func (g gcTuned) LoadModel(ctx context.Context, req *sdk.LoadModelRequest) (*sdk.LoadModelResponse, error) {
	r, err := g.Backend.LoadModel(ctx, req)
	tuneGC()
	return r, err
}

func (g gcTuned) UnloadModel(ctx context.Context, req *sdk.UnloadModelRequest) (*sdk.UnloadModelResponse, error) {
	r, err := g.Backend.UnloadModel(ctx, req)
	tuneGC()
	return r, err
}

// tuneGC collects, returns the freed memory to the system (a load's garbage: the decoded
// tensors and scratch buffers, 16 MiB for GPT-2 124M, which the background scavenger would
// otherwise hand back only slowly), reads the live heap and sets GOGC to gcHeadroom of it.
func tuneGC() {
	debug.FreeOSMemory()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	live := s[0].Value.Uint64()
	pct := loadGCPercent
	if live > 0 {
		pct = int(min(max(uint64(gcHeadroom)*100/live, minGCPercent), loadGCPercent))
	}
	debug.SetGCPercent(pct)
	slog.Debug("native: GC retuned", "live_heap", live, "gogc", pct)
}

func main() {
	// No heap profile is ever taken from the plugin: its sampling buckets would only take memory.
	runtime.MemProfileRate = 0
	if os.Getenv("GOGC") != "" {
		sdk.Serve(backend.New())
		return
	}
	debug.SetGCPercent(loadGCPercent)
	sdk.Serve(gcTuned{backend.New()})
}
