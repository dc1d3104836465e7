# Text completion on ONNX Runtime: the generate stage tokenizes the prompt itself.
#   modelrt run complete-onnxrt -var model_dir=DIR --input prompt="Hello"
# model_dir holds model.onnx (Optimum or ORT past-key-value convention) and the
# tokenizer files.

variable "model_dir" {
  type    = string
  default = "../../../models/gpt2-odd-onnx-optimum-op17"
}

variable "threads" {
  type    = number
  default = 2
}

backend "onnxrt" {
  plugin = "modelrt-onnxrt"
  config {
    intra_op_threads = var.threads
  }
}

model "gpt2" {
  backend = backend.onnxrt
  path    = var.model_dir
  task    = "causal-lm"
}

pipeline "complete" {
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
    stop           = ["\n\n"]
  }

  output "text" {
    value = format("%s%s", input.prompt, stage.gen.text)
  }
}

# The same graph served as raw named tensors (task "graph"): the infer stage
# passes inputs through and returns every output the graph declares.
model "gpt2_graph" {
  backend = backend.onnxrt
  path    = var.model_dir
  task    = "graph"
}

pipeline "logits" {
  input "ids" {
    type    = list(number)
    default = [464, 3290, 11]
  }

  stage "forward" {
    use   = "infer"
    model = model.gpt2_graph
    inputs = {
      input_ids = [input.ids] # (1, T): the nesting is the shape
    }
  }

  output "logits" {
    value = stage.forward.outputs["logits"]
  }
}
