backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = "../../models/gpt2-tiny"
  task    = "causal-lm"
}

pipeline "complete" {
  stage "ids" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = "a"
  }

  stage "ids" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = "b"
  }
}
