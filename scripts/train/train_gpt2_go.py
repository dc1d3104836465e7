"""Train the demo GPT-2 model that writes Go: examples/models/gpt2-go.

Corpus: the non-test, non-generated .go files of the Go standard library ($(go env GOROOT)/src,
BSD-3-Clause). A few packages are held out for validation (VAL_PACKAGES). Every phase caches its
result under --work so that an interrupted run resumes:

  1. tokenizer: byte-level BPE (scripts/train/bpe.py) learned on the training files;
  2. tokens: every file encoded, files separated by <|endoftext|>;
  3. train: GPT2LMHeadModel from scripts/fixtures/gpt2_torch.py (Hugging Face names), AdamW,
     random 256-token windows, checkpointed every --ckpt-every steps with optimizer and RNG state;
  4. export: config.json, model.safetensors (F16), vocab.json, merges.txt, and small check files
     used by examples/models/demo_test.go (tokenizer ids, reference logits), and stats.json.

Run with /usr/bin/python3 (Debian's PyTorch 1.13). Everything is seeded (--seed); CPU float
results may still differ slightly across machines and BLAS libraries.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)

import bpe  # noqa: E402
import checkpoint  # noqa: E402
from checkpoint import log  # noqa: E402
import gpt2_torch  # noqa: E402

EOT = "<|endoftext|>"
# Held out for validation: whole packages, so the loss measures code the model never saw.
VAL_PACKAGES = ("strings", "bufio", "container/list", "container/ring", "encoding/csv", "text/tabwriter", "sort", "path")
MAX_FILE_BYTES = 256 << 10



def default_goroot():
    """`go env GOROOT`, or /usr/local/go when go is not on PATH."""
    try:
        return subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "/usr/local/go"


def corpus_files(goroot):
    """(train, val): sorted lists of (relative path, text) of the corpus files."""
    src = os.path.join(goroot, "src")
    train, val = [], []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in ("testdata", "vendor") and not d.startswith((".", "_")))
        rel_dir = os.path.relpath(root, src)
        for name in sorted(files):
            if not name.endswith(".go") or name.endswith("_test.go"):
                continue
            path = os.path.join(root, name)
            if os.path.getsize(path) > MAX_FILE_BYTES:
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except UnicodeDecodeError:
                continue
            head = text[:2000]
            if "Code generated" in head and "DO NOT EDIT" in head:
                continue  # tables and stubs would dominate the vocabulary and the loss
            if EOT in text:
                continue
            rel = os.path.join(rel_dir, name)
            (val if rel_dir in VAL_PACKAGES else train).append((rel, text))
    return train, val


def build_tokenizer(train, vocab_size, work):
    vpath, mpath = os.path.join(work, "vocab.json"), os.path.join(work, "merges.txt")
    if os.path.exists(vpath) and os.path.exists(mpath):
        with open(vpath, encoding="utf-8") as f:
            vocab = json.load(f)
        with open(mpath, encoding="utf-8") as f:
            merges = [tuple(l.rstrip("\n").split(" ")) for l in f.readlines()[1:]]
        return vocab, merges
    t0 = time.time()
    counts = {}
    for _, text in train:
        for p in bpe.pieces(text):
            sp = bpe.spell(p)
            counts[sp] = counts.get(sp, 0) + 1
    log("tokenizer: %d distinct pieces in %.0fs" % (len(counts), time.time() - t0))
    vocab, merges = bpe.train(counts, vocab_size, EOT, log=log)
    bpe.save(work, vocab, merges)
    log("tokenizer: %d tokens, %d merges in %.0fs" % (len(vocab), len(merges), time.time() - t0))
    return vocab, merges


def encode_files(enc, files, eot_id):
    ids = []
    for _, text in files:
        ids.extend(enc.encode_ordinary(text))
        ids.append(eot_id)
    return np.array(ids, dtype=np.uint16)


def init_weights(model, n_layer, seed):
    """GPT-2's initialization: N(0, 0.02), residual projections scaled by 1/sqrt(2*n_layer),
    LayerNorm gain 1 and shift 0, biases 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                p.fill_(1.0)
            else:
                std = 0.02
                if name.endswith("c_proj.weight"):
                    std /= math.sqrt(2 * n_layer)
                p.copy_(torch.randn(p.shape, generator=g) * std)


