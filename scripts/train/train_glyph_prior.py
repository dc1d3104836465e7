"""Train the text-to-image glyph prior (DALL-E style): examples/models/glyph-prior.

A small GPT-2 reads a caption ("the capital letter Q, bold serif") and writes the 16 codes of a
4x4 VAE latent, one codebook index per latent pixel in raster order; the codes are looked up in
codebook.safetensors (glyph_codebook.py's k-means over the unscaled latents of
examples/models/vae-glyphs) and decoded by that VAE. Model directory contract:
docs (modelrt-text2image/v1) and text2image.json.

Data: every render of scripts/train/train_vae_glyphs.py except the held-out face
DejaVuSerifCondensed-BoldItalic (never seen by the prior, the codebook or the caption
tokenizer's corpus). Each training example pairs a glyph's codes (nearest codebook vector of each
unscaled encoder mean) with a caption drawn afresh every time: a random kind among those true of
the character (glyphdata.valid_kinds), a random subset of the face's true style words in random
order (omitted = any), or, with probability --drop, the null caption (all pad ids) for
classifier-free guidance.

Sequence: P caption ids right-padded with pad_id, image_marker_id, then the codes as ids
code_offset + code. The loss is the cross-entropy of the code logits (the last K ids of the
vocabulary) at positions P .. P+15, which predict codes 0 .. 15.

Tokenizer: byte-level BPE (scripts/train/bpe.py) learned on a sample of training captions,
GPT-2 format (vocab.json, merges.txt). vocab.json also names the two specials (<|pad|>,
<|image|>) and the codes (<|code_0|> ...), so its ids cover the whole vocabulary.

  scripts/train/with-openblas.sh /usr/bin/python3 scripts/train/train_glyph_prior.py --threads 2

Phases are cached under --work (tokenizer, checkpoint) so an interrupted run resumes. Seeded;
CPU float results may still differ slightly across machines and BLAS libraries.
"""

import argparse
import json
import os
import random

import numpy as np
import torch
import torch.nn.functional as F

import bpe
import checkpoint
import glyphdata as gd
import gpt2_torch
from checkpoint import log
import glyph_attributes
import glyph_codebook
import train_vae_glyphs as tvg
from train_gpt2_go import new_model, train_loop  # GPT-2's initialization, AdamW, warm-up + cosine schedule

EOT = "<|endoftext|>"
PAD, IMAGE = "<|pad|>", "<|image|>"


def random_caption(rng, ch, attrs, full=0.0):
    """A caption true of character ch in a face with attrs (canonical form): a random subset of
    the style words (each size equally likely), or with probability full all of them."""
    kind = rng.choice(gd.valid_kinds(ch))
    words = gd.face_style_words(attrs)
    n = len(words) if full and rng.random() < full else rng.randint(0, len(words))
    styles = rng.sample(words, n)
    return gd.canonical(kind, ch, styles)


