"""Attribute instrument v3 for eval_text2image.py: measured ink features compared with the same
character's reference glyphs in every face.

The CNN classifier (train_glyph_classifier.py) reads characters, weight and slant, but it cannot
see width or mono: condensed DejaVu is ~10% narrower, about one pixel at these sizes, and a
condensed glyph at one size looks like a normal one at the next size down. This instrument does
not guess the character: at evaluation the requested character is known from the caption, so it
answers "which face of THIS character does the image look like?" -- a per-character conditional
test, legitimate because only the attributes are scored with it.

Features (features(): 13 size-invariant numbers measured on the ink p = (0.8 - x) / 1.6 clipped
to [0, 1] of a [-1, 1] glyph, so that the faint grey halo of a VAE decode counts as paper): the
ink's width/height as log ratios three ways (sub-pixel edges where the column / row maximum of p
crosses 0.5; 2%..98% ink-mass quantiles; the hard ink box), the second moments (log sigma_x /
sigma_y, with and without the shear), the shear sigma_xy / sigma_yy (slant), ink mass and mean
stroke thickness relative to the height, mean horizontal and vertical run lengths relative to
the height (stem and bar thickness), ink density of the box, and the width of the top and bottom
eighth of the ink relative to the whole (serifs widen feet and tops). A coarse box-normalised
ink grid (6 x 6) was tried as extra features and lowered every attribute on the renders
(per-face means of 36 more numbers are too noisy), so it is not used.

Model (fit(), Instrument): references are the VAE reconstructions (decode of the unscaled encoder
mean) of every render at shift 0 -- each character in each face at each of the 4 sizes, 11,082
images -- because the prior's samples are decodes and a decode shifts every feature (strokes
thicker, thin glyphs smeared). Per (character, face, size) the mean feature vector is kept
(float16), and a pooled within-(character, face) covariance, shrunk halfway (--shrink 0.5)
towards its diagonal. An image requested as character c gets a Gaussian log-likelihood under
each face's mean for c (its sizes pooled); the posterior over faces (uniform over the faces that
have c) is summed per attribute value, and each attribute is read as the value with the largest
posterior mass. --refs calibrated-renders instead maps every render's features into the decode
domain by a per-feature linear fit on 2,000 render/reconstruction pairs (calibrate()) -- cheaper
to build, weaker (width 0.76 against 0.82 on the reconstruction test set).

Fitted ONLY on renders and VAE reconstructions (never on prior samples). Tests (main(), written
to attributes.json): "leave-size-out" -- an image of size s is scored against references without
its own (character, face, size), so neither it nor a shifted twin sits in its own face's mean
(generated glyphs are new images of known (character, face) pairs; eval_text2image.py's ceiling
rows score the same way); and "pair-out" -- the whole (character, face) pair is removed, so its
own face is no candidate at all (pessimistic: every attribute must then come from a sibling
face, and the nearest sibling of a condensed face is usually its normal-width twin, so width
and family fall below chance; reported, not a ceiling). Test images: the reconstructions of
2,000 random renders (all shifts), also through the prior's codebook, and every render against
references built from the renders. --shrink was picked among 0.1, 0.3 and 0.6 on the
reconstruction test set (width 0.80, 0.81, 0.82; the rest within a point).

  scripts/train/with-openblas.sh /usr/bin/python3 scripts/train/glyph_attributes.py
"""

import argparse
import os
import time

import numpy as np
import torch

import glyphdata as gd
from checkpoint import log, write_json

ATTR_NAMES = {"weight": gd.WEIGHTS, "slant": gd.SLANTS, "family": gd.FAMILIES, "width": gd.WIDTHS}


def _quantile_pos(mass, q):
    """Sub-pixel position (pixel units, pixel i covers [i, i+1)) where the cumulative mass of the
    profile mass [N,L] reaches q of the total."""
    c = np.cumsum(mass, 1)
    tot = c[:, -1:] + 1e-9
    c = c / tot
    i = (c < q).sum(1)  # first index where cdf >= q
    i = np.minimum(i, mass.shape[1] - 1)
    prev = np.where(i > 0, np.take_along_axis(c, np.maximum(i - 1, 0)[:, None], 1)[:, 0], 0.0)
    cur = np.take_along_axis(c, i[:, None], 1)[:, 0]
    frac = (q - prev) / np.maximum(cur - prev, 1e-9)
    return i + np.clip(frac, 0, 1)


