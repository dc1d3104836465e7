variable "model_dir" {
  type = string
}

backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = var.model_dir
  task    = "causal-lm"
}
