"""A small glyph classifier, the measuring instrument of eval_text2image.py.

It reads a 32x32 grayscale glyph ([N,1,32,32], [-1, 1], dark ink on white, as the VAE's output
channel 0) and returns logits for five heads: char (the 131 characters of
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

import glyphdata as gd
from checkpoint import log

HEADS = (("char", len(gd.CHARS)), ("weight", 3), ("slant", 2), ("family", 3), ("width", 2))
LABELS = {"char": list(gd.CHARS), "weight": list(gd.WEIGHTS), "slant": list(gd.SLANTS),
          "family": list(gd.FAMILIES), "width": list(gd.WIDTHS)}


class Classifier(nn.Module):
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


def load(path):
    """The classifier from classifier.pt (PyTorch state) next to the ONNX file."""
    model = Classifier()
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    data = gd.labelled_dataset(args.work)
    real = gd.to_tensor(data["images"])[:, :1]
    n = len(real)
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(n, generator=g).numpy()
    test, train = perm[: n // 10], perm[n // 10 :]
    # VAE reconstructions of a subset (decoding is the slow part on a small CPU).
    rec_train, rec_test = train[: args.n_recon], test[: args.n_recon // 6]
    rec_path = os.path.join(args.work, "reconstructions-%d.pt" % args.n_recon)
    if os.path.exists(rec_path):
        rec = torch.load(rec_path)
    else:
        vae, _ = gd.load_vae()
        lat = torch.load(os.path.join(args.work, "latents.pt"))
        t0 = time.time()
        rec = gd.decode(vae, lat[np.concatenate([rec_train, rec_test])])[:, :1].clamp(-1, 1)
        torch.save(rec, rec_path)
        log("decoded %d reconstructions in %.0fs" % (len(rec), time.time() - t0))
    rec_tr, rec_te = rec[: len(rec_train)], rec[len(rec_train) :]
    ltr, lte = labels_of(data, train), labels_of(data, test)
    lrt, lre = labels_of(data, rec_train), labels_of(data, rec_test)
    xtr = torch.cat([real[train], rec_tr])
    ytr = {k: torch.cat([ltr[k], lrt[k]]) for k in ltr}
    torch.manual_seed(args.seed)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    nparams = sum(p.numel() for p in model.parameters())
    log("classifier: %d parameters; %d training images (renders + reconstructions), %d test renders" % (nparams, len(xtr), len(test)))
    t0 = time.time()
    for step in range(args.steps):
        for grp in opt.param_groups:
            grp["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * step / args.steps))
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
    torch.onnx.export(model, torch.zeros(1, 1, 32, 32), path, input_names=["image"],
                      output_names=[name for name, _ in HEADS], opset_version=13,
                      dynamic_axes={"image": {0: "n"}, **{name: {0: "n"} for name, _ in HEADS}})
    meta = {"input": "image: float32 [N,1,32,32] in [-1, 1], dark ink (-1) on white (1)",
            "outputs": {name: "logits [N,%d]" % k for name, k in HEADS}, "labels": LABELS,
            "parameters": nparams, "train_seconds": round(time.time() - t0), "steps": args.steps, "seed": args.seed,
            "test_renders": len(test), "test_reconstructions": len(rec_test), "train_reconstructions": len(rec_train), "accuracy_real_renders": acc_real, "accuracy_vae_reconstructions": acc_rec,
            "data": "renders of all 21 faces (held-out face of the prior included) and their VAE reconstructions; 10% of renders held out as the test set"}
    with open(os.path.join(args.out, "classifier.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")
    log("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