def _runs(mask, axis):
    """Mean length of runs of ink along axis of binary masks [N,H,W]."""
    m = mask if axis == 1 else mask.transpose(0, 2, 1)  # runs along W (horizontal)
    m = m.astype(np.int8)
    starts = (np.diff(np.concatenate([np.zeros(m.shape[:2] + (1,), np.int8), m], 2), axis=2) == 1).sum((1, 2))
    return m.sum((1, 2)) / np.maximum(starts, 1)


FEATURES = ["log_edge_ratio", "log_ext_ratio", "log_box_ratio", "log_sigma_ratio", "log_sigma_ratio_deskewed", "shear",
            "mass_per_h2", "thickness_per_h", "hrun_per_h", "vrun_per_h", "box_density", "top_width", "bottom_width"]


INK_PAPER, INK_FULL = 0.8, -0.8  # pixel values (in [-1, 1]) counted as no ink and as full ink


def _edges(prof, level=0.5):
    """Sub-pixel first and last crossing of level by profiles prof [N,L] (values in [0, 1]), as
    positions in pixels (pixel i covers [i, i+1)); (0, L) for a profile that never reaches it."""
    n, L = prof.shape
    above = prof >= level
    has = above.any(1)
    i0 = np.where(has, above.argmax(1), 0)
    i1 = np.where(has, L - 1 - above[:, ::-1].argmax(1), L - 1)
    r = np.arange(n)
    # Linear interpolation with the neighbour outside the crossing.
    p0 = np.where(i0 > 0, prof[r, np.maximum(i0 - 1, 0)], 0.0)
    p1 = np.where(i1 < L - 1, prof[r, np.minimum(i1 + 1, L - 1)], 0.0)
    x0 = i0 + 0.5 - np.clip((prof[r, i0] - level) / np.maximum(prof[r, i0] - p0, 1e-6), 0, 1)
    x1 = i1 + 0.5 + np.clip((prof[r, i1] - level) / np.maximum(prof[r, i1] - p1, 1e-6), 0, 1)
    return np.where(has, x0, 0.0), np.where(has, x1, float(L))


