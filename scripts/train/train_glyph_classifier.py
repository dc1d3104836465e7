"""A small glyph classifier, the measuring instrument of eval_text2image.py.

It reads a 32x32 grayscale glyph ([N,1,32,32], [-1, 1], dark ink on white, as the VAE's output
channel 0) and returns logits for five heads: char (the 132 characters of
train_vae_glyphs.py, in CHARS order), weight (regular, bold, light), slant (upright, italic),
family (serif, sans, mono) and width (normal, condensed).

Data decision: it is trained on renders of ALL 21 faces, the prior's held-out face included,
because it measures images rather than generating them: it must recognise a bold italic serif
condensed glyph when the prior draws one, and it never sees a caption. Generated images are VAE
decodes, softer than renders, so every training render is used twice: as rendered and as the
VAE's reconstruction (decode of the unscaled encoder mean) is added for --n-recon of the
training renders. 10% of the renders are held out as its test set; the accuracies on them and on
the reconstructions of a sixth of --n-recon of them are saved next to the model.

Writes examples/models/glyph-prior/eval/classifier.onnx (F32) and classifier.json (labels,
accuracies).

--arch v2 (ClassifierV2) is an attempt at reading width and family: the network also sees the
glyph cropped to its ink box and scaled to fill the image (aspect kept), and five ink-box numbers
(width, height, their ratio, ink share of image and box), so that size no longer hides width.
Trained with --split pair --recon-codebook --n-recon 6000 --optimizer adamw-warmup --steps 700
--threads 2 on a loaded machine (3 s/step) it did NOT beat v1 (see the model card); it is kept
for a longer run on a quiet machine.

  scripts/train/with-openblas.sh /usr/bin/python3 scripts/train/train_glyph_classifier.py
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import glyph_codebook
import glyphdata as gd
from checkpoint import log, write_json

HEADS = (("char", len(gd.CHARS)), ("weight", 3), ("slant", 2), ("family", 3), ("width", 2))
LABELS = {"char": list(gd.CHARS), "weight": list(gd.WEIGHTS), "slant": list(gd.SLANTS),
          "family": list(gd.FAMILIES), "width": list(gd.WIDTHS)}


def ink_box(x):
    """Ink bounding box of glyphs x [N,1,32,32] in [-1, 1] (ink: pixels darker than mid-grey), in
    grid_sample's normalised coordinates: centre (cx, cy) and half sizes (hw, hh), each [N]. A
    glyph without ink gets the whole image. Built from ONNX-exportable ops (no data-dependent
    shapes)."""
    n, _, h, w = x.shape
    mask = (x < 0).to(x.dtype)[:, 0]
    rows = mask.amax(2)  # [N,H]: row has ink
    cols = mask.amax(1)  # [N,W]
    ys = torch.arange(h, dtype=x.dtype)
    xs = torch.arange(w, dtype=x.dtype)
    empty = (rows.amax(1) == 0).to(x.dtype)
    y0 = (ys[None] * rows + (h - 1) * (1 - rows)).amin(1)
    y1 = (ys[None] * rows).amax(1)
    x0 = (xs[None] * cols + (w - 1) * (1 - cols)).amin(1)
    x1 = (xs[None] * cols).amax(1)
    y0, x0 = y0 * (1 - empty), x0 * (1 - empty)
    y1, x1 = y1 * (1 - empty) + (h - 1) * empty, x1 * (1 - empty) + (w - 1) * empty
    # Pixel i covers [i, i+1) -> normalised (2i + 1) / size - 1 at its centre (align_corners=False).
    cx = (x0 + x1 + 1) / w - 1
    cy = (y0 + y1 + 1) / h - 1
    hw = (x1 - x0 + 1) / w
    hh = (y1 - y0 + 1) / h
    return cx, cy, hw, hh


def normalise(x, box, margin=1.1):
    """The glyph cropped to its ink box and scaled so that its longer side fills the image, the
    aspect ratio kept (ink 1, paper 0): every size of a glyph looks the same, so the width of a
    condensed face and the stroke of a light or bold one become comparable across sizes."""
    cx, cy, hw, hh = box
    s = torch.maximum(hw, hh) * margin
    # affine_grid by hand (it does not export to ONNX): output pixel centre u -> s * u + centre.
    n, _, h, w = x.shape
    u = (2 * torch.arange(w, dtype=x.dtype) + 1) / w - 1
    v = (2 * torch.arange(h, dtype=x.dtype) + 1) / h - 1
    gx = (s[:, None, None] * u[None, None, :] + cx[:, None, None]).expand(n, h, w)
    gy = (s[:, None, None] * v[None, :, None] + cy[:, None, None]).expand(n, h, w)
    grid = torch.stack([gx, gy], 3)
    ink = (1 - x) * 0.5
    return F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


N_GEOM = 5


class ClassifierV2(nn.Module):
    """Two views of the glyph, as it is and normalised to its ink box (normalise), through a
    small CNN, plus five geometry numbers (ink box width and height, their ratio, ink share of
    the image and of the box) into the hidden layer."""

    def __init__(self, hidden=160, ch=(16, 32, 48)):
        super().__init__()
        self.c1 = nn.Conv2d(2, ch[0], 3, padding=1)
        self.c2 = nn.Conv2d(ch[0], ch[1], 3, padding=1)
        self.c3 = nn.Conv2d(ch[1], ch[2], 3, padding=1)
        self.fc = nn.Linear(ch[2] * 4 * 4 + N_GEOM, hidden)
        self.heads = nn.ModuleList([nn.Linear(hidden, n) for _, n in HEADS])

    def forward(self, x):
        box = ink_box(x)
        _, _, hw, hh = box
        z = normalise(x, box)
        ink = ((1 - x) * 0.5).mean((1, 2, 3))
        geom = torch.stack([hw, hh, hw / (hw + hh), ink, ink / (hw * hh)], 1)
        x = torch.cat([x, z * 2 - 1], 1)
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        h = F.relu(self.fc(torch.cat([x.flatten(1), geom], 1)))
        return tuple(head(h) for head in self.heads)


class Classifier(nn.Module):
    """The committed instrument (--arch v1): one view of the glyph through a small CNN."""

    def __init__(self, hidden=128):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 48, 3, padding=1)
        self.fc = nn.Linear(48 * 4 * 4, hidden)
        self.heads = nn.ModuleList([nn.Linear(hidden, n) for _, n in HEADS])

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        h = F.relu(self.fc(x.flatten(1)))
        return tuple(head(h) for head in self.heads)


ARCHS = {"v1": Classifier, "v2": ClassifierV2}


def labels_of(data, idx):
    attrs = [gd.face_attributes(f) for f in data["faces"]]
    fi = data["face"][idx]
    out = {"char": torch.from_numpy(data["char"][idx].astype(np.int64))}
    for key, names in (("weight", gd.WEIGHTS), ("slant", gd.SLANTS), ("family", gd.FAMILIES), ("width", gd.WIDTHS)):
        out[key] = torch.tensor([names.index(attrs[f][key]) for f in fi], dtype=torch.long)
    return out


@torch.no_grad()
def accuracy(model, x, labels):
    model.eval()
    preds = [[] for _ in HEADS]
    for i in range(0, len(x), 1024):
        for k, o in enumerate(model(x[i : i + 1024])):
            preds[k].append(o.argmax(1))
    model.train()
    return {name: (torch.cat(preds[k]) == labels[name]).float().mean().item() for k, (name, _) in enumerate(HEADS)}


def load(path, arch="v1"):
    """The classifier from classifier.pt (PyTorch state) next to the ONNX file."""
    model = ARCHS[arch]()
    model.load_state_dict(torch.load(path))
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(gd.PRIOR_DIR, "eval"))
    ap.add_argument("--work", default=gd.WORK)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--n-recon", type=int, default=2400, help="training renders also used as VAE reconstructions")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--arch", default="v1", choices=sorted(ARCHS), help="v1: one view (the committed instrument); "
                    "v2: the glyph as it is and normalised to its ink box, plus ink-box geometry (ClassifierV2)")
    ap.add_argument("--split", default="random", choices=("random", "pair"), help="test set: a random tenth of the "
                    "renders (v1's; near-copies of test glyphs, shifted by 2 pixels, are trained on), or every render of "
                    "a tenth of the (face, character) pairs")
    ap.add_argument("--recon-codebook", action="store_true", help="decode half of the reconstructions through the "
                    "prior's codebook (WORK/codebook-512.pt) instead of the unquantised mean")
    ap.add_argument("--optimizer", default="adam", choices=("adam", "adamw-warmup"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    data = gd.labelled_dataset(args.work)
    real = gd.to_tensor(data["images"])[:, :1]
    n = len(real)
    g = torch.Generator().manual_seed(args.seed)
    if args.split == "random":
        perm = torch.randperm(n, generator=g).numpy()
        test, train = perm[: n // 10], perm[n // 10 :]
    else:
        # Every size and shift of a tenth of the (face, character) pairs, so that no test glyph
        # has a near-copy (the same glyph shifted by 2 pixels) in the training set.
        pair = data["face"].astype(np.int64) * len(gd.CHARS) + data["char"].astype(np.int64)
        pairs = np.unique(pair)
        test_pairs = pairs[torch.randperm(len(pairs), generator=g).numpy()[: len(pairs) // 10]]
        is_test = np.isin(pair, test_pairs)
        test = np.nonzero(is_test)[0][torch.randperm(int(is_test.sum()), generator=g).numpy()]
        train = np.nonzero(~is_test)[0][torch.randperm(int((~is_test).sum()), generator=g).numpy()]
    # VAE reconstructions of a subset (decoding is the slow part on a small CPU): decodes of the
    # unscaled encoder mean, or with --recon-codebook half of them of the mean quantised through
    # the prior's codebook (what generated glyphs are made of).
    rec_train, rec_test = train[: args.n_recon], test[: args.n_recon // 6]
    rec_path = os.path.join(args.work, "reconstructions-%s%s-%d.pt" % (args.split, "-codebook" if args.recon_codebook else "", args.n_recon))
    if os.path.exists(rec_path):
        rec = torch.load(rec_path)
    else:
        vae, _ = gd.load_vae()
        lat = torch.load(os.path.join(args.work, "latents.pt"))
        cb = torch.load(os.path.join(args.work, "codebook-512.pt")) if args.recon_codebook else None
        t0 = time.time()
        sel = lat[np.concatenate([rec_train, rec_test])]
        if args.recon_codebook:
            quant = torch.arange(len(sel)) % 2 == 1
            sel[quant] = glyph_codebook.quantise(sel[quant], cb)[0]
        rec = gd.decode(vae, sel)[:, :1].clamp(-1, 1)
        torch.save(rec, rec_path)
        log("decoded %d reconstructions in %.0fs" % (len(rec), time.time() - t0))
    rec_tr, rec_te = rec[: len(rec_train)], rec[len(rec_train) :]
    ltr, lte = labels_of(data, train), labels_of(data, test)
    lrt, lre = labels_of(data, rec_train), labels_of(data, rec_test)
    xtr = torch.cat([real[train], rec_tr])
    ytr = {k: torch.cat([ltr[k], lrt[k]]) for k in ltr}
    torch.manual_seed(args.seed)
    model = ARCHS[args.arch]()
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    nparams = sum(p.numel() for p in model.parameters())
    log("classifier: %d parameters; %d training images (renders + reconstructions), %d test renders" % (nparams, len(xtr), len(test)))
    t0 = time.time()
    warm = max(1, args.steps // 50) if args.optimizer == "adamw-warmup" else 1
    for step in range(args.steps):
        for grp in opt.param_groups:
            grp["lr"] = args.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        # Half of every batch renders, half reconstructions.
        h = args.batch // 2
        b = torch.cat([torch.randint(0, len(train), (h,), generator=g),
                       len(train) + torch.randint(0, len(rec_train), (args.batch - h,), generator=g)])
        outs = model(xtr[b])
        loss = sum(F.cross_entropy(o, ytr[name][b]) for o, (name, _) in zip(outs, HEADS))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            log("step %d/%d loss %.4f (%.0f s)" % (step + 1, args.steps, loss.item(), time.time() - t0))
    acc_real = accuracy(model, real[test], lte)
    acc_rec = accuracy(model, rec_te, lre)
    log("test renders: %s" % json.dumps(acc_real))
    log("their VAE reconstructions: %s" % json.dumps(acc_rec))
    model.eval()
    torch.save(model.state_dict(), os.path.join(args.work, "classifier.pt"))
    path = os.path.join(args.out, "classifier.onnx")
    torch.onnx.export(model, torch.ones(2, 1, 32, 32), path, input_names=["image"],
                      output_names=[name for name, _ in HEADS], opset_version=16 if args.arch == "v2" else 13,  # v2: GridSample
                      dynamic_axes={"image": {0: "n"}, **{name: {0: "n"} for name, _ in HEADS}})
    meta = {"input": "image: float32 [N,1,32,32] in [-1, 1], dark ink (-1) on white (1)",
            "outputs": {name: "logits [N,%d]" % k for name, k in HEADS}, "labels": LABELS,
            "parameters": nparams, "train_seconds": round(time.time() - t0), "steps": args.steps, "seed": args.seed,
            "test_renders": len(test), "test_reconstructions": len(rec_test), "train_reconstructions": len(rec_train), "accuracy_real_renders": acc_real, "accuracy_vae_reconstructions": acc_rec,
            "arch": args.arch, "split": args.split, "recon_codebook": args.recon_codebook, "optimizer": args.optimizer,
            "data": "renders of all 21 faces (held-out face of the prior included) and VAE reconstructions of some; test set: --split"}
    write_json(os.path.join(args.out, "classifier.json"), meta)
    log("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
