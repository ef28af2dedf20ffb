"""Checks for chapter 09, real weights."""

from __future__ import annotations

from . import expect, not_done, passed


def check_mean_pool(fn) -> None:
    """9.1: masked mean over tokens, then unit length. Compared with a per-sentence slice and a norm."""
    not_done(fn, "9.1")
    import torch

    g = torch.Generator().manual_seed(8)
    hidden = torch.randn(3, 5, 4, generator=g) * 3 + 1  # (B, T, C), far from unit length
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    have = fn(hidden, mask)
    expect(isinstance(have, torch.Tensor) and tuple(have.shape) == (3, 4), "9.1",
           f"expected a (3, 4) tensor for hidden (3, 5, 4) and mask (3, 5), got "
           f"{tuple(have.shape) if isinstance(have, torch.Tensor) else type(have).__name__}.",
           "sum over the token dimension (dim=1), so that one vector per sentence is left.")
    for i in range(3):
        n = int(mask[i].sum())
        mean = hidden[i, :n].mean(dim=0)  # only the real tokens; the padding sits at the end
        want = mean / mean.norm()
        if not torch.allclose(have[i], want, atol=1e-5):
            unmasked = hidden[i].mean(dim=0)
            if torch.allclose(have[i], unmasked / unmasked.norm(), atol=1e-5):
                problem, hint = (f"sentence {i} has {5 - n} padding positions, and your mean includes them.",
                                 "multiply by the mask (as floats, shape (B, T, 1)) and divide by the number of "
                                 "real tokens, not by T.")
            elif torch.allclose(have[i], mean, atol=1e-5):
                problem, hint = ("the mean is right but not scaled to length 1.",
                                 "divide each row by its L2 norm (torch.linalg.vector_norm or F.normalize).")
            else:
                problem, hint = (f"sentence {i}: expected {[round(float(x), 4) for x in want]}, got "
                                 f"{[round(float(x), 4) for x in have[i]]}.",
                                 "(hidden * mask).sum(1) / mask.sum(1), then divide by the norm.")
            expect(False, "9.1", problem, hint)
    passed("9.1")


def check_diff(fn) -> None:
    """9.2: missing keys, unexpected keys and shape mismatches between two state dicts, found by set arithmetic."""
    not_done(fn, "9.2")
    import torch

    def sd(**shapes):
        return {name.replace("__", "."): torch.zeros(shape) for name, shape in shapes.items()}

    model = sd(a__weight=(4, 3), a__bias=(4,), b__weight=(2, 4), b__bias=(2,), norm__weight=(2,))
    cases = [
        ("identical", dict(model)),
        ("a key removed", {k: v for k, v in model.items() if k != "b.bias"}),
        ("an extra key", {**model, "cls.bias": torch.zeros(5)}),
        ("a wrong shape", {**model, "a.weight": torch.zeros(3, 4)}),
        ("all three", {**{k: v for k, v in model.items() if k != "norm.weight"}, "b.bias": torch.zeros(3),
                       "pooler.dense.weight": torch.zeros(2, 2)}),
    ]
    for label, checkpoint in cases:
        want = (sorted(model.keys() - checkpoint.keys()), sorted(checkpoint.keys() - model.keys()),
                sorted(k for k in model.keys() & checkpoint.keys() if model[k].shape != checkpoint[k].shape))
        have = fn(model, checkpoint)
        expect(isinstance(have, (tuple, list)) and len(have) == 3, "9.2",
               f"expected a tuple (missing, unexpected, mismatched), got {have!r:.100}.",
               "return three sorted lists of key names.")
        have = tuple(sorted(part) for part in have)
        for name, h, w in zip(("missing", "unexpected", "mismatched"), have, want):
            hint = {"missing": "missing = in the model's state dict but not in the checkpoint.",
                    "unexpected": "unexpected = in the checkpoint but not in the model.",
                    "mismatched": "mismatched = in both, but tensor.shape differs."}[name]
            expect(h == w, "9.2", f"case '{label}': {name} should be {w}, got {h}.", hint)
    passed("9.2")


def check_most_similar(fn) -> None:
    """9.3: the row of a matrix with the highest cosine similarity to a query, vectors not normalised."""
    not_done(fn, "9.3")
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        matrix = torch.randn(7, 6, generator=g) * torch.rand(7, 1, generator=g) * 10  # rows of different lengths
        query = torch.randn(6, generator=g)
        want = int(F.cosine_similarity(matrix, query[None, :], dim=-1).argmax())
        have = fn(query, matrix)
        have = int(have) if isinstance(have, (int, torch.Tensor)) and torch.as_tensor(have).numel() == 1 else have
        if have != want and have == int((matrix @ query).argmax()):
            expect(False, "9.3", "you picked the largest dot product; the rows here do not have length 1, so a "
                   "long row wins even when it points elsewhere.",
                   "divide each row and the query by their norms first (F.normalize), then take argmax.")
        expect(have == want, "9.3", f"trial {trial}: the most similar row is {want}, you returned {have!r}.",
               "cosine(a, b) = a·b / (|a| |b|); return the index of the largest one as an int.")
    passed("9.3")