def features(x, paper=INK_PAPER, full=INK_FULL):
    """x: [N,1,32,32] (torch or numpy) in [-1, 1], dark ink on white -> float64 [N, len(FEATURES)]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().numpy()
    x = np.asarray(x, np.float64)[:, 0]
    n, h, w = x.shape
    p = np.clip((paper - x) / (paper - full), 0, 1)
    mass = p.sum((1, 2)) + 1e-6
    colm, rowm = p.sum(1), p.sum(2)
    x0, x1 = _quantile_pos(colm, 0.02), _quantile_pos(colm, 0.98)
    y0, y1 = _quantile_pos(rowm, 0.02), _quantile_pos(rowm, 0.98)
    ew, eh = np.maximum(x1 - x0, 0.5), np.maximum(y1 - y0, 0.5)
    mask = p > 0.5
    rows, cols = mask.any(2), mask.any(1)
    ar = np.arange(32)
    bh = np.where(rows.any(1), (ar * rows).max(1) - np.where(rows, ar, 99).min(1) + 1, 1)
    bw = np.where(cols.any(1), (ar * cols).max(1) - np.where(cols, ar, 99).min(1) + 1, 1)
    xs, ys = ar[None, None, :] + 0.5, ar[None, :, None] + 0.5
    mx = (p * xs).sum((1, 2)) / mass
    my = (p * ys).sum((1, 2)) / mass
    dx, dy = xs - mx[:, None, None], ys - my[:, None, None]
    sxx = (p * dx * dx).sum((1, 2)) / mass + 1e-3
    syy = (p * dy * dy).sum((1, 2)) / mass + 1e-3
    sxy = (p * dx * dy).sum((1, 2)) / mass
    shear = sxy / syy
    sxx_d = np.maximum(sxx - sxy * sxy / syy, 1e-3)
    gx = np.abs(np.diff(p, axis=2)).sum((1, 2))
    gy = np.abs(np.diff(p, axis=1)).sum((1, 2))
    thick = 2 * mass / (gx + gy + 1e-6)
    hrun, vrun = _runs(mask, 1), _runs(mask, 2)
    # Width of the ink in the top and bottom 12% of the extent, relative to the whole width.
    yb = ys[:, :, 0]
    top = (yb >= y0[:, None]) & (yb < (y0 + 0.12 * eh)[:, None])
    bot = (yb <= y1[:, None]) & (yb > (y1 - 0.12 * eh)[:, None])

    def band_width(band):
        prof = (p * band[:, :, None]).sum(1)
        return (_quantile_pos(prof + 1e-9, 0.95) - _quantile_pos(prof + 1e-9, 0.05)) / ew

    ex0, ex1 = _edges(p.max(1))
    ey0, ey1 = _edges(p.max(2))
    edge_ratio = np.log(np.maximum(ex1 - ex0, 0.5) / np.maximum(ey1 - ey0, 0.5))
    f = np.stack([edge_ratio, np.log(ew / eh), np.log(bw / bh), 0.5 * np.log(sxx / syy), 0.5 * np.log(sxx_d / syy), shear,
                  mass / (eh * eh), thick / eh, hrun / eh, vrun / eh, mass / (ew * eh), band_width(top), band_width(bot)], 1)
    return f


class Instrument:
    """Per-(character, face, size) feature means and counts and a pooled covariance (see the
    module doc). The references of (character, face) are its sizes' means weighted by count."""

    def __init__(self, size_means, size_counts, cov, faces, temp=1.0):
        self.size_means = np.asarray(size_means, np.float64)  # [C, Fc, S, D]
        self.size_counts = np.asarray(size_counts, np.float64)  # [C, Fc, S]
        self.faces = list(faces)
        self.temp = temp
        self.cov = cov
        self.prec = np.linalg.inv(cov)
        attrs = [gd.face_attributes(f) for f in self.faces]
        self.face_attr = {k: np.array([names.index(a[k]) for a in attrs]) for k, names in ATTR_NAMES.items()}

    def predict(self, feats, chars, faces=None, sizes=None, mode="none"):
        """dict attr -> predicted value index [N] and 'face' -> most likely face, for images
        feats [N, D] requested as characters chars [N]. mode 'size' leaves each image's own
        (character, face, size) out of the references (faces, sizes: the image's true ones),
        'pair' its whole (character, face) pair; 'none' uses every reference."""
        out = {k: np.zeros(len(feats), np.int64) for k in list(ATTR_NAMES) + ["face"]}
        for s0 in range(0, len(feats), 2048):
            sl = slice(s0, s0 + 2048)
            ch = chars[sl]
            r = np.arange(len(ch))
            w = self.size_counts[ch].copy()  # [n,Fc,S]
            if mode == "size":
                w[r, faces[sl], sizes[sl]] = 0
            elif mode == "pair":
                w[r, faces[sl]] = 0
            n_ = w.sum(2)
            means = (self.size_means[ch] * w[..., None]).sum(2) / np.maximum(n_, 1)[..., None]
            d = feats[sl][:, None, :] - means
            ll = -0.5 * np.einsum("nfd,de,nfe->nf", d, self.prec, d) / self.temp
            ll = np.where(n_ > 0, ll, -np.inf)
            ll = ll - ll.max(1, keepdims=True)
            post = np.exp(ll)
            post /= post.sum(1, keepdims=True)
            out["face"][sl] = post.argmax(1)
            for a, names in ATTR_NAMES.items():
                mass = np.stack([(post * (self.face_attr[a] == v)).sum(1) for v in range(len(names))], 1)
                out[a][sl] = mass.argmax(1)
        return out

    def save(self, path):
        np.savez_compressed(path, size_means=self.size_means.astype(np.float16), size_counts=self.size_counts.astype(np.uint8),
                            cov=self.cov, temp=np.array(self.temp), faces=np.array(self.faces), features=np.array(FEATURES))

    @classmethod
    def load(cls, path):
        z = np.load(path)
        if [str(f) for f in z["features"]] != FEATURES:
            raise SystemExit("%s: features %s, this script measures %s" % (path, list(z["features"]), FEATURES))
        return cls(z["size_means"], z["size_counts"], z["cov"], [str(f) for f in z["faces"]], float(z["temp"]))