def build_tokenizer(work, faces, vocab_size, seed):
    vpath, mpath = os.path.join(work, "bpe-vocab.json"), os.path.join(work, "bpe-merges.txt")
    if os.path.exists(vpath):
        with open(vpath, encoding="utf-8") as f:
            vocab = json.load(f)
        with open(mpath, encoding="utf-8") as f:
            merges = [tuple(json.loads(l)) for l in f]
        return vocab, merges
    rng = random.Random(seed)
    counts = {}
    train_faces = [f for f in faces if f != gd.HELD_OUT]
    for _ in range(100000):
        attrs = gd.face_attributes(rng.choice(train_faces))
        cap = random_caption(rng, rng.choice(gd.CHARS), attrs)
        for p in bpe.pieces(cap):
            sp = bpe.spell(p)
            counts[sp] = counts.get(sp, 0) + 1
    vocab, merges = bpe.train(counts, vocab_size, EOT)
    with open(vpath, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(mpath, "w", encoding="utf-8") as f:
        for m in merges:
            f.write(json.dumps(list(m), ensure_ascii=False) + "\n")
    log("tokenizer: %d tokens, %d merges" % (len(vocab), len(merges)))
    return vocab, merges


class Layout:
    """Token ids of the sequence layout (text2image.json)."""

    def __init__(self, n_bpe, k, prefix_length, latent_shape=(4, 4, 4)):
        self.P = prefix_length
        self.latent_shape = [int(d) for d in latent_shape]  # [C, h, w]: N = h*w codes per image
        self.N = self.latent_shape[1] * self.latent_shape[2]
        self.pad = n_bpe
        self.image = n_bpe + 1
        self.code_offset = n_bpe + 2
        self.K = k
        self.V = n_bpe + 2 + k

    def caption_ids(self, enc, caption):
        """Right-padded ids of a caption (normalised first); None = the null caption."""
        if caption is None:
            return [self.pad] * self.P
        ids = enc.encode_ordinary(gd.normalize_caption(caption))
        if len(ids) > self.P:
            raise ValueError("caption is %d tokens; the model's prefix holds %d" % (len(ids), self.P))
        return ids + [self.pad] * (self.P - len(ids))


def code_loss(model, lay, cap_ids, codes, reduction="mean"):
    """Cross-entropy of the codes given caption ids [B,P] and codes [B,N] (0..K-1)."""
    b = len(codes)
    x = torch.cat([cap_ids, torch.full((b, 1), lay.image, dtype=torch.long), codes[:, :-1] + lay.code_offset], 1)
    lg = code_logits(model, lay, x)
    return F.cross_entropy(lg.reshape(-1, lay.K), codes.reshape(-1), reduction=reduction)


def code_logits(model, lay, x):
    """The code logits (last K ids) at positions P .. of x [B,T]: GPT2LMHeadModel's forward
    without an attention mask (positions 0 .. T-1, causal attention), with the LM head applied
    only where the loss needs it (it would otherwise cost as much as the blocks)."""
    tr = model.transformer
    t = x.shape[1]
    h = tr.wte(x) + tr.wpe(torch.arange(t))
    causal = torch.ones(t, t, dtype=torch.bool).tril().view(1, 1, t, t)
    uniform = torch.zeros_like(causal)
    for block in tr.h:
        h, _ = block(h, causal, uniform)
    h = tr.ln_f(h[:, lay.P :])
    return h @ tr.wte.weight[lay.code_offset :].t()


@torch.no_grad()
def sample_codes(model, lay, cap_ids, guidance, gen, temperature=1.0, top_k=0, base_ids=None, style_guidance=None):
    """Codes [B,N] for caption ids [B,P]: logits restricted to the code range, classifier-free
    guidance l_u + s (l_c - l_u) against the null caption (skipped for s == 1), temperature,
    top-k (0 = all), one multinomial draw per position from gen.

    With base_ids (the same captions without their style words) and style_guidance s2, the
    guidance is split in two: l_u + s (l_b - l_u) + s2 (l_c - l_b): s weighs what the character
    adds to the null caption, s2 what the style words add to the character (s2 == s is plain
    guidance)."""
    b = len(cap_ids)
    parts = [cap_ids]
    split = base_ids is not None and style_guidance is not None
    if split:
        parts.append(base_ids)
    if guidance != 1.0 or split:
        parts.append(torch.full_like(cap_ids, lay.pad))
    rows = torch.cat(parts)
    x = torch.cat([rows, torch.full((len(rows), 1), lay.image, dtype=torch.long)], 1)
    past = None
    codes = []
    for t in range(lay.N):
        logits, past = model(x, past_key_values=past)
        lg = logits[:, -1, lay.code_offset : lay.code_offset + lay.K].float()
        if split:
            lc, lb, lu = lg[:b], lg[b : 2 * b], lg[2 * b :]
            lg = lu + guidance * (lb - lu) + style_guidance * (lc - lb)
        elif guidance != 1.0:
            lc, lu = lg[:b], lg[b:]
            lg = lu + guidance * (lc - lu)
        lg = lg / temperature
        if top_k and top_k < lay.K:
            kth = lg.topk(top_k, dim=-1).values[:, -1:]
            lg = lg.masked_fill(lg < kth, float("-inf"))
        c = torch.multinomial(F.softmax(lg, -1), 1, generator=gen)
        codes.append(c)
        nxt = c + lay.code_offset
        x = torch.cat([nxt] * len(parts))
    return torch.cat(codes, 1)


def init_vocab(directory, t2i):
    """The caption BPE part of an exported vocab.json (ids below pad_id)."""
    with open(os.path.join(directory, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    return {t: i for t, i in vocab.items() if i < t2i["pad_id"]}


def init_merges(directory):
    with open(os.path.join(directory, "merges.txt"), encoding="utf-8") as f:
        return [tuple(l.rstrip("\n").split(" ")) for l in f.readlines()[1:]]


def load_prior(directory):
    """(model, layout, encoder, codebook, t2i dict) from an exported model directory."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(directory, "text2image.json")) as f:
        t2i = json.load(f)
    model = gpt2_torch.GPT2LMHeadModel(cfg)
    model.load_state_dict(gpt2_torch.load_safetensors(os.path.join(directory, "model.safetensors")), strict=False)
    model.eval()
    with open(os.path.join(directory, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(directory, "merges.txt"), encoding="utf-8") as f:
        merges = [tuple(l.rstrip("\n").split(" ")) for l in f.readlines()[1:]]
    n_bpe = t2i["pad_id"]
    bvocab = {t: i for t, i in vocab.items() if i < n_bpe}
    enc = bpe.Encoder(bvocab, merges, EOT)
    lay = Layout(n_bpe, t2i["codebook_size"], t2i["prefix_length"], t2i["latent_shape"])
    assert lay.image == t2i["image_marker_id"] and lay.code_offset == t2i["code_offset"]
    cb = gpt2_torch.load_safetensors(os.path.join(directory, t2i["codebook"]))["codebook"]
    return model, lay, enc, cb, t2i


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=gd.PRIOR_DIR)
    ap.add_argument("--work", default=gd.WORK)
    ap.add_argument("--captions-out", default=os.path.join(gd.REPO, "testdata", "text2image", "captions.json"))
    ap.add_argument("--k", type=int, default=512, help="codebook size (glyph_codebook.py's WORK/codebook-K.pt)")
    ap.add_argument("--vocab-size", type=int, default=512, help="caption BPE vocabulary (bytes + merges + <|endoftext|>)")
    ap.add_argument("--prefix-length", type=int, default=12)
    ap.add_argument("--n-embd", type=int, default=96)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=280)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--drop", type=float, default=0.1, help="probability of the null caption")
    ap.add_argument("--eval-every", type=int, default=140)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--stop-at", type=int, default=0, help="stop (and export) after this step without changing the schedule")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--init-from", default="", help="fine-tune: start from this exported model directory's weights, "
                    "tokenizer and codebook (fresh optimizer, step 0 of --steps, checkpoint WORK/prior-finetune-ckpt.pt)")
    ap.add_argument("--full", type=float, default=0.0, help="probability that a caption carries every true style word "
                    "(otherwise a random subset, each size equally likely)")
    ap.add_argument("--oversample", default="", help="WORDS:FACTOR, e.g. condensed,mono:2: glyphs of faces with any of "
                    "these style words are drawn FACTOR times as often (default: every training glyph equally often)")
    ap.add_argument("--sizes", default="", help="comma-separated render sizes (of train_vae_glyphs.SIZES) to train on, "
                    "e.g. 22: the caption never names a size, so every size but one is variation the prior must "
                    "model without being told (default: all sizes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)

    data = gd.labelled_dataset(args.work)
    faces = data["faces"]
    held = faces.index(gd.HELD_OUT)
    lat = torch.load(os.path.join(args.work, "latents.pt"))
    if args.init_from:
        init = load_prior(args.init_from)
        cb = init[3].float()
        args.k = len(cb)
        # The fine-tuned model keeps the tokenizer it was trained with.
        with open(os.path.join(args.work, "bpe-vocab.json"), "w", encoding="utf-8") as f:
            json.dump(init_vocab(args.init_from, init[4]), f, ensure_ascii=False)
        with open(os.path.join(args.work, "bpe-merges.txt"), "w", encoding="utf-8") as f:
            for m in init_merges(args.init_from):
                f.write(json.dumps(list(m), ensure_ascii=False) + "\n")
    else:
        cb = torch.load(os.path.join(args.work, "codebook-%d.pt" % args.k))
    _, codes = glyph_codebook.quantise(lat, cb)
    face_attrs = [gd.face_attributes(f) for f in faces]
    is_train = data["face"] != held
    keep = np.ones(len(is_train), bool)
    if args.sizes:
        want = [int(x) for x in args.sizes.split(",")]
        bad = [x for x in want if x not in tvg.SIZES]
        if bad:
            raise SystemExit("--sizes: %s not among the renders' sizes %s" % (bad, tvg.SIZES))
        keep = np.isin(np.array(tvg.SIZES)[glyph_attributes.size_ids(data)], want)
    tr_idx = np.nonzero(is_train & keep)[0]
    va_idx = np.nonzero(~is_train & keep)[0]
    log("data: %d training glyphs, %d held-out (%s); codebook K=%d" % (len(tr_idx), len(va_idx), gd.HELD_OUT, args.k))

    vocab, merges = build_tokenizer(args.work, faces, args.vocab_size, args.seed)
    enc = bpe.Encoder(vocab, merges, EOT)
    lay = Layout(len(vocab), args.k, args.prefix_length, lat.shape[1:])
    n_pos = lay.P + 1 + lay.N
    cfg = gpt2_torch.default_config(vocab_size=lay.V, n_positions=n_pos, n_embd=args.n_embd, n_layer=args.n_layer,
                                    n_head=args.n_head, initializer_range=0.02, bos_token_id=vocab[EOT], eos_token_id=vocab[EOT])
    cfg["n_ctx"] = n_pos
    model, opt = new_model(cfg, args)
    g = torch.Generator().manual_seed(args.seed + 1)
    ckpt = os.path.join(args.work, "prior-ckpt.pt")
    if args.init_from:
        ckpt = os.path.join(args.work, "prior-finetune-ckpt.pt")
        if not os.path.exists(ckpt):
            model.load_state_dict(init[0].state_dict())
            log("fine-tuning from %s" % args.init_from)
    step, history, elapsed = checkpoint.resume(ckpt, model, opt, g)
    nparams = sum(p.numel() for p in model.parameters())
    log("model: %d parameters, vocab %d (caption BPE %d + 2 + K %d), prefix %d, n_positions %d" % (
        nparams, lay.V, len(vocab), args.k, lay.P, n_pos))

    def make_batch(idx, gen_py, drop):
        caps = []
        for i in idx:
            if gen_py.random() < drop:
                caps.append(lay.caption_ids(enc, None))
            else:
                caps.append(lay.caption_ids(enc, random_caption(gen_py, gd.CHARS[data["char"][i]], face_attrs[data["face"][i]], args.full)))
        return torch.tensor(caps, dtype=torch.long), codes[torch.from_numpy(np.asarray(idx, dtype=np.int64))]

    # Fixed evaluation batches: 256 training glyphs and 256 held-out glyphs, fully specified
    # captions ("the <kind> X, <all style words>") and null captions.
    ev_rng = np.random.default_rng(7)
    ev_sets = {"train": ev_rng.choice(tr_idx, 256, replace=False), "held_out": ev_rng.choice(va_idx, 256, replace=False)}

    def full_caption_ids(i):
        ch = gd.CHARS[data["char"][i]]
        return lay.caption_ids(enc, gd.canonical(gd.valid_kinds(ch)[0], ch, gd.face_style_words(face_attrs[data["face"][i]])))

    @torch.no_grad()
    def evaluate():
        model.eval()
        out = {}
        for name, ix in ev_sets.items():
            for mode in ("full", "null"):
                tot = 0.0
                for s in range(0, len(ix), 256):
                    part = ix[s : s + 256]
                    caps = torch.tensor([full_caption_ids(i) if mode == "full" else [lay.pad] * lay.P for i in part])
                    tot += code_loss(model, lay, caps, codes[torch.from_numpy(part.astype(np.int64))], "sum").item()
                out["%s_%s" % (name, mode)] = tot / (len(ix) * lay.N)
        model.train()
        return out

    draw_weights = None
    if args.oversample:
        words, factor = args.oversample.rsplit(":", 1)
        hard = [f for f, a in enumerate(face_attrs) if set(words.split(",")) & set(gd.face_style_words(a))]
        draw_weights = torch.from_numpy(np.where(np.isin(data["face"][tr_idx], hard), float(factor), 1.0))
        log("oversampling %s x%s: %.0f%% of draws" % ([faces[f] for f in hard], factor,
                                                      100 * draw_weights[draw_weights > 1].sum() / draw_weights.sum()))

    def loss_at(step):
        # Python-side caption randomness derived from the step, so a resumed run draws the same.
        gen_py = random.Random(args.seed * 1000003 + step)
        if draw_weights is None:
            idx = tr_idx[torch.randint(0, len(tr_idx), (args.batch,), generator=g).numpy()]
        else:
            idx = tr_idx[torch.multinomial(draw_weights, args.batch, replacement=True, generator=g).numpy()]
        caps, cod = make_batch(idx, gen_py, args.drop)
        return code_loss(model, lay, caps, cod)

    def evaluate_at(step, elapsed):
        ev = {"step": step, "seconds": round(elapsed)}
        ev.update(evaluate())
        log("eval %s" % json.dumps(ev))
        return ev

    step, history, elapsed = train_loop(args, model, opt, g, ckpt, step, history, elapsed, loss_at, evaluate_at, log_every=25)

    export(args, model, cfg, vocab, merges, enc, lay, cb, history, step, elapsed, nparams, len(tr_idx), len(va_idx))


CAPTION_CASES = [
    "the letter a", "the capital letter Q, bold serif", "the lowercase letter g, italic", "the digit 7",
    "the character ?", "the greek letter Ω", "the greek letter λ, sans light", "the letter é, mono",
    "  THE   Capital   LETTER   q  ,  Bold,ITALIC  , bold ", "The Lowercase Letter Ω", "the capital letter ß",
    "the character ,", "the character ,, condensed, serif", "the digit 3 ,sans,mono", "the letter A,bold",
    "\tthe\u00a0letter\u3000z\n", "the letter a bold", "the letter ab", "the letter a,", "the letter a, heavy",
    "a picture of a cat", "please draw me a picture of a small grey cat", "the", "the letter", "the greek letter ψ, bold italic serif condensed",
    "the lowercase letter x, light italic sans mono condensed serif bold",
]


def export(args, model, cfg, vocab, merges, enc, lay, cb, history, step, elapsed, nparams, n_train, n_val):
    model.eval()
    out = args.out
    gpt2_torch.round_model_(model, "F16")
    gpt2_torch.save_model(out, model, cfg, dtype="F16")
    full = dict(vocab)
    full[PAD] = lay.pad
    full[IMAGE] = lay.image
    for k in range(lay.K):
        full["<|code_%d|>" % k] = lay.code_offset + k
    assert sorted(full.values()) == list(range(lay.V))
    bpe.save(out, full, merges)
    gpt2_torch.save_safetensors(os.path.join(out, "codebook.safetensors"), {"codebook": cb.float().contiguous()}, dtype="F32")
    t2i = {"format": "modelrt-text2image/v1", "vae": os.path.relpath(gd.VAE_DIR, out), "codebook": "codebook.safetensors",
           "prefix_length": lay.P, "pad_id": lay.pad, "image_marker_id": lay.image, "code_offset": lay.code_offset,
           "codebook_size": lay.K, "latent_shape": lay.latent_shape, "order": "raster",
           "latent_space": "unscaled", "null_caption": "all-pad"}
    with open(os.path.join(out, "text2image.json"), "w") as f:
        json.dump(t2i, f, indent=2)
        f.write("\n")
    # Caption vectors for the Go runtime's normaliser and tokenizer.
    cases = []
    for raw in CAPTION_CASES:
        norm = gd.normalize_caption(raw)
        ids = enc.encode_ordinary(norm)
        c = {"raw": raw, "normalized": norm, "parses": gd.parse_caption(raw) is not None, "ids": ids}
        if len(ids) > lay.P:
            c["error"] = "caption is %d tokens; the model's prefix holds %d" % (len(ids), lay.P)
        else:
            c["prefix"] = ids + [lay.pad] * (lay.P - len(ids))
        cases.append(c)
    for raw in ("", "  \t "):
        cases.append({"raw": raw, "error": "empty caption"})
    os.makedirs(os.path.dirname(args.captions_out), exist_ok=True)
    with open(args.captions_out, "w", encoding="utf-8") as f:
        head = {"model": "examples/models/glyph-prior", "prefix_length": lay.P, "pad_id": lay.pad}
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]}\n")
    # Reference logits: the code logits after the marker for one caption and the null caption.
    ref = {}
    for name, cap in (("conditional", "the capital letter A, bold serif"), ("null", None)):
        ids = lay.caption_ids(enc, cap) + [lay.image]
        with torch.no_grad():
            lg, _ = model(torch.tensor([ids]))
        ref[name] = {"caption": cap, "input_ids": ids, "last_logits": [round(v, 4) for v in lg[0, -1].tolist()]}
    os.makedirs(os.path.join(out, "testdata"), exist_ok=True)
    with open(os.path.join(out, "testdata", "check.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    final = history[-1] if history else {}
    stats = {"steps": step, "train_seconds": round(elapsed), "parameters": nparams, "batch": args.batch, "seed": args.seed,
             "lr": args.lr, "drop": args.drop, "K": lay.K, "vocab_size": lay.V, "caption_bpe": len(vocab),
             "prefix_length": lay.P, "train_glyphs": n_train, "held_out_glyphs": n_val, "final": final, "history": history}
    with open(os.path.join(args.work, "prior-stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    log("export: wrote %s; final %s" % (out, json.dumps(final)))


if __name__ == "__main__":
    main()
