"""Checks for chapter 10, FLOPs and speed.

Every expected value comes from torch.utils.flop_counter.FlopCounterMode counting a real pass of a model
(forward, or forward and backward, on the meta device, where shapes exist but numbers do not; packed_forward
on small CPU tensors, since it reads the mask's values), never from the chapter's formulas.
"""

from __future__ import annotations

import numbers

import torch
import torch.utils.flop_counter as flop_counter
from torch.utils.flop_counter import FlopCounterMode

from . import ExerciseError, expect, not_done, passed
from .ch03 import forbidding
from .ch05 import _watching_qualnames


def _no_counting(*args, **kwargs):
    raise ExerciseError("Exercise 10.3: the answer counts FLOPs with FlopCounterMode, as the check does; the "
                        "exercise asks for them from the shapes.\nHint: count the matrix products packed_layer and "
                        "the pooler perform, with arithmetic on C, F, L, the lengths and seq_len.")


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


def check_crossover(value) -> None:
    not_done(value, "10.1")
    # per-token FLOPs of one BERT-large layer are dense + slope*T; read both off the counter at T = 1 and 2
    one, two = _counted(1024, 4096, 1, 1, 1), _counted(1024, 4096, 1, 1, 2) // 2
    slope = two - one
    want = (one - slope) / slope
    expect(isinstance(value, numbers.Real) and not isinstance(value, bool), "10.1",
           f"expected a number of tokens, got {type(value).__name__}.", "crossover_large = <a number>.")
    hint = "solve 4*T*C = 8*C*C + 4*C*F for T, with BERT-large's C and F."
    if value == 2 * want:
        hint = "that is where a causal model's 2*T*C would equal the weights; BERT's tokens attend to all T: 4*T*C."
    # No "too many"/"too few": a direction would let a student find the number by halving guesses.
    expect(value == want, "10.1", f"{value} tokens is not where attention equals the weights.", hint)
    passed("10.1")


def _counted_training(hidden: int, intermediate: int, layers: int, batch: int, seq: int, pooler: bool = True) -> int:
    """FLOPs FlopCounterMode sees in a forward and backward pass of an eager encoder (+ pooler) on meta tensors."""
    from minibert.config import BertConfig
    from minibert.model import BertEncoder, BertPooler

    heads = next(h for h in (16, 12, 8, 4, 2, 1) if hidden % h == 0)
    config = BertConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                        num_attention_heads=heads, max_position_embeddings=max(512, seq),
                        attn_implementation="eager")
    with torch.device("meta"):
        encoder, head = BertEncoder(config), BertPooler(config)
        x = torch.empty(batch, seq, hidden, requires_grad=True)  # the embeddings' output needs a gradient too
    with FlopCounterMode(display=False) as counter:
        out, _, _ = encoder(x)
        (head(out) if pooler else out).sum().backward()
    return counter.get_total_flops()


def check_pretraining_days(fn) -> None:
    not_done(fn, "10.2")
    from minibert.config import BertConfig

    cases = ((768, 3072, 12, 256, 512, 1_000_000, 989e12, 0.4), (64, 256, 2, 8, 16, 1000, 1e9, 0.5),
             (96, 200, 3, 5, 7, 123_456, 19.5e12, 0.25))
    for C, F, L, batch, seq, steps, peak, utilisation in cases:
        config = BertConfig(hidden_size=C, intermediate_size=F, num_hidden_layers=L,
                            num_attention_heads=next(h for h in (12, 4, 3) if C % h == 0))
        want = steps * _counted_training(C, F, L, batch, seq) / (peak * utilisation) / 86400
        no_pooler = steps * _counted_training(C, F, L, batch, seq, pooler=False) / (peak * utilisation) / 86400
        have = fn(config, steps, batch, seq, peak, utilisation)
        expect(isinstance(have, (int, float)) and not isinstance(have, bool), "10.2",
               f"expected a number of days, got {type(have).__name__}.", "return a float.")
        ratio = have / want
        hints = {1 / 3: "you counted the forward pass only; the backward pass costs twice the forward.",
                 2 / 3: "the backward pass computes two products per forward product, not one.",
                 24.0: "that is hours: a day has 86,400 seconds.", utilisation: "divide by peak × utilisation: "
                 "the hardware reaches only that fraction of its peak."}
        hint = next((h for r, h in hints.items() if abs(ratio - r) < 1e-6 * r), "steps × FLOPs of one training step "
                    "(3 × the forward, pooler included) / (peak × utilisation) / seconds per day.")
        if abs(have / no_pooler - 1) < 1e-9:
            hint = "you left out the pooler: its C x C product per sequence, forward and backward, is part of the step."
        expect(abs(ratio - 1) < 1e-9, "10.2", f"pretraining_days(C={C}, L={L}, steps={steps:,}, batch={batch}, "
               f"seq_len={seq}, peak={peak:g}, utilisation={utilisation}) returned {have:.9g}, expected {want:.9g}.", hint)
    passed("10.2")


