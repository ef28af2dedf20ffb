"""Checks for chapter 07, counting parameters."""

from __future__ import annotations

import math

from . import expect, not_done, passed


def _encoder_layer_numel(d: int, f: int) -> int:
    # torch's own encoder layer has the same parts as BERT's (q, k, v and output projections, two linear
    # layers, two LayerNorms), stored differently: an independent count built on the meta device.
    import torch
    from torch import nn

    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(d, nhead=1, dim_feedforward=f)
    return sum(p.numel() for p in layer.parameters())


def check_layer_parameters(fn) -> None:
    not_done(fn, "7.1")
    for d, f in ((768, 3072), (1024, 4096), (4, 7), (1, 1)):
        want = _encoder_layer_numel(d, f)
        have = fn(d, f)
        weights_only = 4 * d * d + 2 * d * f + 4 * d
        hint = ("count the biases: every Linear(i, o) has o of them (four in attention, f + d in the feed-forward)."
                if have == weights_only else
                "attention: 4 Linear(d, d); feed-forward: Linear(d, f) and Linear(f, d); plus two LayerNorms of 2d.")
        expect(have == want, "7.1", f"layer_parameters({d}, {f}) returned {have!r}, expected {want:,}.", hint)
    passed("7.1")


def _base_like(V: int, P: int = 512, T: int = 2, d: int = 768, f: int = 3072, L: int = 12) -> tuple[int, int]:
    """(encoder without pooler, pooler), by plain arithmetic."""
    embeddings = V * d + P * d + T * d + 2 * d
    per_layer = (3 * (d * d + d) + (d * d + d) + 2 * d) + ((d * f + f) + (f * d + d) + 2 * d)
    return embeddings + L * per_layer, d * d + d


def check_colleague_total(answer) -> None:
    not_done(answer, "7.2")
    want, pooler = _base_like(50_000)
    expect(answer != want + pooler, "7.2", f"{answer!r} includes the pooler.",
           "the colleague's model has no pooler: leave out its d² + d.")
    expect(answer != 30522 * 768 + want - 50_000 * 768, "7.2", f"{answer!r} is BERT-base's vocabulary (30,522).",
           "the word-embedding table has one row of d = 768 per token: 50,000 rows here.")
    expect(answer == want, "7.2", f"got {answer!r}, expected a different number of parameters.",
           "embeddings V·d + P·d + T·d + 2d, plus L · (4d² + 2·d·f + 9d + f); no pooler.")
    passed("7.2")


def check_adam_training_gib(fn) -> None:
    not_done(fn, "7.3")
    for n in (1, 1_000_000, 109_482_240, 335_141_888):
        want = n * 16 / 2**30  # 4 float32 numbers per parameter
        have = fn(n)
        expect(isinstance(have, (int, float)), "7.3", f"adam_training_gib({n}) returned {have!r}, not a number.",
               "return the size in GiB as a float.")
        if math.isclose(have, n * 16 / 1e9, rel_tol=1e-9):
            hint = "a GiB is 2**30 bytes, not 10**9."
        elif math.isclose(have, n * 12 / 2**30, rel_tol=1e-9) or math.isclose(have, n * 8 / 2**30, rel_tol=1e-9):
            hint = "count four numbers per parameter: the weight, its gradient and Adam's two moments."
        else:
            hint = "4 numbers per parameter × 4 bytes each (float32), divided by 2**30."
        expect(math.isclose(have, want, rel_tol=1e-9), "7.3",
               f"adam_training_gib({n:,}) returned {have!r}, expected {want:.6f}.", hint)
    passed("7.3")


def check_max_layers(max_layers) -> None:
    not_done(max_layers, "7.4")
    encoder_no_layers, pooler = _base_like(30522, d=512, f=2048, L=0)
    per_layer = _base_like(30522, d=512, f=2048, L=1)[0] - encoder_no_layers
    fixed = encoder_no_layers + pooler
    want = (50_000_000 - 1 - fixed) // per_layer  # the largest L with fixed + L · per_layer < 50M
    expect(isinstance(max_layers, int) and not isinstance(max_layers, bool), "7.4",
           f"max_layers should be a whole number of layers, got {max_layers!r}.", "store an int.")
    expect(max_layers == want, "7.4",
           f"max_layers = {max_layers}: that gives {fixed + max_layers * per_layer:,} parameters.",
           f"the embeddings and pooler take {fixed:,}; each layer adds {per_layer:,}; stay under 50,000,000.")
    passed("7.4")
