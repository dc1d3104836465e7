backend "native" {
  plugin = "modelrt-native"
}
