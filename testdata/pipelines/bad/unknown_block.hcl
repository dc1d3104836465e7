backend "native" {
  plugin = "modelrt-native"
}

resource "gpt2" {
  path = "../../models/gpt2-tiny"
}
