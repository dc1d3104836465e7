"""Codebook for the text-to-image glyph prior: k-means over the demo VAE's latent vectors.

Every training render (train_vae_glyphs.py's glyphs, the held-out face DejaVuSerifCondensed-
BoldItalic excluded) is encoded with examples/models/vae-glyphs' encoder; the UNSCALED means
(4 channels x 4x4 grid) give 16 vectors of 4 numbers per glyph. Seeded k-means (k-means++ start
on a subsample, then Lloyd iterations on all vectors) is run for each K in --ks, and each codebook
is measured against the unquantised latent:

  latent MSE   mean squared error between a latent vector and its nearest code (per number);
  pixel MSE    mean squared error on [-1, 1] pixels of vae.decode(quantised latent) against the
               original render, next to the same for vae.decode(unquantised mean) (the ceiling);

on --n-train training renders and --n-held-out renders of the held-out face. Writes
WORK/codebook-K.pt for every K (a file that exists is measured, not fitted again) and WORK/codebook.json (the table). train_glyph_prior.py reads
the chosen K's file.

  scripts/train/with-openblas.sh /usr/bin/python3 scripts/train/glyph_codebook.py
"""

import argparse
import json
import os
import time

import torch

import glyphdata as gd
from checkpoint import log


def sq_dist(x, c):
    return (x * x).sum(1, keepdim=True) - 2 * x @ c.t() + (c * c).sum(1)[None, :]


def assign(x, c, chunk=4096):
    """Index of the nearest code of every row of x, and the squared distance."""
    idx, dist = [], []
    for i in range(0, len(x), chunk):
        d = sq_dist(x[i : i + chunk], c)
        m, j = d.min(1)
        idx.append(j)
        dist.append(m.clamp_min(0))
    return torch.cat(idx), torch.cat(dist)


def kmeans(x, k, seed, iters, fit_sample, init_sample=20000):
    """Codebook [k, C]: k-means++ start on init_sample vectors, then Lloyd iterations on
    fit_sample vectors (0 = all), all drawn with seed."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    sub = x[perm[:init_sample]]
    if fit_sample:
        x = x[perm[:fit_sample]]
    # k-means++ on the subsample.
    cent = [sub[torch.randint(0, len(sub), (1,), generator=g)].squeeze(0)]
    d = ((sub - cent[0]) ** 2).sum(1)
    for _ in range(1, k):
        j = torch.multinomial(d / d.sum(), 1, generator=g).item()
        cent.append(sub[j])
        d = torch.minimum(d, ((sub - sub[j]) ** 2).sum(1))
    c = torch.stack(cent)
    for it in range(iters):
        idx, dist = assign(x, c)
        sums = torch.zeros_like(c).index_add_(0, idx, x)
        cnt = torch.bincount(idx, minlength=k).to(x.dtype)
        empty = cnt == 0
        c = torch.where(empty[:, None], c, sums / cnt.clamp_min(1)[:, None])
        if empty.any():  # re-seed empty clusters on the worst-fitted vectors
            far = dist.topk(int(empty.sum())).indices
            c[empty] = x[far]
    return c


def to_vectors(lat):
    """[N,C,H,W] -> [N*H*W, C] in raster order."""
    return lat.permute(0, 2, 3, 1).reshape(-1, lat.shape[1])


def quantise(lat, c):
    n, ch, h, w = lat.shape
    idx, _ = assign(to_vectors(lat), c)
    q = c[idx].reshape(n, h, w, ch).permute(0, 3, 1, 2)
    return q, idx.reshape(n, h * w)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=gd.WORK)
    ap.add_argument("--ks", default="128,256,512,1024")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--iters", type=int, default=20, help="Lloyd iterations")
    ap.add_argument("--fit-sample", type=int, default=100000, help="vectors the iterations run on (0 = all)")
    ap.add_argument("--n-train", type=int, default=512, help="training renders decoded for the pixel MSE")
    ap.add_argument("--n-held-out", type=int, default=256, help="held-out renders decoded for the pixel MSE")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    data = gd.labelled_dataset(args.work)
    held = data["faces"].index(gd.HELD_OUT)
    vae, _ = gd.load_vae()
    lat_path = os.path.join(args.work, "latents.pt")
    if os.path.exists(lat_path):
        lat = torch.load(lat_path)
    else:
        t0 = time.time()
        lat = gd.encode_means(vae, data["images"])
        torch.save(lat, lat_path)
        log("encoded %d glyphs in %.0fs" % (len(lat), time.time() - t0))
    is_train = torch.from_numpy(data["face"] != held)
    train_lat = lat[is_train]
    x = to_vectors(train_lat)
    log("k-means over %d latent vectors of %d training glyphs" % (len(x), len(train_lat)))

    g = torch.Generator().manual_seed(args.seed + 1)
    ti = torch.nonzero(is_train).squeeze(1)
    vi = torch.nonzero(~is_train).squeeze(1)
    ti = ti[torch.randperm(len(ti), generator=g)[:args.n_train]]
    vi = vi[torch.randperm(len(vi), generator=g)[:args.n_held_out]]
    sets = {}
    for name, ix in (("train", ti), ("held_out", vi)):
        imgs = gd.to_tensor(data["images"][ix.numpy()])
        sets[name] = (lat[ix], imgs, ((gd.decode(vae, lat[ix]) - imgs) ** 2).mean().item())
    rows = []
    for k in [int(s) for s in args.ks.split(",")]:
        t0 = time.time()
        cpath = os.path.join(args.work, "codebook-%d.pt" % k)
        if os.path.exists(cpath):  # fitted by an earlier run: measure it again
            c = torch.load(cpath)
        else:
            c = kmeans(x, k, args.seed, args.iters, args.fit_sample)
            torch.save(c, cpath)
        _, dist = assign(x, c)
        row = {"K": k, "kmeans_seconds": round(time.time() - t0, 1), "train_latent_mse_all": dist.mean().item() / x.shape[1]}
        for name, (l, imgs, ceiling) in sets.items():
            q, _ = quantise(l, c)
            row[name + "_latent_mse"] = ((q - l) ** 2).mean().item()
            row[name + "_pixel_mse"] = ((gd.decode(vae, q) - imgs) ** 2).mean().item()
            row[name + "_pixel_mse_unquantised"] = ceiling
        rows.append(row)
        log("K %d: %s" % (k, json.dumps(row)))
    var = x.var(0).mean().item()
    with open(os.path.join(args.work, "codebook.json"), "w") as f:
        json.dump({"latent_variance_per_number": var, "rows": rows}, f, indent=1)
    log("latent variance per number %.4f; table in %s" % (var, os.path.join(args.work, "codebook.json")))


if __name__ == "__main__":
    main()