def new_model(cfg, args):
    """A GPT2LMHeadModel with GPT-2's initialization (seeded by args.seed) in training mode, and
    its AdamW optimizer (weight decay args.weight_decay on matrices only, lr args.lr)."""
    torch.manual_seed(args.seed)
    model = gpt2_torch.GPT2LMHeadModel(cfg)
    init_weights(model, args.n_layer, args.seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    return model, opt


def batch(tokens, B, T, g):
    starts = torch.randint(0, len(tokens) - T - 1, (B,), generator=g).numpy()
    x = np.stack([tokens[s : s + T + 1] for s in starts]).astype(np.int64)
    x = torch.from_numpy(x)
    return x[:, :-1], x[:, 1:]


@torch.no_grad()
def evaluate(model, tokens, T, n, V):
    """Mean next-token cross-entropy over n evenly spaced windows of tokens."""
    model.eval()
    starts = np.linspace(0, len(tokens) - T - 2, n).astype(np.int64)
    total = 0.0
    for k in range(0, n, 8):
        x = torch.from_numpy(np.stack([tokens[s : s + T + 1] for s in starts[k : k + 8]]).astype(np.int64))
        logits, _ = model(x[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1), reduction="sum").item()
    model.train()
    return total / (n * T)


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    frac = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * min(1.0, frac)))


def train_loop(args, model, opt, g, ckpt, step, history, elapsed, loss_at, evaluate_at, log_every=10):
    """Train from step to args.steps (or args.stop_at) with lr_at's schedule, gradient norm
    clipped at 1: loss_at(step) returns the batch loss; evaluate_at(step, seconds) returns the
    history entry, every args.eval_every steps and at the end; a checkpoint every
    args.ckpt_every steps. Returns (step, history, training seconds)."""
    t_last = time.time()
    run_loss, run_n = 0.0, 0
    stop = min(args.steps, args.stop_at) if args.stop_at > 0 else args.steps
    while step < stop and not args.export_only:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        run_loss += loss.item()
        run_n += 1
        now = time.time()
        elapsed += now - t_last
        t_last = now
        if step % log_every == 0:
            log("step %d/%d loss %.4f lr %.2e (%.2f s/step, %.0f s)" % (step, args.steps, run_loss / run_n, lr_at(step, args), elapsed / step, elapsed))
            run_loss, run_n = 0.0, 0
        if step % args.eval_every == 0 or step == stop:
            history.append(evaluate_at(step, elapsed))
            t_last = time.time()
        if step % args.ckpt_every == 0 or step == stop:
            checkpoint.save(ckpt, model, opt, g, step, history, elapsed)
            t_last = time.time()
    return step, history, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--goroot", default=default_goroot(), help="Go installation whose src/ is the corpus")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "examples", "models", "gpt2-go"))
    ap.add_argument("--work", default="/tmp/modelrt-train/gpt2-go")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=8)
    ap.add_argument("--n-positions", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--stop-at", type=int, default=0,
                    help="stop (and export) after this step without changing the schedule, which --steps sets")
    ap.add_argument("--export-only", action="store_true", help="export the last checkpoint")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)

    train_files, val_files = corpus_files(args.goroot)
    log("corpus: %d train files (%.1f MB), %d val files (%.1f MB)" % (
        len(train_files), sum(len(t) for _, t in train_files) / 1e6,
        len(val_files), sum(len(t) for _, t in val_files) / 1e6))
    vocab, merges = build_tokenizer(train_files, args.vocab_size, args.work)
    enc = bpe.Encoder(vocab, merges, EOT)
    eot_id = vocab[EOT]
    V = len(vocab)

    tok_path = os.path.join(args.work, "tokens.npz")
    if os.path.exists(tok_path):
        z = np.load(tok_path)
        train_tok, val_tok = z["train"], z["val"]
    else:
        t0 = time.time()
        train_tok = encode_files(enc, train_files, eot_id)
        val_tok = encode_files(enc, val_files, eot_id)
        np.savez(tok_path, train=train_tok, val=val_tok)
        log("tokens: train %d, val %d in %.0fs" % (len(train_tok), len(val_tok), time.time() - t0))
    nbytes = sum(len(t.encode()) for _, t in train_files)
    log("tokens: train %d (%.2f bytes/token), val %d" % (len(train_tok), nbytes / len(train_tok), len(val_tok)))

    cfg = gpt2_torch.default_config(
        vocab_size=V, n_positions=args.n_positions, n_embd=args.n_embd, n_layer=args.n_layer,
        n_head=args.n_head, initializer_range=0.02, bos_token_id=eot_id, eos_token_id=eot_id)
    model, opt = new_model(cfg, args)
    g = torch.Generator().manual_seed(args.seed + 1)
    ckpt = os.path.join(args.work, "ckpt.pt")
    step, history, elapsed = checkpoint.resume(ckpt, model, opt, g)
    nparams = sum(p.numel() for p in model.parameters())
    log("model: %d parameters (%d without embeddings)" % (nparams, nparams - V * args.n_embd - args.n_positions * args.n_embd))

    def loss_at(_step):
        x, y = batch(train_tok, args.batch, args.n_positions, g)
        logits, _ = model(x)
        return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))

    def evaluate_at(step, elapsed):
        vl = evaluate(model, val_tok, args.n_positions, 64, V)
        tl = evaluate(model, train_tok, args.n_positions, 64, V)
        log("eval step %d: train %.4f val %.4f" % (step, tl, vl))
        return {"step": step, "train_loss": tl, "val_loss": vl, "seconds": round(elapsed)}

    step, history, elapsed = train_loop(args, model, opt, g, ckpt, step, history, elapsed, loss_at, evaluate_at)

    export(args, model, cfg, vocab, merges, enc, val_files, val_tok, train_tok, history, step, elapsed, nparams)