def fit(feats, chars, faces, sizes, face_names, n_chars, n_sizes, shrink=0.1, extra_cov=None):
    """Instrument from reference features: per-(character, face, size) means (stored as float16,
    so the covariance is measured around the rounded means) and the pooled within-(character,
    face) covariance (+ extra_cov), shrunk towards its diagonal by shrink."""
    D, n_faces = feats.shape[1], len(face_names)
    key = (chars * n_faces + faces) * n_sizes + sizes
    sums = np.zeros((n_chars * n_faces * n_sizes, D))
    np.add.at(sums, key, feats)
    cnt = np.bincount(key, minlength=n_chars * n_faces * n_sizes).astype(np.float64)
    size_means = (sums / np.maximum(cnt, 1)[:, None]).astype(np.float16).astype(np.float64)
    size_means = size_means.reshape(n_chars, n_faces, n_sizes, D)
    cnt = cnt.reshape(n_chars, n_faces, n_sizes)
    pair_cnt = cnt.sum(2)
    pair_means = (size_means * cnt[..., None]).sum(2) / np.maximum(pair_cnt, 1)[..., None]
    resid = feats - pair_means[chars, faces]
    cov = resid.T @ resid / max(len(feats) - np.count_nonzero(pair_cnt), 1)
    if extra_cov is not None:
        cov = cov + extra_cov
    cov = (1 - shrink) * cov + shrink * np.diag(np.diag(cov)) + 1e-6 * np.eye(D)
    return Instrument(size_means, cnt, cov, face_names)


def size_ids(data):
    """Size index (0..3, train_vae_glyphs.SIZES order) of every render: renders come face by face,
    size by size, character by character."""
    f, c = data["face"].astype(np.int64), data["char"].astype(np.int64)
    s = np.zeros(len(f), np.int64)
    for i in range(1, len(f)):
        s[i] = 0 if f[i] != f[i - 1] else s[i - 1] + int(c[i] < c[i - 1])
    return s


def shift_ids(data):
    """Shift index (train_vae_glyphs.SHIFTS order) of every render: the shifts of one (face,
    size, character) are consecutive."""
    f, c = data["face"], data["char"]
    s = np.zeros(len(f), np.int64)
    for i in range(1, len(f)):
        if f[i] == f[i - 1] and c[i] == c[i - 1]:
            s[i] = s[i - 1] + 1
    return s


def report(preds, faces, face_attr):
    """Accuracy and recall per class of each attribute."""
    out = {}
    for a, names in ATTR_NAMES.items():
        truth = face_attr[a][faces]
        acc = float((preds[a] == truth).mean())
        rec = {names[v]: float((preds[a][truth == v] == v).mean()) for v in range(len(names)) if (truth == v).any()}
        out[a] = {"acc": round(acc, 4), "recall": {k: round(v, 4) for k, v in rec.items()}}
    out["face"] = {"acc": round(float((preds["face"] == faces).mean()), 4)}
    return out



def reconstructions(data, work, subset, codebook=None):
    """VAE reconstructions (decode of the unscaled encoder mean, or of its nearest codebook
    vectors when codebook is given) of the renders data["images"][subset], [N,1,32,32] float16
    in [-1, 1]; cached under work (decoding is the slow part on a shared CPU)."""
    path = os.path.join(work, "attr-reconstructions-%d-%d%s.pt" % (len(subset), int(subset[0]), "-codebook" if codebook is not None else ""))
    if os.path.exists(path):
        return torch.load(path)
    import glyph_codebook
    vae, _ = gd.load_vae()
    t0 = time.time()
    lat = gd.encode_means(vae, data["images"][subset])
    if codebook is not None:
        lat = glyph_codebook.quantise(lat, codebook)[0]
    rec = gd.decode(vae, lat)[:, :1].clamp(-1, 1).half()
    torch.save(rec, path)
    log("encoded and decoded %d renders in %.0fs -> %s" % (len(rec), time.time() - t0, path))
    return rec


