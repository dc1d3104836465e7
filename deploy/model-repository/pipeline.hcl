# What a modelrt model repository (a KServe storageUri, or a directory mounted at /mnt/models)
# holds: this file and the model directories it names, relative to it. modelrt serve loads
# every model here at start; the pipelines below are served at /v1/pipelines/NAME:run.
#
#   gpt2/   config.json, model.safetensors (or model.onnx), vocab.json + merges.txt
#
# KServe calls /v2/models/<InferenceService name>/...: keep the model's name equal to it.

backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = "./gpt2"
  task    = "causal-lm"
}

pipeline "complete" {
  description = "Continue a prompt"

  input "prompt" {
    type = string
  }
  input "max_new_tokens" {
    type    = number
    default = 32
  }

  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = input.prompt
    max_new_tokens = input.max_new_tokens
    sampling {
      temperature = 0.8
      top_p       = 0.95
    }
  }

  output "text" {
    value = "${input.prompt}${stage.gen.text}"
  }
}
