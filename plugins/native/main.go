// Command modelrt-native is the pure-Go backend plugin: GPT-2 (task causal-lm) and diffusers
// AutoencoderKL (task vae) on safetensors weights, computed by the kernels in native/.
// It builds with CGO_ENABLED=0.
package main

import (
	"os"
	"runtime/debug"

	"github.com/modelrt/modelrt/plugins/native/backend"
	"github.com/modelrt/modelrt/sdk"
)

// gcPercent is the plugin's GOGC unless the environment sets one. The weights are most of the
// live heap and never garbage, and a decode step allocates nothing, so collections are rare and
// cheap (the weights hold no pointers); but with the default 100 the garbage of closed sessions
// and outgrown KV caches could reach the size of the weights before a collection ran — a
// GPT-2 124M plugin peaked at 928 MiB for 474 MiB of weights after decoding at batch 1–8, and at
// 709 MiB with 20.
const gcPercent = 20

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	sdk.Serve(backend.New())
}