def calibrate(render_feats, recon_feats, trim=0.1, iters=3):
    """Per-feature least squares recon ~ a * render + b over pairs (a render and its VAE
    reconstruction), refitted without the worst trim of the residuals (thin glyphs such as - _ .
    are smeared by the decode and would dominate): maps render features into the
    reconstructions' domain (decodes are softer). Returns (a, b, covariance of the residuals of
    the pairs whose residuals all sit within 4 robust standard deviations)."""
    D = render_feats.shape[1]
    a, b = np.zeros(D), np.zeros(D)
    for k in range(D):
        keep = np.ones(len(render_feats), bool)
        for _ in range(iters):
            a[k], b[k] = np.polyfit(render_feats[keep, k], recon_feats[keep, k], 1)
            r = np.abs(recon_feats[:, k] - a[k] * render_feats[:, k] - b[k])
            keep = r <= np.quantile(r, 1 - trim)
    r = recon_feats - (render_feats * a + b)
    med = np.median(r, 0)
    mad = np.median(np.abs(r - med), 0) * 1.4826 + 1e-9
    r = r[(np.abs(r - med) / mad < 4).all(1)]
    r = r - r.mean(0)
    return a, b, r.T @ r / len(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(gd.PRIOR_DIR, "eval"))
    ap.add_argument("--work", default=gd.WORK)
    ap.add_argument("--refs", default="reconstructions", choices=("reconstructions", "calibrated-renders"),
                    help="references for decoded images: VAE reconstructions of every render at shift 0 (all characters, "
                    "faces and sizes), or every render with its features mapped by calibrate() (cheaper, weaker)")
    ap.add_argument("--n-cal", type=int, default=2000, help="renders reconstructed to calibrate the render features")
    ap.add_argument("--n-test", type=int, default=2000, help="other renders reconstructed as the test set")
    ap.add_argument("--shrink", type=float, default=0.5, help="covariance shrinkage towards its diagonal")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--codebook", default=os.path.join(gd.PRIOR_DIR, "codebook.safetensors"),
                    help="codebook of the through-the-codebook test: a .safetensors with a 'codebook' tensor, or "
                    "glyph_codebook.py's codebook-K.pt")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import gpt2_torch
    data = gd.labelled_dataset(args.work)
    faces = data["faces"]
    ch, fa = data["char"].astype(np.int64), data["face"].astype(np.int64)
    sz = size_ids(data)
    C, S = len(gd.CHARS), len(np.unique(sz))
    perm = np.random.default_rng(args.seed).permutation(len(ch))
    cal, test = perm[: args.n_cal], perm[args.n_cal : args.n_cal + args.n_test]
    if args.codebook.endswith(".pt"):
        cb = torch.load(args.codebook).float()
    else:
        cb = gpt2_torch.load_safetensors(args.codebook)["codebook"].float()
    t0 = time.time()
    f_render = features(gd.to_tensor(data["images"])[:, :1])
    f_test = features(reconstructions(data, args.work, test))
    f_testq = features(reconstructions(data, args.work, test, cb))
    f_cal = features(reconstructions(data, args.work, cal))
    inst_render = fit(f_render, ch, fa, sz, faces, C, S, args.shrink)
    a, b, noise = calibrate(f_render[cal], f_cal)
    meta = {"features": FEATURES, "faces": faces, "refs": args.refs, "shrink": args.shrink, "ink": [INK_PAPER, INK_FULL],
            "labels": {k: list(v) for k, v in ATTR_NAMES.items()}, "n_test": len(test), "seed": args.seed}
    if args.refs == "reconstructions":
        ref = np.nonzero(shift_ids(data) == 0)[0]
        f_ref = features(reconstructions(data, args.work, ref))
        inst = fit(f_ref, ch[ref], fa[ref], sz[ref], faces, C, S, args.shrink)
        meta["n_refs"] = len(ref)
    else:
        # Every render, its features mapped into the reconstructions' domain; the covariance gets
        # the calibration residual (what the decode adds) on top.
        inst = fit(f_render * a + b, ch, fa, sz, faces, C, S, args.shrink, extra_cov=noise)
        meta.update(n_refs=len(ch), n_cal=len(cal), calibration={"a": list(a), "b": list(b)})
    log("features of %d renders and %d reconstructions in %.0fs" % (len(ch), len(cal) + 2 * len(test) + meta["n_refs"] * (args.refs == "reconstructions"), time.time() - t0))
    results = {}
    for name, im, f, ix in (("renders (render references)", inst_render, f_render, np.arange(len(ch))),
                            ("reconstructions", inst, f_test, test),
                            ("reconstructions through the codebook", inst, f_testq, test)):
        for mode in ("size", "pair"):
            p = im.predict(f, ch[ix], fa[ix], sz[ix], mode)
            r = report(p, fa[ix], im.face_attr)
            r["n"] = len(ix)
            results["%s, %s" % (name, "leave-size-out" if mode == "size" else "pair-out")] = r
            log("%-50s %s" % (name + " " + mode, "  ".join("%s %.3f" % (k, v["acc"]) for k, v in r.items() if k != "n")))
            log("%-50s %s" % ("", "  ".join("%s %s" % (k, " / ".join("%.3f" % x for x in v["recall"].values())) for k, v in r.items() if isinstance(v, dict) and "recall" in v)))
    meta["tests"] = ("leave-size-out: each test image scored against references without its own (character, face, size); "
                     "pair-out: without its whole (character, face) pair")
    meta["accuracy"] = results
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "attributes.npz")
    inst.save(path)
    write_json(os.path.join(args.out, "attributes.json"), meta)
    log("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
