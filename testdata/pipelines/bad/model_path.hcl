backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = "./models/no-such-model"
  task    = "causal-lm"
}