def export(args, model, cfg, vocab, merges, enc, val_files, val_tok, train_tok, history, step, elapsed, nparams):
    model.eval()
    out = args.out
    gpt2_torch.round_model_(model, "F16")  # what the F16 file stores is what the references use
    gpt2_torch.save_model(out, model, cfg, dtype="F16")
    bpe.save(out, vocab, merges)
    # Tokenizer check: a held-out file's ids, which runtime/tokenizer must reproduce.
    sample_rel, sample_text = next((r, t) for r, t in val_files if r.endswith("tabwriter.go"))
    sample_text = sample_text[:6000]
    ids = enc.encode(sample_text)
    assert enc.decode(ids) == sample_text
    # Logits check: first 32 tokens of the sample, last position's logits, and greedy tokens.
    prompt = ids[:32]
    with torch.no_grad():
        logits, _ = model(torch.tensor([prompt]))
        last = logits[0, -1].tolist()
        seq = list(prompt)
        for _ in range(24):
            lg, _ = model(torch.tensor([seq[-args.n_positions:]]))
            seq.append(int(lg[0, -1].argmax()))
    # Non-ASCII text takes bpe.py's character-by-character pre-tokenizer rather than the re fast
    # path; this string exercises it (letters, numbers, spaces and symbols outside ASCII).
    extra_text = ("// naïve café: “quoted” ½ ² Ⅻ 日本語\u00a0x\u2003\u3000y — it's we'll they've\n"
                  "func Ünïcode(s string) int { return len(\"Grüße, 世界\") + 0x1F600 }\n\t\t \n")
    extra_ids = enc.encode(extra_text)
    assert enc.decode(extra_ids) == extra_text
    check = {"file": "src/" + sample_rel, "chars": len(sample_text), "text": sample_text, "ids": ids,
             "extra_text": extra_text, "extra_ids": extra_ids,
             "prompt_ids": prompt, "last_logits": [round(v, 5) for v in last], "greedy_ids": seq[len(prompt):]}
    os.makedirs(os.path.join(out, "testdata"), exist_ok=True)
    with open(os.path.join(out, "testdata", "check.json"), "w", encoding="utf-8") as f:
        json.dump(check, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    # Sample output for the card: greedy from a prompt.
    prompt_text = "// Reverse returns"
    seq = enc.encode(prompt_text)
    with torch.no_grad():
        for _ in range(120):
            lg, _ = model(torch.tensor([seq[-args.n_positions:]]))
            seq.append(int(lg[0, -1].argmax()))
    final = history[-1] if history else {}
    stats = {"steps": step, "train_seconds": round(elapsed), "parameters": nparams,
             "batch": args.batch, "context": args.n_positions, "tokens_seen": step * args.batch * args.n_positions,
             "train_tokens": int(len(train_tok)), "val_tokens": int(len(val_tok)), "seed": args.seed,
             "lr": args.lr, "final_train_loss": final.get("train_loss"), "final_val_loss": final.get("val_loss"),
             "history": history, "greedy_sample": {"prompt": prompt_text, "text": enc.decode(seq)},
             "val_packages": list(VAL_PACKAGES)}
    with open(os.path.join(args.work, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    log("export: wrote %s; final train %.4f val %.4f" % (out, final.get("train_loss", float("nan")), final.get("val_loss", float("nan"))))
    log("sample:\n" + enc.decode(seq))


if __name__ == "__main__":
    main()
