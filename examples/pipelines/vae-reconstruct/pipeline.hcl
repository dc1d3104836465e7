# VAE reconstruction: image → encoder → posterior sample → decoder → image.
#
#   bin/modelrt run examples/pipelines/vae-reconstruct --input out=reconstruction.png
#   bin/modelrt run examples/pipelines/vae-reconstruct --input image=cat.png -var vae_dir=DIR
#
# The default VAE is the demo glyph model (examples/models/vae-glyphs, trained by
# scripts/train/train_vae_glyphs.py on 32x32 font glyphs). The image's height and width must be
# multiples of the VAE's downsampling factor (8 for the glyph VAE and for Stable Diffusion's).

variable "vae_dir" {
  type        = string
  default     = "../../models/vae-glyphs"
  description = "diffusers AutoencoderKL directory: config.json and diffusion_pytorch_model.safetensors"
}

backend "native" {
  plugin = "modelrt-native"
}

model "vae" {
  backend = backend.native
  path    = var.vae_dir
  task    = "vae"
}

pipeline "reconstruct" {
  description = "Encode an image with the VAE and decode a sample of its posterior"

  input "image" {
    type        = string
    default     = "${path.root}/glyph.png"
    description = "PNG or JPEG to reconstruct (relative paths: the working directory)"
  }
  input "out" {
    type    = string
    default = "reconstruction.png"
  }
  input "seed" {
    type    = number
    default = 0
  }

  stage "load" {
    use  = "image.load"
    path = input.image
  }

  stage "enc" {
    use   = "vae.encode"
    model = model.vae
    image = stage.load.image
  }

  stage "z" {
    use    = "latent.sample"
    model  = model.vae
    mean   = stage.enc.mean
    logvar = stage.enc.logvar
    seed   = input.seed
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

  output "latent" {
    value = stage.z.latent
  }
  output "path" {
    value = stage.save.path
  }
}
