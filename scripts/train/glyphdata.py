"""Shared pieces of the text-to-image glyph scripts (glyph_codebook.py, train_glyph_prior.py,
train_glyph_classifier.py, eval_text2image.py): labelled glyph renders, face attributes, the
caption grammar and its normalisation, and loading the demo VAE.

Glyphs are rendered by scripts/train/train_vae_glyphs.py's render() with its characters, fonts,
sizes and shifts, in the same order, so the data here is exactly the VAE's training data plus
labels (face and character of each render).

The caption grammar and normalisation are the contract in docs (modelrt-text2image/v1); the Go
runtime implements the same rules and testdata/text2image/captions.json pins them.
"""

import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)

import bpe  # noqa: E402
import gpt2_torch  # noqa: E402
import train_vae_glyphs as tvg  # noqa: E402
import vae_torch  # noqa: E402
from checkpoint import log  # noqa: E402

REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
# MODELRT_GLYPH_VAE points the scripts at another glyph VAE (an experiment with a finer latent,
# say); their --work directory must then be a fresh one, since it caches latents and decodes.
VAE_DIR = os.environ.get("MODELRT_GLYPH_VAE") or os.path.join(REPO, "examples", "models", "vae-glyphs")
PRIOR_DIR = os.path.join(REPO, "examples", "models", "glyph-prior")
WORK = "/tmp/modelrt-train/glyph-prior"
HELD_OUT = tvg.VAL_FONT  # DejaVuSerifCondensed-BoldItalic.ttf
CHARS = tvg.CHARS

WEIGHTS = ("regular", "bold", "light")
SLANTS = ("upright", "italic")
FAMILIES = ("serif", "sans", "mono")
WIDTHS = ("normal", "condensed")
STYLE_WORDS = ("bold", "light", "italic", "serif", "sans", "mono", "condensed")
KINDS = ("capital letter", "lowercase letter", "greek letter", "letter", "digit", "character")


def face_attributes(name):
    """Attributes of a DejaVu face from its file name: dict weight, slant, family, width."""
    stem = name[:-4] if name.endswith(".ttf") else name
    family = "mono" if "SansMono" in stem else ("serif" if "Serif" in stem else "sans")
    weight = "bold" if "Bold" in stem else ("light" if "ExtraLight" in stem else "regular")
    slant = "italic" if ("Italic" in stem or "Oblique" in stem) else "upright"
    width = "condensed" if "Condensed" in stem else "normal"
    return {"weight": weight, "slant": slant, "family": family, "width": width}


def face_style_words(attrs):
    """The style words that are true of a face (regular, upright and normal width have none)."""
    words = []
    if attrs["weight"] != "regular":
        words.append(attrs["weight"])
    if attrs["slant"] == "italic":
        words.append("italic")
    words.append(attrs["family"])
    if attrs["width"] == "condensed":
        words.append("condensed")
    return words


def is_greek(ch):
    return 0x0370 <= ord(ch) <= 0x03FF


def valid_kinds(ch):
    """Caption kinds that truthfully describe character ch."""
    if ch.isalpha():
        kinds = ["letter"]
        if ch.isupper():
            kinds.append("capital letter")
        if ch.islower():
            kinds.append("lowercase letter")
        if is_greek(ch):
            kinds.append("greek letter")
        return kinds + ["character"]
    if ch in "0123456789":
        return ["digit", "character"]
    return ["character"]


def labelled_dataset(work=WORK):
    """Every render of train_vae_glyphs.py (same fonts, sizes, characters, shifts and order) with
    labels. Returns dict: images uint8 [N,32,32], face int [N], char int [N] (index into CHARS),
    faces list of file names. Cached under work."""
    path = os.path.join(work, "labelled.npz")
    faces = tvg.font_files()
    if os.path.exists(path):
        z = np.load(path)
        return {"images": z["images"], "face": z["face"], "char": z["char"], "faces": faces}
    t0 = time.time()
    imgs, fi, ci = [], [], []
    for f, name in enumerate(faces):
        p = os.path.join(tvg.FONT_DIR, name)
        for size in tvg.SIZES:
            for c, ch in enumerate(CHARS):
                for dx, dy in tvg.SHIFTS:
                    a = tvg.render(p, size, ch, dx, dy)
                    if a.min() > 128:
                        continue  # no glyph in this font (train_vae_glyphs.py's rule)
                    imgs.append(a)
                    fi.append(f)
                    ci.append(c)
    os.makedirs(work, exist_ok=True)
    d = {"images": np.stack(imgs), "face": np.array(fi, np.int16), "char": np.array(ci, np.int16)}
    np.savez_compressed(path, **d)
    log("data: rendered %d glyphs in %.0fs" % (len(imgs), time.time() - t0))
    d["faces"] = faces
    return d


