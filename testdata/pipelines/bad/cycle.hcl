backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = "../../models/gpt2-tiny"
  task    = "causal-lm"
}

pipeline "loop" {
  stage "a" {
    use       = "detokenize"
    tokenizer = model.gpt2
    ids       = stage.b.ids
  }

  stage "b" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = stage.a.text
  }

  stage "free" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = "independent"
  }
}
