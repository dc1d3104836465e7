# The pipeline `make run` runs, both halves of modelrt: Go code completion with the demo GPT-2
# trained on Go source, and images drawn from captions by the text-to-image glyph prior
# (examples/models/glyph-prior: a GPT-2 over the glyph VAE's codebook codes), written as one grid.
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

variable "prior_dir" {
  type        = string
  default     = "../../models/glyph-prior"
  description = "text-to-image prior directory (text2image.json names its VAE)"
}

variable "vae_dir" {
  type    = string
  default = "../../models/vae-glyphs"
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

model "prior" {
  backend = backend.native
  path    = var.prior_dir
  task    = "causal-lm"
}

model "vae" {
  backend = backend.native
  path    = var.vae_dir
  task    = "vae"
}

pipeline "complete" {
  description = "Continue Go source code (streamed), then draw four captions, four images each, as one grid"

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
  input "grid" {
    type        = string
    default     = "images.png"
    description = "where the grid of images is written (rows: captions; columns: draws)"
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

  stage "draw" {
    use      = "image.generate"
    prior    = model.prior
    vae      = model.vae
    captions = [
      "the capital letter R, bold serif",
      "the lowercase letter g, italic",
      "the digit 7, mono",
      "the greek letter Ω, sans",
    ]
    n    = 4
    size = 64
    sampling {
      guidance = 2
      seed     = input.seed
    }
  }
  stage "save" {
    use     = "image.save"
    image   = stage.draw.image
    path    = input.grid
    columns = 4
  }

  output "code" {
    value       = "${input.prompt}${stage.gen.text}"
    description = "the prompt followed by its continuation"
  }
  output "images" {
    value       = stage.save.path
    description = "the PNG grid of the captions' images"
  }
}
