# Text completion on the native (pure Go) backend: tokenize → generate → detokenize.
#
#   bin/modelrt run examples/pipelines/complete-native --input prompt="Once upon a time"
#   bin/modelrt run examples/pipelines/complete-native -var model_dir=DIR --input prompt=...

variable "model_dir" {
  type        = string
  default     = "../../../testdata/models/gpt2-tiny"
  description = "GPT-2 model directory: config.json, model.safetensors and the tokenizer files"
}

variable "max_new_tokens" {
  type    = number
  default = 24
}

backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = var.model_dir
  task    = "causal-lm"
}

pipeline "complete" {
  description = "Continue a prompt with GPT-2, sampling with a fixed seed"

  input "prompt" {
    type        = string
    description = "text to continue"
  }
  input "seed" {
    type    = number
    default = 1
  }

  stage "ids" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = input.prompt
  }

  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    input_ids      = stage.ids.ids
    max_new_tokens = var.max_new_tokens
    sampling {
      temperature = 0.8
      top_k       = 40
      top_p       = 0.95
      seed        = input.seed
    }
  }

  stage "text" {
    use       = "detokenize"
    tokenizer = model.gpt2
    ids       = stage.gen.ids
  }

  output "text" {
    value       = stage.text.text
    description = "the prompt followed by its continuation"
  }
  output "new_tokens" {
    value = length(stage.gen.ids) - length(stage.ids.ids)
  }
}
