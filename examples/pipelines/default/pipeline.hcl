# The pipeline `make run` runs: Go code completion with the demo GPT-2 trained on Go source.
#
#   bin/modelrt run examples/pipelines/default
#   bin/modelrt run examples/pipelines/default --input prompt='func add(a, b int) int {'
#   bin/modelrt run examples/pipelines/default -var model_dir=DIR   (any GPT-2 directory)
#
# The demo model (examples/models/gpt2-go, trained by scripts/train/train_gpt2_go.py on the Go
# standard library) is small: expect Go-shaped text, not correct programs.

variable "model_dir" {
  type        = string
  default     = "../../models/gpt2-go"
  description = "GPT-2 model directory: config.json, model.safetensors and the tokenizer files"
}

variable "max_new_tokens" {
  type    = number
  default = 48
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
  description = "Continue Go source code; the continuation streams as it is generated"

  input "prompt" {
    type        = string
    default     = "package main\n\nimport \"fmt\"\n\nfunc main() {\n"
    description = "code to continue"
  }
  input "temperature" {
    type        = number
    default     = 0.7
    description = "0 is greedy"
  }
  input "seed" {
    type    = number
    default = 1
  }

  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = input.prompt
    max_new_tokens = var.max_new_tokens
    stop           = ["\nfunc ", "\n\n\n"]
    sampling {
      temperature = input.temperature
      top_k       = 40
      top_p       = 0.95
      seed        = input.seed
    }
  }

  output "code" {
    value       = "${input.prompt}${stage.gen.text}"
    description = "the prompt followed by its continuation"
  }
}
