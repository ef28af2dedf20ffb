"""Checks for chapter 10, FLOPs and speed.

Every expected value comes from torch.utils.flop_counter.FlopCounterMode counting a real forward pass of
a model built on the meta device (shapes only, so counting costs nothing), never from the chapter's formula.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import expect, not_done, passed


def _counted(hidden: int, intermediate: int, layers: int, batch: int, seq: int, pooler: bool = False) -> int:
    """FLOPs FlopCounterMode sees in an eager-attention encoder (and pooler) of this shape on meta tensors."""
    from minibert.config import BertConfig
    from minibert.model import BertEncoder, BertPooler

    heads = next(h for h in (16, 12, 8, 4, 2, 1) if hidden % h == 0)
    config = BertConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                        num_attention_heads=heads, max_position_embeddings=max(512, seq),
                        attn_implementation="eager")
    with torch.device("meta"):
        encoder = BertEncoder(config).eval()
        head = BertPooler(config) if pooler else None
        x = torch.empty(batch, seq, hidden)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out, _, _ = encoder(x)
        if head is not None:
            head(out)
    return counter.get_total_flops()


def check_layer_flops(fn) -> None:
    not_done(fn, "10.1")
    for C, F, T in ((64, 256, 1), (64, 256, 16), (96, 200, 7), (768, 3072, 128)):
        want = _counted(C, F, 1, 1, T) // T  # one layer, one sequence of T tokens, per token
        have = fn(C, F, T)
        expect(have == want, "10.1", f"layer_flops({C}, {F}, {T}) returned {have}, FlopCounterMode counts {want}.",
               "2 FLOPs per weight: 4 C x C matrices and 2 C x F ones, plus 4*T*C for attention "
               "(Q·Kᵀ and the weighted sum of V, 2*T*C each).")
    passed("10.1")


def check_crossover(value) -> None:
    not_done(value, "10.2")
    # per-token FLOPs of one BERT-large layer are dense + slope*T; read both off the counter at T = 1 and 2
    one, two = _counted(1024, 4096, 1, 1, 1), _counted(1024, 4096, 1, 1, 2) // 2
    slope = two - one
    want = (one - slope) / slope
    expect(isinstance(value, (int, float)) and not isinstance(value, bool), "10.2",
           f"expected a number of tokens, got {type(value).__name__}.", "crossover_large = <a number>.")
    expect(value == want, "10.2", f"{value} tokens is not where attention equals the weights (the counter says {want:g}).",
           "solve 4*T*C = 8*C*C + 4*C*F for T.")
    passed("10.2")


def check_useful_fraction(fn) -> None:
    not_done(fn, "10.3")
    from minibert.config import BertConfig

    config = BertConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2)
    for lengths, seq in (([16, 16], 16), ([5, 12, 3], 12)):
        spent = _counted(64, 256, 2, len(lengths), seq, pooler=True)
        useful = sum(_counted(64, 256, 2, 1, n, pooler=True) for n in lengths)
        want = useful / spent
        have = fn(config, lengths, seq)
        expect(isinstance(have, (int, float)) and abs(have - want) < 1e-9, "10.3",
               f"useful_fraction(config, {lengths}, {seq}) returned {have}, expected {want:.6f}.",
               "divide the sum of forward_flops(config, 1, n) over the lengths by forward_flops(config, len(lengths), seq_len).")
    passed("10.3")
