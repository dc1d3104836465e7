# The same backend again, in another file of the directory.

backend "native" {
  plugin = "modelrt-native"
}
