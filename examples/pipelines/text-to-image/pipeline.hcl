# Caption → image. A GPT-2 prior reads the caption and samples the codes of the glyph VAE's
# codebook, one latent pixel at a time (classifier-free guidance against the empty caption); the
# codes' codebook vectors make the latent that the VAE decodes (docs/text2image.md).
#
#   bin/modelrt run examples/pipelines/text-to-image --input caption="the capital letter R, bold serif" --input out=/tmp/r.png
#
# The prior's directory names its VAE in text2image.json; here the vae model block decides (so an
# ONNX export of the VAE can run on another backend).

variable "prior_dir" {
  type    = string
  default = "../../models/glyph-prior"
}

variable "vae_dir" {
  type    = string
  default = "../../models/vae-glyphs"
}

backend "native" {
  plugin = "modelrt-native"
}

model "prior" {
  backend = backend.native
  path    = var.prior_dir
  task    = "causal-lm"
}

model "vae" {
  backend = backend.native
  path    = var.vae_dir
  task    = "vae"
}

pipeline "text_to_image" {
  description = "Draw images of a caption with a GPT-2 prior over VAE codebook codes"

  input "caption" {
    type    = string
    default = "the capital letter R, bold serif"
  }
  input "n" {
    type    = number
    default = 4
  }
  input "seed" {
    type    = number
    default = 1
  }
  input "out" {
    type    = string
    default = "text-to-image.png"
  }

  stage "draw" {
    use     = "image.generate"
    prior   = model.prior
    vae     = model.vae
    caption = input.caption
    n       = input.n
    sampling {
      guidance = 2
      seed     = input.seed
    }
  }
  stage "save" {
    use   = "image.save"
    image = stage.draw.image
    path  = input.out
  }

  output "caption" {
    value = stage.draw.caption
  }
  output "image" {
    value = stage.save.path
  }
  output "codes" {
    value = stage.draw.codes
  }
}
