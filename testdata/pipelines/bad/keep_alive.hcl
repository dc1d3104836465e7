backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend    = backend.native
  path       = "../../models/gpt2-tiny"
  task       = "causal-lm"
  keep_alive = "5 minutes"
}
