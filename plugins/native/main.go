// Command modelrt-native is the pure-Go backend plugin: GPT-2 (task causal-lm) and diffusers
// AutoencoderKL (task vae) on safetensors weights, computed by the kernels in native/.
// It builds with CGO_ENABLED=0.
package main

import (
	"github.com/modelrt/modelrt/plugins/native/backend"
	"github.com/modelrt/modelrt/sdk"
)

func main() { sdk.Serve(backend.New()) }
