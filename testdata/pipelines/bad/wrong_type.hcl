backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = "../../models/gpt2-tiny"
  task    = "causal-lm"
}

pipeline "complete" {
  input "prompt" {}

  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = input.prompt
    max_new_tokens = "many"
  }
}
