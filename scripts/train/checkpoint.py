"""Checkpoints and progress logging shared by the training scripts in scripts/train/.

A checkpoint holds everything a resumed run needs to continue exactly where it stopped: the
model's weights, the optimizer's state, the data-order generator's state, the step, the
evaluation history and the training seconds so far. It is written to a temporary file and
renamed, so an interruption never leaves a torn checkpoint behind.
"""

import json
import os
import time

import torch


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def write_json(path, obj):
    """obj as indented UTF-8 JSON with a final newline (the model cards' metadata files)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def save(path, model, opt, gen, step, history, elapsed):
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                "step": step, "history": history, "elapsed": elapsed}, path + ".tmp")
    os.replace(path + ".tmp", path)


def resume(path, model, opt, gen):
    """Load path into model, opt and gen if it exists; returns (step, history, elapsed seconds),
    (0, [], 0.0) for a fresh run."""
    if not os.path.exists(path):
        return 0, [], 0.0
    st = torch.load(path)
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["opt"])
    gen.set_state(st["gen"])
    log("resumed from %s at step %d (%.0f s of training so far)" % (path, st["step"], st["elapsed"]))
    return st["step"], st["history"], st["elapsed"]
