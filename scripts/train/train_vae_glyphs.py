"""Train the demo AutoencoderKL on font glyphs: examples/models/vae-glyphs.

Data: printable ASCII plus some Latin-1 and Greek letters rendered with PIL from Debian's DejaVu
fonts (fonts-dejavu-core, Bitstream Vera license, DejaVu changes public domain) at several sizes
with small shifts, dark ink on white, 32x32, grayscale repeated on the three RGB channels, scaled to
[-1, 1]. One font (VAL_FONT) is held out for validation.

Model: scripts/fixtures/vae_torch.py's AutoencoderKL (diffusers names), block_out_channels
[32, 64, 64, 64] so a 32x32 image has a 4x4x4 latent: with an 8x8 latent (three blocks) the
reconstructions were as sharp but samples from the prior were scattered strokes, because each
latent pixel sees only a corner of the glyph and the prior draws them independently. Loss per image: sum of squared pixel errors
/ (2 sigma^2) + KL(q(z|x) || N(0, I)), i.e. the ELBO of a Gaussian decoder with fixed noise sigma
(--sigma): a larger sigma weighs the KL more (smoother samples from the prior, blurrier
reconstructions). After training, scaling_factor = 1 / std of the encoder means over 2048 training
glyphs (as Stable Diffusion's VAE does), and the grid shows reconstructions and decodes of
z ~ N(0, I) / scaling_factor.

Run with /usr/bin/python3 (Debian's PyTorch 1.13). Seeded (--seed); CPU float results may still
differ slightly across machines.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)

import checkpoint  # noqa: E402
import gpt2_torch  # noqa: E402  (its safetensors writer handles F16)
from checkpoint import log  # noqa: E402
import vae_torch  # noqa: E402

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
# fonts-dejavu-core's files; DejaVuMathTeXGyre.ttf (fonts-dejavu-extra, another license) is left out.
VAL_FONT = "DejaVuSerifCondensed-BoldItalic.ttf"
CHARS = "".join(chr(c) for c in range(33, 127)) + "ÀÉÎÕÜßàéîõüçñ" + "αβγδεζηθλμπσφψωΓΔΘΛΞΠΣΦΨΩ"
SIZES = (16, 19, 22, 25)
SHIFTS = ((0, 0), (-2, 1), (2, -1))
RES = 32



def font_files():
    names = sorted(n for n in os.listdir(FONT_DIR) if n.startswith("DejaVu") and n.endswith(".ttf") and "MathTeXGyre" not in n)
    if not names:
        raise SystemExit("no DejaVu fonts in %s: apt-get install fonts-dejavu-core" % FONT_DIR)
    return names


def render(font_path, size, ch, dx, dy):
    font = ImageFont.truetype(font_path, size)
    img = Image.new("L", (RES, RES), 255)
    ImageDraw.Draw(img).text((RES / 2 + dx, RES / 2 + dy), ch, font=font, fill=0, anchor="mm")
    return np.asarray(img, dtype=np.uint8)


def dataset():
    """(train, val): uint8 arrays [N, 32, 32] of glyphs (0 ink, 255 paper); blank glyphs dropped."""
    train, val = [], []
    for name in font_files():
        path = os.path.join(FONT_DIR, name)
        for size in SIZES:
            for ch in CHARS:
                for dx, dy in SHIFTS:
                    a = render(path, size, ch, dx, dy)
                    if a.min() > 128:
                        continue  # no glyph in this font
                    (val if name == VAL_FONT else train).append(a)
    return np.stack(train), np.stack(val)


def to_tensor(a):
    """uint8 [N,32,32] -> float32 [N,3,32,32] in [-1, 1]."""
    x = torch.from_numpy(a.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    return x.repeat(1, 3, 1, 1)


def losses(model, x, sigma, g):
    mean, logvar = model.encode(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
    y = model.decode(z)
    rec = ((y - x) ** 2).flatten(1).sum(1) / (2 * sigma * sigma)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
    return rec.mean(), kl.mean(), y


def to_png_cells(x):
    """float [N,3,32,32] in [-1,1] -> uint8 [N,32,32,3]."""
    a = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return a.permute(0, 2, 3, 1).numpy()


def grid(rows, scale=2):
    """rows: list of uint8 [n,32,32,3] arrays -> a PIL image with a 2-pixel gray gutter."""
    n = max(len(r) for r in rows)
    gut = 2
    W = n * (RES + gut) + gut
    H = len(rows) * (RES + gut) + gut
    canvas = np.full((H, W, 3), 160, dtype=np.uint8)
    for i, r in enumerate(rows):
        for j, cell in enumerate(r):
            y, x = gut + i * (RES + gut), gut + j * (RES + gut)
            canvas[y : y + RES, x : x + RES] = cell
    img = Image.fromarray(canvas)
    return img.resize((W * scale, H * scale), Image.NEAREST)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "examples", "models", "vae-glyphs"))
    ap.add_argument("--work", default="/tmp/modelrt-train/vae-glyphs")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--sigma", type=float, default=0.15)
    ap.add_argument("--block-out-channels", default="32,64,64,64")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--export-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)

    data_path = os.path.join(args.work, "glyphs.npz")
    if os.path.exists(data_path):
        z = np.load(data_path)
        train_u8, val_u8 = z["train"], z["val"]
    else:
        t0 = time.time()
        train_u8, val_u8 = dataset()
        np.savez_compressed(data_path, train=train_u8, val=val_u8)
        log("data: rendered in %.0fs" % (time.time() - t0))
    log("data: %d train glyphs, %d val glyphs (%s), %d fonts" % (len(train_u8), len(val_u8), VAL_FONT, len(font_files())))
    train_x = to_tensor(train_u8)
    val_x = to_tensor(val_u8)

    blocks = [int(c) for c in args.block_out_channels.split(",")]
    cfg = vae_torch.default_config(block_out_channels=blocks, layers_per_block=1, norm_num_groups=16,
                                   latent_channels=4, sample_size=RES, scaling_factor=1.0)
    torch.manual_seed(args.seed)
    model = vae_torch.AutoencoderKL(cfg)  # PyTorch's default initialization, seeded above
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed + 1)
    ckpt = os.path.join(args.work, "ckpt.pt")
    step, history, elapsed = checkpoint.resume(ckpt, model, opt, g)
    nparams = sum(p.numel() for p in model.parameters())
    log("model: %d parameters" % nparams)

    def lr_at(s):
        warm = 50
        if s < warm:
            return args.lr * (s + 1) / warm
        return 0.05 * args.lr + 0.95 * args.lr * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, args.steps - warm)))

    @torch.no_grad()
    def evaluate(x):
        model.eval()
        ge = torch.Generator().manual_seed(7)
        idx = torch.randperm(len(x), generator=ge)[:128]
        r, k, mse = 0.0, 0.0, 0.0
        for i in range(0, len(idx), 64):
            xb = x[idx[i : i + 64]]
            rl, kl, y = losses(model, xb, args.sigma, ge)
            r += rl.item() * len(xb)
            k += kl.item() * len(xb)
            mean, _ = model.encode(xb)
            mse += ((model.decode(mean) - xb) ** 2).mean().item() * len(xb)
        model.train()
        n = len(idx)
        return {"rec": r / n, "kl": k / n, "loss": (r + k) / n, "mse_of_mean": mse / n}

    t_last = time.time()
    acc = [0.0, 0.0, 0]
    while step < args.steps and not args.export_only:
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        idx = torch.randint(0, len(train_x), (args.batch,), generator=g)
        rec, kl, _ = losses(model, train_x[idx], args.sigma, g)
        loss = rec + kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        opt.step()
        step += 1
        acc[0] += rec.item()
        acc[1] += kl.item()
        acc[2] += 1
        now = time.time()
        elapsed += now - t_last
        t_last = now
        if step % 10 == 0:
            log("step %d/%d rec %.1f kl %.1f (%.2f s/step, %.0f s)" % (step, args.steps, acc[0] / acc[2], acc[1] / acc[2], elapsed / step, elapsed))
            acc = [0.0, 0.0, 0]
        if step % args.eval_every == 0 or step == args.steps:
            ev = {"step": step, "seconds": round(elapsed), "train": evaluate(train_x), "val": evaluate(val_x)}
            history.append(ev)
            log("eval %s" % json.dumps(ev))
            t_last = time.time()
        if step % args.ckpt_every == 0 or step == args.steps:
            checkpoint.save(ckpt, model, opt, g, step, history, elapsed)
            t_last = time.time()

    export(args, model, cfg, train_x, val_x, history, step, elapsed, nparams)


@torch.no_grad()
def export(args, model, cfg, train_x, val_x, history, step, elapsed, nparams):
    model.eval()
    gpt2_torch.round_model_(model, "F16")
    means = []
    sub = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(args.seed + 3))[:2048]]
    for i in range(0, len(sub), 256):
        means.append(model.encode(sub[i : i + 256])[0])
    std = torch.cat(means).std().item()
    cfg = dict(cfg)
    cfg["scaling_factor"] = round(1.0 / std, 5)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    gpt2_torch.save_safetensors(os.path.join(args.out, "diffusion_pytorch_model.safetensors"),
                                model.state_dict(), dtype="F16")
    # Grid: 2 rows of held-out originals, their reconstructions (decode of the mean), 4 rows of
    # prior samples decode(z / scaling_factor), z ~ N(0, I).
    ge = torch.Generator().manual_seed(args.seed + 2)
    idx = torch.randperm(len(val_x), generator=ge)[:32]
    orig = val_x[idx]
    recon = model.decode(model.encode(orig)[0])
    f = 2 ** (len(cfg["block_out_channels"]) - 1)
    lat = torch.randn((64, cfg["latent_channels"], RES // f, RES // f), generator=ge)
    prior = model.decode(lat / cfg["scaling_factor"])
    o, r, p = to_png_cells(orig), to_png_cells(recon), to_png_cells(prior)
    rows = [o[:16], r[:16], o[16:], r[16:]] + [p[k : k + 16] for k in range(0, 64, 16)]
    grid(rows).save(os.path.join(args.out, "grid-pytorch.png"), optimize=True)
    # The first 16 held-out originals as PNG files, for `modelrt vae reconstruct` (model card).
    gdir = os.path.join(args.out, "glyphs")
    os.makedirs(gdir, exist_ok=True)
    for k in range(16):
        Image.fromarray(o[k]).save(os.path.join(gdir, "%02d.png" % k), optimize=True)
    # Check file for examples/models/demo_test.go: one held-out glyph, its encoding and decoding.
    x0 = val_x[idx[:1]]
    mean, logvar = model.encode(x0)
    dec = model.decode(mean)
    u8 = ((x0[0, 0] + 1) * 127.5).round().to(torch.uint8).flatten().tolist()
    check = {"glyph_u8": u8, "shape": [1, 3, RES, RES], "mean": [round(v, 6) for v in mean.flatten().tolist()],
             "logvar": [round(v, 6) for v in logvar.flatten().tolist()], "latent_shape": list(mean.shape),
             "decoded_mean": [round(v, 6) for v in dec.flatten().tolist()]}
    os.makedirs(os.path.join(args.out, "testdata"), exist_ok=True)
    with open(os.path.join(args.out, "testdata", "check.json"), "w") as f:
        json.dump(check, f, separators=(",", ":"))
        f.write("\n")
    final = history[-1] if history else {}
    stats = {"steps": step, "train_seconds": round(elapsed), "parameters": nparams, "batch": args.batch,
             "sigma": args.sigma, "seed": args.seed, "latent_std": std, "scaling_factor": cfg["scaling_factor"],
             "train_glyphs": len(train_x), "val_glyphs": len(val_x), "final": final, "history": history}
    with open(os.path.join(args.work, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    log("export: wrote %s; latent std %.4f -> scaling_factor %.5f; final %s" % (args.out, std, cfg["scaling_factor"], json.dumps(final)))


if __name__ == "__main__":
    main()
