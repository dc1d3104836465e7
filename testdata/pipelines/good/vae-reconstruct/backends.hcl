# Backends and models live in their own file: every .hcl file of the
# directory merges into one configuration.

backend "native" {
  plugin = "modelrt-native"
}

model "vae" {
  backend = backend.native
  path    = "../../../models/vae-tiny"
  task    = "vae"
}
