backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = "../../models/gpt2-tiny"
  task    = "causal-lm"
}

pipeline "decode" {
  stage "z" {
    use   = "latent.sample"
    model = model.gpt2
    shape = [1, 4, 8, 8]
  }
}
