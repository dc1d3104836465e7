# The n-gram backend from HCL. Build the plugin beside this file first:
#   go build -o examples/backends/ngram/modelrt-ngram ./examples/backends/ngram
#   modelrt run examples/backends/ngram --input prompt="The gardener"

backend "ngram" {
  plugin = "./modelrt-ngram" # a path: resolved against this directory
  config {
    max_sessions = 8 # declared by the plugin's ConfigSchema; anything else is an error
  }
}

model "garden" {
  backend = backend.ngram
  path    = "./testdata/model" # corpus.txt, config.json, and the byte tokenizer
  task    = "causal-lm"
}

pipeline "babble" {
  description = "Continue a prompt with the byte-level n-gram model"

  input "prompt" {
    type        = string
    description = "text to continue"
  }

  stage "gen" {
    use            = "generate"
    model          = model.garden
    prompt         = input.prompt # tokenized by the host with the model's vocab.json + merges.txt
    max_new_tokens = 120
    sampling {
      temperature = 0.7
      seed        = 7
    }
  }

  output "text" { value = stage.gen.text }
}
