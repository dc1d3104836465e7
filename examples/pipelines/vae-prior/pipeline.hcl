# Sampling from the VAE's prior: z = ε / scaling_factor with ε ~ N(0, I), decoded to an image.
#
#   bin/modelrt run examples/pipelines/vae-prior --input seed=7 --input out=sample.png
#   bin/modelrt run examples/pipelines/vae-prior -var 'latent_size=[8, 8]'
#
# The default VAE is the demo glyph model: a 4x4 latent decodes to a 32x32 glyph.

variable "vae_dir" {
  type    = string
  default = "../../models/vae-glyphs"
}

variable "latent_channels" {
  type        = number
  default     = 4
  description = "the VAE's latent_channels (config.json)"
}

variable "latent_size" {
  type        = list(number)
  default     = [4, 4]
  description = "latent height and width; the image is the VAE's downsampling factor times larger"
}

locals {
  shape = concat([1, var.latent_channels], var.latent_size)
}

backend "native" {
  plugin = "modelrt-native"
}

model "vae" {
  backend = backend.native
  path    = var.vae_dir
  task    = "vae"
}

pipeline "sample" {
  description = "Decode a draw from the VAE's prior"

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
