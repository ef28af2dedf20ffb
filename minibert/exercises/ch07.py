"""Checks for chapter 07, counting parameters."""

from __future__ import annotations

import contextlib
import os
import sys

from . import ExerciseError, expect, not_done, passed


def _mqa_layer_numel(C: int, F: int, H: int) -> int:
    # The layer's modules built on the meta device and counted by torch: an independent count, not a formula.
    import torch
    from torch import nn

    D = C // H
    with torch.device("meta"):
        layer = nn.ModuleList([nn.Linear(C, C), nn.Linear(C, D), nn.Linear(C, D), nn.Linear(C, C), nn.LayerNorm(C),
                               nn.Linear(C, F), nn.Linear(F, C), nn.LayerNorm(C)])
    return sum(p.numel() for p in layer.parameters())


def check_mqa_layer_parameters(fn) -> None:
    not_done(fn, "7.1")
    for C, F, H in ((768, 3072, 12), (1024, 4096, 16), (384, 1536, 6), (12, 7, 3), (8, 5, 1)):
        want, have = _mqa_layer_numel(C, F, H), fn(C, F, H)
        expect(isinstance(have, int) and not isinstance(have, bool), "7.1",
               f"mqa_layer_parameters({C}, {F}, {H}) returned {have!r}, not a whole number of parameters.",
               "D = C // H is a whole number of features (C / H is a float): count with ints.")
        D = C // H
        bert = 4 * C * C + 2 * C * F + 9 * C + F
        if have == bert and H > 1:
            hint = "that is BERT's layer: here key and value are one head wide, Linear(C, D) with D = C / H."
        elif have == want - 2 * D:
            hint = "count the biases of the key and value projections: D each."
        elif have == want - 2 * C * D + 2 * C * H:
            hint = "key and value have D = C / H output features, not H."
        else:
            hint = ("query and output dense: Linear(C, C); key and value: Linear(C, D), D = C / H; feed-forward: "
                    "Linear(C, F) and Linear(F, C); two LayerNorms of 2C; every Linear has a bias.")
        expect(have == want, "7.1", f"mqa_layer_parameters({C}, {F}, {H}) returned {have!r}, expected {want:,}.", hint)
    passed("7.1")


def _refusal(exercise: str) -> ExerciseError:
    return ExerciseError(f"Exercise {exercise}: this exercise asks for the count from the formulas: the answer called "
                         "count_parameters (or a helper of it, or the calculator's code), built or counted a model, or "
                         "ran another program, which the exercise forbids.\n"
                         "Hint: add up the formulas of the chapter's table with plain arithmetic.")


def _refuser(exercise: str, refused: list):
    def refuse(*args, **kwargs):
        refused.append("a forbidden name")
        raise _refusal(exercise)
    return refuse


def _files_of(*modules) -> set[str]:
    return {os.path.realpath(m.__file__) for m in modules}


@contextlib.contextmanager
def _no_calls_into(files: set[str], exercise: str, refused: list):
    """While the block runs, a call to any Python function defined in `files` raises the refusal: whatever name,
    alias, default argument or reloaded copy of the module the answer reaches it by. Each refusal is noted in
    `refused`, so that one the answer catches still fails the check afterwards."""
    seen: dict[str, bool] = {}

    def hook(frame, event, arg):
        if event != "call":
            return
        name = frame.f_code.co_filename
        if name not in seen:
            seen[name] = os.path.realpath(name) in files
        if seen[name]:
            refused.append(name)
            raise _refusal(exercise)

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield
    finally:
        sys.setprofile(previous)


@contextlib.contextmanager
def _by_formula_only(fn, exercise: str):
    """count_parameters and its helpers (under any name the answer can reach them by, reloaded copies included),
    the calculator's code, building or counting any torch module (minibert's or transformers'), and starting another
    program (such as `minibert params` in a subprocess) all fail."""
    import subprocess

    import torch.nn.modules.module
    from torch import nn

    from .. import params
    from .ch03 import forbidding

    targets = [(nn.Module, "parameters"), (nn.Module, "named_parameters"), (os, "system")]
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("minibert"):
            targets += [(module, name) for name in ("count_parameters", "encoder_breakdown") if hasattr(module, name)]
    named = ("count_parameters", "encoder_breakdown", "parameter_calculator", "layer_formula", "numel")
    files = _files_of(params, torch.nn.modules.module, subprocess)
    files.add(os.path.join(os.path.dirname(os.path.realpath(params.__file__)), "widgets.py"))
    refused: list = []
    with forbidding(fn, targets, _refuser(exercise, refused), named=named), _no_calls_into(files, exercise, refused):
        yield
    if refused:  # the answer caught a refusal and carried on
        raise _refusal(exercise)


