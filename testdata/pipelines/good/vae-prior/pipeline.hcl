# Sampling from the VAE's prior: z ~ N(0, I) / scaling_factor → decoder → image.
#   modelrt run vae-prior --input seed=7

variable "latent_size" {
  type    = list(number)
  default = [8, 8]
}

locals {
  latent_channels = 4
  shape           = concat([1, local.latent_channels], var.latent_size)
}

backend "native" {
  plugin = "modelrt-native"
}

model "vae" {
  backend = backend.native
  path    = "../../../models/vae-tiny"
  task    = "vae"
}

pipeline "sample" {
  input "seed" {
    type    = number
    default = 42
  }
  input "out" {
    type    = string
    default = "sample.png"
  }

  stage "z" {
    use                  = "latent.sample"
    model                = model.vae
    shape                = local.shape
    seed                 = input.seed
    apply_scaling_factor = true
  }

  stage "dec" {
    use    = "vae.decode"
    model  = model.vae
    latent = stage.z.latent
  }

  stage "save" {
    use   = "image.save"
    image = stage.dec.image
    path  = input.out
  }

  output "path" {
    value = stage.save.path
  }
}
