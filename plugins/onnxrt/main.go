// Command modelrt-onnxrt is the ONNX Runtime backend plugin: exported GPT-2 graphs (task
// causal-lm, KV cache inside the plugin), Optimum's VAE encoder/decoder split (task vae) and any
// other ONNX graph (task graph). It needs cgo and the ONNX Runtime shared library
// (docs/onnxruntime.md).
package main

import (
	"github.com/modelrt/modelrt/plugins/onnxrt/backend"
	"github.com/modelrt/modelrt/sdk"
)

func main() { sdk.Serve(backend.New()) }
