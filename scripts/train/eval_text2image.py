"""Evaluate the text-to-image glyph prior (examples/models/glyph-prior) with the glyph classifier.

Sets (each --n captions, drawn with a fixed seed from the real glyphs' (character, face) pairs):

  ceiling    the classifier on VAE reconstructions (decode of the unscaled encoder mean) of real
             renders of the training faces, and of the held-out face; also on the reconstructions
             through the codebook (each latent vector replaced by its nearest code): what a
             perfect prior could reach;
  full       fully specified captions on training faces: "the <kind> X, <every true style word>";
  held_out   the same on the held-out face DejaVuSerifCondensed-BoldItalic
             ("..., bold italic serif condensed" in a random order), which the prior never saw;
  partial    training faces, a random subset of the true style words in random order (as in
             training, the empty subset included);
  null       the null caption (all pad): character and attributes scored against random targets,
             so they should sit near chance.

Scores: character accuracy (classifier's top-1 equals the requested character) and, for each
attribute requested in the caption, its accuracy: weight (bold, light), slant (italic), family
(serif, sans, mono), width (condensed); attributes that were not requested are not scored.

Instruments: every --classifier (CNN, train_glyph_classifier.py) reads character and attributes
from the image alone; --attributes (glyph_attributes.py, default eval/attributes.npz) reads the
attributes GIVEN the requested character (which face of that character the image resembles) and
gets its own table, whose character column is the first classifier's. In the ceiling rows it
leaves each glyph's own (character, face, size) out of its references (its leave-size-out test).

Sampling in PyTorch (default): prior + codebook + VAE decoder, seeded: logits restricted to the
code ids, classifier-free guidance l_u + s (l_c - l_u) with the null caption, --temperature,
--top-k. With --modelrt BIN it instead runs `BIN text2image --model DIR --prompt TEXT --n 1
--seed S --guidance G --out PREFIX --json` per caption and classifies the PNG files it writes.

  scripts/train/with-openblas.sh /usr/bin/python3 scripts/train/eval_text2image.py --guidance 1,2,3
"""

import argparse
import json
import os
import random
import subprocess
import tempfile
import time

import numpy as np
import onnx
from onnx import numpy_helper
import torch
from PIL import Image

import glyphdata as gd
import glyph_attributes
import glyph_codebook
import train_glyph_classifier as tgc
import train_glyph_prior as tgp
from checkpoint import log

ATTRS = (("weight", ("bold", "light")), ("slant", ("italic",)), ("family", ("serif", "sans", "mono")), ("width", ("condensed",)))


def load_classifier(path):
    """The classifier from its ONNX file (initializers carry the PyTorch parameter names)."""
    m = onnx.load(path)
    sd = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    v1 = "c1.weight" in sd and sd["c1.weight"].shape[1] == 1
    model = tgc.Classifier() if v1 else tgc.ClassifierV2()
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    if missing:
        raise SystemExit("%s: no initializers %s" % (path, missing))
    model.load_state_dict({k: sd[k] for k in want})
    model.eval()
    return model


@torch.no_grad()
def classify(clf, x):
    """x: [N,1,32,32] in [-1,1] -> dict head -> predicted index tensor."""
    outs = clf(x.clamp(-1, 1))
    return {name: o.argmax(1) for o, (name, _) in zip(outs, tgc.HEADS)}


def requested(styles):
    """Attribute -> requested value for the style words of a caption."""
    req = {}
    for key, words in ATTRS:
        for w in styles:
            if w in words:
                req[key] = w
    return req


def score(preds, targets):
    """targets: list of (char, {attr: value}); returns dict of accuracies and counts, per
    attribute and per requested value ("weight:bold")."""
    n = len(targets)
    ok = {"char": 0}
    cnt = {"char": n}
    for i, (ch, req) in enumerate(targets):
        ok["char"] += int(gd.CHARS[preds["char"][i]] == ch)
        for key, val in req.items():
            names = {"weight": gd.WEIGHTS, "slant": gd.SLANTS, "family": gd.FAMILIES, "width": gd.WIDTHS}[key]
            cnt[key] = cnt.get(key, 0) + 1
            ok[key] = ok.get(key, 0) + int(names[preds[key][i]] == val)
            # Per requested value too ("family:mono"): the recall of each value.
            cnt[key + ":" + val] = cnt.get(key + ":" + val, 0) + 1
            ok[key + ":" + val] = ok.get(key + ":" + val, 0) + int(names[preds[key][i]] == val)
    return {k: {"acc": ok[k] / cnt[k], "n": cnt[k]} for k in cnt}


