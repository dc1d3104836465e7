# Text and image stages in one graph. The demo GPT-2 continues a line of Go; the last generated
# token seeds a draw from the demo glyph VAE's prior, decoded into an image. Independently, the VAE reconstructs an image:
# the text branch and the reconstruction branch run concurrently, the stages of each in order.
#
# This shows data flowing from a text stage into image stages, not text-to-image: the token id is
# only a random seed, and the image does not depict the text. For caption → image, see
# ../text-to-image (a GPT-2 prior over the VAE's codebook).
#
#   bin/modelrt run examples/pipelines/text-image-chain --input out=chain.png

locals {
  prompt = trimspace(file("prompt.txt"))
}

variable "gpt2_dir" {
  type    = string
  default = "../../models/gpt2-go"
}

variable "vae_dir" {
  type    = string
  default = "../../models/vae-glyphs"
}

backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = var.gpt2_dir
  task    = "causal-lm"
}

model "vae" {
  backend = backend.native
  path    = var.vae_dir
  task    = "vae"
}

pipeline "caption_and_image" {
  description = "Continue a line of Go, use its last token as the seed of a VAE prior draw (not a picture of the text)"

  input "prompt" {
    type    = string
    default = local.prompt
  }
  input "image" {
    type    = string
    default = "${path.root}/../vae-reconstruct/glyph.png"
  }
  input "out" {
    type    = string
    default = "chain.png"
  }
  input "reconstruction" {
    type    = string
    default = "chain-reconstruction.png"
  }

  # Text branch: prompt → greedy continuation.
  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = input.prompt
    max_new_tokens = 8
  }

  # Image seeded by the text: the last token id is the seed of the prior draw (nothing more).
  stage "z" {
    use                  = "latent.sample"
    model                = model.vae
    shape                = [1, 4, 4, 4]
    seed                 = element(stage.gen.ids, length(stage.gen.ids) - 1)
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

  # Image branch, independent of the text: runs while GPT-2 generates.
  stage "load" {
    use  = "image.load"
    path = input.image
  }
  stage "enc" {
    use   = "vae.encode"
    model = model.vae
    image = stage.load.image
  }
  stage "rec" {
    use    = "vae.decode"
    model  = model.vae
    latent = stage.enc.latent
  }
  stage "save_rec" {
    use   = "image.save"
    image = stage.rec.image
    path  = input.reconstruction
  }

  output "caption" {
    value = "${input.prompt}${stage.gen.text}"
  }
  output "seed" {
    value = element(stage.gen.ids, length(stage.gen.ids) - 1)
  }
  output "image" {
    value = stage.save.path
  }
  output "reconstruction" {
    value = stage.save_rec.path
  }
}
