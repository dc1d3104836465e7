"""How much does the glyph prior's likelihood of a real glyph depend on each style word?

For real glyphs (training faces and the held-out face) and their true codes (nearest codebook
vector of each unscaled encoder mean), the code cross-entropy (nats per code) under the full
caption ("the capital letter Q, bold italic serif condensed") is compared with the same caption
with one attribute made false: weight (bold <-> light, regular gets bold or light), slant
(italic dropped; upright gets italic), family (each other family), width (condensed dropped;
normal gets condensed). A prior that uses a word pays for the false one; one that ignores it
pays nothing. Also: the caption without style words, and the null caption. No sampling, no
classifier: a check of the prior itself, next to eval_text2image.py.

  scripts/train/with-openblas.sh /usr/bin/python3 scripts/train/prior_caption_sensitivity.py --n 512
"""

import argparse
import json

import numpy as np
import torch

import glyph_codebook
import glyphdata as gd
import train_glyph_prior as tgp
from checkpoint import log


def false_variants(attrs):
    """attr -> list of style-word lists in which that attribute is false (others true)."""
    words = gd.face_style_words(attrs)
    out = {}
    w = attrs["weight"]
    out["weight"] = [[x for x in words if x != w] + ([v] if v != "regular" else []) for v in gd.WEIGHTS if v != w]
    out["slant"] = [[x for x in words if x != "italic"]] if attrs["slant"] == "italic" else [words + ["italic"]]
    out["family"] = [[v if x == attrs["family"] else x for x in words] for v in gd.FAMILIES if v != attrs["family"]]
    out["width"] = [[x for x in words if x != "condensed"]] if attrs["width"] == "condensed" else [words + ["condensed"]]
    return out


@torch.no_grad()
def losses(prior, lay, enc, ch_list, styles_list, codes):
    """Per-glyph mean code cross-entropy [N] for captions (character, style words) or None."""
    caps = [lay.caption_ids(enc, None if st is None else gd.canonical(gd.valid_kinds(c)[0], c, st)) for c, st in zip(ch_list, styles_list)]
    ce = tgp.code_loss(prior, lay, torch.tensor(caps, dtype=torch.long), codes, "none")
    return ce.reshape(len(codes), lay.N).mean(1).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=gd.PRIOR_DIR)
    ap.add_argument("--n", type=int, default=512, help="glyphs per set")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = gd.labelled_dataset()
    faces = data["faces"]
    held = faces.index(gd.HELD_OUT)
    prior, lay, enc, cb, _ = tgp.load_prior(args.model)
    vae, _ = gd.load_vae()
    rng = np.random.default_rng(args.seed)
    results = {}
    for name, pool in (("training faces", np.nonzero(data["face"] != held)[0]), ("held-out face", np.nonzero(data["face"] == held)[0])):
        ix = rng.choice(pool, min(args.n, len(pool)), replace=False)
        _, codes = glyph_codebook.quantise(gd.encode_means(vae, data["images"][ix]), cb.float())
        chars = [gd.CHARS[data["char"][i]] for i in ix]
        attrs = [gd.face_attributes(faces[data["face"][i]]) for i in ix]
        full = losses(prior, lay, enc, chars, [gd.face_style_words(a) for a in attrs], codes)
        row = {"full": float(full.mean()),
               "no style words": float((losses(prior, lay, enc, chars, [[] for _ in ix], codes) - full).mean()),
               "null caption": float((losses(prior, lay, enc, chars, [None] * len(ix), codes) - full).mean())}
        for key in ("weight", "slant", "family", "width"):
            var = [false_variants(a)[key] for a in attrs]
            n_var = max(len(v) for v in var)
            tot = np.zeros(len(ix))
            cnt = np.zeros(len(ix))
            for j in range(n_var):
                sel = [k for k, v in enumerate(var) if j < len(v)]
                lo = losses(prior, lay, enc, [chars[k] for k in sel], [var[k][j] for k in sel], codes[sel])
                tot[sel] += lo - full[sel]
                cnt[sel] += 1
            d = tot / cnt
            row["false " + key] = float(d.mean())
            # Split by the true value: e.g. how much a false "condensed" costs a normal glyph and vice versa.
            true_vals = np.array([a[key] for a in attrs])
            row["false %s by true value" % key] = {t: round(float(d[true_vals == t].mean()), 4) for t in sorted(set(true_vals))}
        results[name] = row
        log("%s (%d glyphs): %s" % (name, len(ix), json.dumps(row)))
    print("\n| glyphs | full caption (nats/code) | no style words | null caption | false weight | false slant | false family | false width |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print("| %s | %.3f | +%.3f | +%.3f | %s |" % (name, r["full"], r["no style words"], r["null caption"],
                                                    " | ".join("%+.3f" % r["false " + k] for k in ("weight", "slant", "family", "width"))))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