def make_set(kind, data, held, n, rng):
    """List of (caption or None, char, requested attrs) for a set."""
    faces = data["faces"]
    face_ids = data["face"]
    if kind == "held_out":
        pool = np.nonzero(face_ids == held)[0]
    else:
        pool = np.nonzero(face_ids != held)[0]
    picks = rng.sample(list(pool), n)
    out = []
    for i in picks:
        ch = gd.CHARS[data["char"][i]]
        attrs = gd.face_attributes(faces[face_ids[i]])
        words = gd.face_style_words(attrs)
        kinds = gd.valid_kinds(ch)
        if kind == "null":
            req = {k: attrs[k] for k, vals in ATTRS if attrs[k] in vals}
            out.append((None, ch, req, int(i)))
            continue
        if kind == "partial":
            styles = rng.sample(words, rng.randint(0, len(words)))
        else:
            styles = rng.sample(words, len(words))
        # The most specific kind (capital/lowercase/greek letter, digit; else "letter"/"character").
        k = next((x for x in ("capital letter", "lowercase letter", "greek letter", "digit") if x in kinds), kinds[0])
        if kind == "partial":
            k = rng.choice(kinds)
        out.append((gd.canonical(k, ch, styles), ch, requested(styles), int(i)))
    return out


@torch.no_grad()
def sample_torch(prior, lay, enc, cb, vae, captions, guidance, seed, temperature, top_k, style_guidance=None):
    gen = torch.Generator().manual_seed(seed)
    imgs = []
    for s in range(0, len(captions), 128):
        part = captions[s : s + 128]
        ids = torch.tensor([lay.caption_ids(enc, c) for c in part], dtype=torch.long)
        base = None
        if style_guidance is not None:
            base = torch.tensor([lay.caption_ids(enc, without_styles(c)) for c in part], dtype=torch.long)
        codes = tgp.sample_codes(prior, lay, ids, guidance, gen, temperature, top_k, base, style_guidance)
        imgs.append(decode_codes(vae, cb, codes, lay))
    return torch.cat(imgs)


def without_styles(caption):
    """The caption without its style words ("the letter a, bold serif" -> "the letter a"); None
    (the null caption) stays None."""
    if caption is None or ", " not in caption:
        return caption
    head, tail = caption.rsplit(", ", 1)
    return head if all(w in gd.STYLE_WORDS for w in tail.split()) else caption


def decode_codes(vae, cb, codes, lay):
    b = len(codes)
    _, h, w = lay.latent_shape
    lat = cb[codes].reshape(b, h, w, cb.shape[1]).permute(0, 3, 1, 2)
    return vae.decode(lat)[:, :1].clamp(-1, 1)


