# VAE reconstruction: image → encoder → posterior sample → decoder → image.
#   modelrt run vae-reconstruct --input image=cat.png --input out=cat-reconstructed.png

pipeline "reconstruct" {
  description = "Encode an image with the VAE and decode it again"

  input "image" {
    type        = string
    description = "path of a PNG or JPEG image"
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

  output "path" {
    value = stage.save.path
  }
}
