# Text completion on ONNX Runtime. model_dir is an ONNX GPT-2 with its tokenizer files, for
# instance modelrt's own export of the tiny test model:
#
#   bin/modelrt export --model testdata/models/gpt2-tiny --out /tmp/gpt2-tiny-onnx --with-past
#   bin/modelrt run examples/pipelines/complete-onnxrt -var model_dir=/tmp/gpt2-tiny-onnx \
#       --input prompt="Once upon a time"
#
# The onnxrt backend needs the ONNX Runtime library (scripts/install-onnxruntime.sh; the
# library_path config attribute or $ONNXRUNTIME_SHARED_LIBRARY_PATH points at it).

variable "model_dir" {
  type        = string
  description = "ONNX GPT-2 directory: model.onnx (Optimum or ORT past-key-value inputs) and tokenizer files"
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

# A graph served as raw named tensors (task "graph"), for the infer stage. A graph gets exactly
# the inputs it declares, so this is one without past key/value inputs (export --with-past=false,
# or the no-cache test fixture).
variable "graph_dir" {
  type        = string
  default     = "../../../testdata/models/gpt2-odd-onnx-nocache-op14"
  description = "ONNX GPT-2 without KV-cache inputs: input_ids, attention_mask, position_ids → logits"
}

model "gpt2_graph" {
  backend = backend.onnxrt
  path    = var.graph_dir
  task    = "graph"
}

pipeline "complete" {
  description = "Continue a prompt greedily; the generate stage tokenizes the prompt itself"

  input "prompt" {
    type = string
  }
  input "max_new_tokens" {
    type    = number
    default = 24
  }

  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = input.prompt
    max_new_tokens = input.max_new_tokens
    stop           = ["\n\n"]
  }

  output "text" {
    value = "${input.prompt}${stage.gen.text}"
  }
}

pipeline "logits" {
  description = "One forward pass of the graph on token ids: the logits of every position"

  input "ids" {
    type    = list(number)
    default = [5, 17, 300, 2]
  }

  stage "forward" {
    use   = "infer"
    model = model.gpt2_graph
    inputs = {
      # (1, T) each: the nesting is the shape.
      input_ids      = [input.ids]
      attention_mask = [[for id in input.ids : 1]]
      position_ids   = [range(length(input.ids))]
    }
  }

  output "logits" {
    value = stage.forward.outputs["logits"]
  }
}