def to_tensor(a):
    return tvg.to_tensor(a)


def load_vae(directory=VAE_DIR):
    """The demo VAE in PyTorch (F16 weights read as float32), eval mode; returns (model, cfg)."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    model = vae_torch.AutoencoderKL(cfg)
    model.load_state_dict(gpt2_torch.load_safetensors(os.path.join(directory, "diffusion_pytorch_model.safetensors")))
    model.eval()
    return model, cfg


@torch.no_grad()
def encode_means(vae, images_u8, batch=512):
    """Unscaled encoder means [N,4,4,4] of uint8 glyphs [N,32,32]."""
    out = []
    for i in range(0, len(images_u8), batch):
        out.append(vae.encode(to_tensor(images_u8[i : i + batch]))[0])
    return torch.cat(out)


@torch.no_grad()
def decode(vae, latents, batch=512):
    out = []
    for i in range(0, len(latents), batch):
        out.append(vae.decode(latents[i : i + batch]))
    return torch.cat(out)


# ---- caption normalisation (the contract; the Go runtime does exactly this) ----

_SPACE = bpe._GO_SPACE  # Go's unicode.IsSpace


def collapse_spaces(s):
    """Trim and collapse every run of white space (Go's unicode.IsSpace) to one ASCII space."""
    out, pending = [], False
    for ch in s:
        if ch in _SPACE:
            pending = True
            continue
        if pending and out:
            out.append(" ")
        pending = False
        out.append(ch)
    return "".join(out)


def ascii_lower(s):
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def _one_rune_case(ch, upper):
    """Upper- or lower-case one character as Go's unicode.ToUpper / ToLower do: a mapping that
    would change the number of characters (ß -> SS) leaves the character as it is."""
    m = ch.upper() if upper else ch.lower()
    return m if len(m) == 1 else ch


def parse_caption(raw):
    """(kind, char, styles) of a caption in the grammar, or None when it does not parse.

    Grammar (after collapse_spaces): "the" " " KIND " " CHAR [ [" "] "," STYLES ], KIND one of
    KINDS and keywords case-insensitive (ASCII), CHAR exactly one character (any non-space), STYLES
    one or more words of STYLE_WORDS (case-insensitive) separated by spaces and/or commas."""
    s = collapse_spaces(raw)
    low = ascii_lower(s)
    if not low.startswith("the "):
        return None
    rest = s[4:]
    for kind in KINDS:
        if ascii_lower(rest[: len(kind) + 1]) == kind + " ":
            rest = rest[len(kind) + 1 :]
            break
    else:
        return None
    if not rest:
        return None
    ch, rest = rest[0], rest[1:]
    styles = []
    if rest:
        if rest.startswith(" "):
            rest = rest[1:]
        if not rest.startswith(","):
            return None
        words = [w for w in rest[1:].replace(",", " ").split(" ") if w]
        if not words:
            return None
        for w in words:
            w = ascii_lower(w)
            if w not in STYLE_WORDS:
                return None
            if w not in styles:
                styles.append(w)
    if kind == "capital letter":
        ch = _one_rune_case(ch, True)
    elif kind == "lowercase letter":
        ch = _one_rune_case(ch, False)
    return kind, ch, styles


def canonical(kind, ch, styles):
    s = "the %s %s" % (kind, ch)
    if styles:
        s += ", " + " ".join(styles)
    return s


def normalize_caption(raw):
    """The canonical form of a caption (see parse_caption); a caption that does not parse is only
    trimmed with its white-space runs collapsed. Raises ValueError on an empty caption."""
    s = collapse_spaces(raw)
    if not s:
        raise ValueError("empty caption")
    p = parse_caption(s)
    return canonical(*p) if p else s
