# Text and image stages in one DAG: GPT-2 writes a caption, its last token
# seeds a VAE prior sample that the decoder turns into an image.
#   modelrt run text-image-chain

locals {
  prompt = trimspace(file("prompt.txt"))
}

backend "native" {
  plugin = "modelrt-native"
}

model "gpt2" {
  backend = backend.native
  path    = "../../../models/gpt2-tiny"
  task    = "causal-lm"
}

model "vae" {
  backend = backend.native
  path    = "../../../models/vae-tiny"
  task    = "vae"
  options = {
    precision = "float32"
  }
}

pipeline "caption_and_image" {
  input "prompt" {
    type    = string
    default = local.prompt
  }
  input "out" {
    type    = string
    default = "chain.png"
  }

  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = input.prompt
    max_new_tokens = 8
    sampling {
      temperature = 0
    }
  }

  stage "z" {
    use   = "latent.sample"
    model = model.vae
    shape = [1, 4, 8, 8]
    seed  = element(stage.gen.ids, length(stage.gen.ids) - 1)
  }

  stage "direct" {
    use    = "vae.decode"
    model  = model.vae
    latent = stage.z.latent
  }

  stage "save" {
    use   = "image.save"
    image = stage.direct.image
    path  = input.out
  }

  output "caption" {
    value = upper(stage.gen.text)
  }
  output "image" {
    value = stage.save.path
  }
}