def _bert_model(V: int, P: int, S: int, C: int, F: int, L: int) -> tuple[int, int]:
    """(BertModel without the pooler, the pooler), by plain arithmetic."""
    embeddings = V * C + P * C + S * C + 2 * C
    per_layer = (3 * (C * C + C) + (C * C + C) + 2 * C) + ((C * F + F) + (F * C + C) + 2 * C)
    return embeddings + L * per_layer, C * C + C


def check_colleague_parameters(fn) -> None:
    not_done(fn, "7.2")
    for V in (50_000, 30_522, 1, 250_000):
        want, pooler = _bert_model(V, 512, 2, 768, 3072, 12)
        with _by_formula_only(fn, "7.2"):
            have = fn(V)
        expect(have != want + pooler, "7.2", f"colleague_parameters({V:,}) = {have!r} includes the pooler.",
               "the colleague's model has no pooler: leave out its C² + C.")
        expect(V == 30_522 or have != _bert_model(30_522, 512, 2, 768, 3072, 12)[0], "7.2",
               f"colleague_parameters({V:,}) = {have!r} is BERT-base's vocabulary (30,522), whatever V is.",
               "the word-embedding table has one row of C = 768 per token: V rows.")
        expect(have == want, "7.2", f"colleague_parameters({V:,}) returned {have!r}, expected {want:,}.",
               "the chapter's table: the embeddings row with V rows of words, plus L times the layer's row; no pooler.")
    passed("7.2")


def check_largest_trainable(fn) -> None:
    not_done(fn, "7.3")
    for gib in (16, 80, 24, 1.5, 1):
        want = int(gib * 2**30) // 16  # 4 float32 numbers per parameter: weight, gradient, 2 moments
        have = fn(gib)
        expect(isinstance(have, int) and not isinstance(have, bool), "7.3",
               f"largest_trainable({gib}) returned {have!r}, not a whole number of parameters.",
               "round down to an int: a model cannot have part of a parameter.")
        if have == int(gib * 10**9) // 16:
            hint = "a GiB is 2**30 bytes, not 10**9."
        elif have in (int(gib * 2**30) // 4, int(gib * 2**30) // 8, int(gib * 2**30) // 12):
            hint = "count four numbers per parameter: the weight, its gradient and Adam's two moments, 4 bytes each."
        elif have == want + 1:
            hint = "round down: one more parameter no longer fits."
        else:
            hint = "the bytes available divided by the bytes each parameter needs in training, as a whole number."
        expect(have == want, "7.3", f"largest_trainable({gib}) returned {have:,}, expected {want:,}.", hint)
    passed("7.3")


def check_max_layers(fn) -> None:
    not_done(fn, "7.4")
    cases = [(50_000_000, 30_522, 512, 2, 512, 2048), (110_000_000, 30_522, 512, 2, 768, 3072),
             (10**12, 30_522, 512, 2, 1024, 4096), (1_000_000, 30_522, 512, 2, 768, 3072)]
    no_layers, pooler = _bert_model(30_522, 512, 2, 768, 3072, 0)
    one_layer = _bert_model(30_522, 512, 2, 768, 3072, 1)[0] - no_layers
    cases.append((no_layers + pooler + 5 * one_layer, 30_522, 512, 2, 768, 3072))  # exactly 5 layers: not under
    for budget, V, P, S, C, F in cases:
        fixed = sum(_bert_model(V, P, S, C, F, 0))
        per_layer = _bert_model(V, P, S, C, F, 1)[0] - _bert_model(V, P, S, C, F, 0)[0]
        want = max(0, (budget - 1 - fixed) // per_layer)  # the largest L with fixed + L · per_layer < budget
        with _by_formula_only(fn, "7.4"):
            have = fn(budget, V, P, S, C, F)
        call = f"max_layers({budget:,}, {V:,}, {P}, {S}, {C}, {F})"
        expect(isinstance(have, int) and not isinstance(have, bool), "7.4",
               f"{call} should be a whole number of layers, got {have!r}.", "return an int.")
        if have == want + 1 and fixed + have * per_layer == budget:
            hint = "the model must stay under the budget: exactly the budget is one layer too many."
        elif have < 0:
            hint = "when the embeddings and the pooler alone reach the budget, no layer fits: 0."
        else:
            hint = (f"the embeddings and the pooler take {fixed:,}; each layer adds {per_layer:,}; stay under "
                    f"{budget:,}.")
        expect(have == want, "7.4", f"{call} = {have!r}: that gives {fixed + have * per_layer:,} parameters.", hint)
    passed("7.4")