def _counted_packed(lengths: list[int], seq: int, hidden: int, intermediate: int, layers: int) -> int:
    """FLOPs FlopCounterMode sees in packed_forward of an eager model with random weights on real CPU tensors."""
    from minibert.config import BertConfig
    from minibert.model import BertModel
    from minibert.packed import packed_forward

    config = BertConfig(vocab_size=50, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                        num_attention_heads=2, max_position_embeddings=max(64, seq), attn_implementation="eager")
    with torch.random.fork_rng(devices=[]):  # leaves the learner's random stream as it was
        torch.manual_seed(0)
        model = BertModel(config).eval()
        mask = (torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)
        ids = torch.randint(1, 50, (len(lengths), seq)) * mask
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        packed_forward(model, ids, mask)
    return counter.get_total_flops()


def check_packed_flops(fn) -> None:
    not_done(fn, "10.3")
    from minibert.config import BertConfig
    from minibert.flops import forward_flops

    # the second case is padded past its longest sequence: attention runs over seq_len, not max(lengths)
    for lengths, seq, C, F, L in (([12, 5, 3], 12, 32, 80, 2), ([7, 2, 4], 10, 24, 56, 2),
                                  ([40, 40, 1, 17], 40, 48, 64, 3), ([9, 9], 9, 16, 40, 1)):
        config = BertConfig(vocab_size=50, hidden_size=C, intermediate_size=F, num_hidden_layers=L,
                            num_attention_heads=2, max_position_embeddings=64)
        want = _counted_packed(lengths, seq, C, F, L)
        # counting a run is the check's way, not the answer: FlopCounterMode refused, packed_forward watched
        with forbidding(fn, [(flop_counter, "FlopCounterMode")], _no_counting), \
                _watching_qualnames("packed_forward", "packed_layer") as ran:
            have = fn(config, lengths, seq)
        expect(not ran[0], "10.3", "the answer runs packed_forward (or packed_layer) to count its FLOPs; the "
               "exercise asks for them from the shapes.", "count the matrix products packed_layer and the pooler "
               "perform, with arithmetic on C, F, L, the lengths and seq_len.")
        hint = "read packed_layer: which products run on every position of the padded (B, seq_len) grid, and which " \
               "on the real tokens only? Count each with the chapter's FLOPs per token, then add the pooler."
        if have == sum(forward_flops(config, 1, n) for n in lengths) and have != want:
            hint = "that is what the real tokens need; packed_forward still runs q/k/v and attention on the padded grid."
        elif have == forward_flops(config, len(lengths), seq) and have != want:
            hint = "that is the padded forward; packed_forward skips the output projection and feed-forward at padding."
        expect(have == want, "10.3", f"packed_flops(C={C}, F={F}, L={L}, lengths={lengths}, seq_len={seq}) returned "
               f"{have}, FlopCounterMode counts {want}.", hint)
    passed("10.3")