def sample_modelrt(binary, model_dir, captions, guidance, seed):
    imgs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, cap in enumerate(captions):
            if cap is None:
                raise SystemExit("--modelrt: the null caption cannot be typed as a prompt; run without the null set (--sets)")
            cmd = [binary, "text2image", "--model", model_dir, "--prompt", cap, "--n", "1", "--seed", str(seed + i),
                   "--guidance", str(guidance), "--out", os.path.join(tmp, "img%05d" % i), "--json"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit("%s failed (%d): %s" % (" ".join(cmd), res.returncode, res.stderr.strip()))
            path = json.loads(res.stdout)["images"][0]
            a = np.asarray(Image.open(path).convert("L").resize((32, 32)), dtype=np.float32) / 127.5 - 1.0
            imgs.append(torch.from_numpy(a)[None, None])
    return torch.cat(imgs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=gd.PRIOR_DIR)
    ap.add_argument("--classifier", default=os.path.join(gd.PRIOR_DIR, "eval", "classifier.onnx"),
                    help="comma-separated classifier ONNX files: the same samples are scored by each, one table per file")
    ap.add_argument("--attributes", default=os.path.join(gd.PRIOR_DIR, "eval", "attributes.npz"),
                    help="glyph_attributes.py's instrument: scores the attributes given the requested character (its "
                    "own table, character column from the first --classifier); empty to skip")
    ap.add_argument("--guidance", default="2", help="comma-separated CFG scales to evaluate")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--style-guidance", type=float, default=None,
                    help="split the guidance: --guidance weighs the character, this the style words (default: one scale)")
    ap.add_argument("--n", type=int, default=512, help="captions per set")
    ap.add_argument("--sets", default="full,held_out,partial,null")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modelrt", default="", help="modelrt binary: sample with `modelrt text2image` instead of PyTorch")
    ap.add_argument("--json-out", default="", help="also write the results here")
    ap.add_argument("--grid", default="", help="write a PNG of the first 16 samples of every set and scale")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = gd.labelled_dataset()
    held = data["faces"].index(gd.HELD_OUT)
    prior, lay, enc, cb, t2i = tgp.load_prior(args.model)
    vae, _ = gd.load_vae(os.path.normpath(os.path.join(args.model, t2i["vae"])))
    clfs = [(p, load_classifier(p)) for p in args.classifier.split(",")]
    inst = glyph_attributes.Instrument.load(args.attributes) if args.attributes else None
    if inst is not None and inst.faces != list(data["faces"]):
        raise SystemExit("%s: faces %s differ from the renders' %s" % (args.attributes, inst.faces, data["faces"]))

    sizes = glyph_attributes.size_ids(data)

    def score_all(store, key, imgs, targets, renders=None):
        """Score imgs with every classifier, and with the attribute instrument (conditioned on
        the target characters, character column from the first classifier). renders: indices
        of the renders imgs are made from (ceiling rows): the instrument then leaves each one's
        own (character, face, size) out of its references, as in glyph_attributes.py's test."""
        first = None
        for p, clf in clfs:
            preds = classify(clf, imgs)
            first = first or preds
            store[p][key] = score(preds, targets)
        if inst is not None:
            chars = np.array([gd.CHARS.index(t[0]) for t in targets])
            if renders is None:
                preds = dict(inst.predict(glyph_attributes.features(imgs), chars))
            else:
                preds = dict(inst.predict(glyph_attributes.features(imgs), chars, data["face"][renders].astype(np.int64),
                                          sizes[renders], "size"))
            preds["char"] = first["char"]
            store[args.attributes][key] = score(preds, targets)
        return store[args.attributes if inst is not None else clfs[0][0]][key]
    results = {"config": {k: getattr(args, k) for k in ("guidance", "temperature", "top_k", "style_guidance", "n", "seed", "modelrt", "classifier", "attributes")},
               "sets": {p: {} for p in [c for c, _ in clfs] + ([args.attributes] if inst is not None else [])}}
    rng = random.Random(args.seed)
    sets = {name: make_set(name, data, held, args.n, random.Random(args.seed * 31 + i))
            for i, name in enumerate(("full", "held_out", "partial", "null"))}

    # Ceiling: VAE reconstructions (and through the codebook) of the real renders of the sets.
    for name, src in (("ceiling_train", "full"), ("ceiling_held_out", "held_out")):
        ix = np.array([s[3] for s in sets[src]])
        targets = [(s[1], requested(gd.face_style_words(gd.face_attributes(data["faces"][data["face"][s[3]]])))) for s in sets[src]]
        with torch.no_grad():
            lat = gd.encode_means(vae, data["images"][ix])
            rec = gd.decode(vae, lat)[:, :1]
            q, _ = glyph_codebook.quantise(lat, cb)
            recq = gd.decode(vae, q)[:, :1]
        real = gd.to_tensor(data["images"][ix])[:, :1]
        score_all(results["sets"], name + "_real", real, targets, ix)
        score_all(results["sets"], name, rec, targets, ix)
        score_all(results["sets"], name + "_codebook", recq, targets, ix)
    grid_rows = []
    for g in [float(x) for x in args.guidance.split(",")]:
        for name in args.sets.split(","):
            items = sets[name]
            caps = [s[0] for s in items]
            t0 = time.time()
            if args.modelrt:
                imgs = sample_modelrt(args.modelrt, args.model, caps, g, args.seed)
            else:
                imgs = sample_torch(prior, lay, enc, cb, vae, caps, g, args.seed, args.temperature, args.top_k, args.style_guidance)
            if name == "null":
                # Targets of the null set: random characters and faces, so the scores measure chance.
                perm = rng.sample(range(len(items)), len(items))
                targets = [(items[j][1], items[j][2]) for j in perm]
            else:
                targets = [(s[1], s[2]) for s in items]
            sc = score_all(results["sets"], "%s@%g" % (name, g), imgs, targets)
            grid_rows.append(((imgs[:16, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy())
            log("guidance %g %-9s %s (%.0fs)" % (g, name, "  ".join("%s %.3f" % (k, v["acc"]) for k, v in sc.items()), time.time() - t0))
    for p in results["sets"]:
        print_table(p, results["sets"][p])
    if args.json_out:
        # Paths inside the repository relative to it, so the file can be committed.
        def rel(path):
            return os.path.relpath(path, gd.REPO) if path and os.path.abspath(path).startswith(gd.REPO + os.sep) else path
        results["config"]["classifier"] = ",".join(rel(c) for c in args.classifier.split(","))
        results["config"]["attributes"] = rel(args.attributes)
        results["sets"] = {rel(k): v for k, v in results["sets"].items()}
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    if args.grid:
        from train_vae_glyphs import grid
        rows = [np.repeat(r[..., None], 3, -1) for r in grid_rows]
        grid(rows).save(args.grid, optimize=True)
        log("wrote %s (rows: %s)" % (args.grid, ", ".join("%s@%s" % (n, g) for g in args.guidance.split(",") for n in args.sets.split(","))))


def print_table(path, sets):
    ct = sets["ceiling_train"]["char"]["acc"]
    ch = sets["ceiling_held_out"]["char"]["acc"]
    print("\nclassifier %s\n\n| set | char | char / ceiling | weight | slant | family | width |" % path)
    print("|---|---|---|---|---|---|---|")
    for name, sc in sets.items():
        ceil = ch if "held_out" in name else ct
        cells = ["%.3f" % sc["char"]["acc"], "%.2f" % (sc["char"]["acc"] / ceil) if ceil else "–"]
        for key, _ in ATTRS:
            cells.append("%.3f (%d)" % (sc[key]["acc"], sc[key]["n"]) if key in sc else "–")
        print("| %s | %s |" % (name, " | ".join(cells)))


if __name__ == "__main__":
    main()
