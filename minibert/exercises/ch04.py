"""Checks for chapter 04, multi-head attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ExerciseError, expect, not_done, passed


def _forbidden_sdpa(*args, **kwargs):
    raise ExerciseError("Exercise 4.1: the answer calls F.scaled_dot_product_attention, which the exercise forbids.\n"
                        "Hint: write the four steps yourself: q @ k^T, / sqrt(D), mask, softmax, @ v.")


def check_attention(fn) -> None:
    not_done(fn, "4.1")
    gen = torch.Generator().manual_seed(41)
    cases = []  # (what, q, k, v, mask, causal, want): wants from PyTorch's fused attention, computed before the call
    for shape in ((5, 8), (2, 3, 7, 4), (1, 1, 1, 16)):
        q, k, v = (torch.randn(shape, generator=gen) for _ in range(3))
        cases.append((f"for q, k, v of shape {shape}", q, k, v, None, False, F.scaled_dot_product_attention(q, k, v)))
    q, k, v = (torch.randn(3, 2, 5, 4, generator=gen) for _ in range(3))
    # a padding-style boolean mask (B, 1, 1, T), True = keep; sequence 2 is all padding
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)[:, None, None, :]
    want = F.scaled_dot_product_attention(q[:2], k[:2], v[:2], attn_mask=mask[:2])
    want = torch.cat([want, v[2:].mean(dim=-2, keepdim=True).expand(1, 2, 5, 4)])  # all padding: the values' average
    cases.append(("with a boolean padding mask", q, k, v, mask, False, want))
    cases.append(("with causal=True", q, k, v, None, True, F.scaled_dot_product_attention(q, k, v, is_causal=True)))
    both = mask[:2]  # causal and padding together
    cases.append(("with causal=True and a padding mask", q[:2], k[:2], v[:2], both, True,
                  F.scaled_dot_product_attention(q[:2], k[:2], v[:2],
                                                 attn_mask=both & torch.ones(5, 5, dtype=torch.bool).tril())))
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _forbidden_sdpa  # the shortcut the prompt forbids fails loudly
    torch.nn.functional.scaled_dot_product_attention = _forbidden_sdpa
    try:
        results = [fn(q, k, v, mask, causal) for _, q, k, v, mask, causal, _ in cases]
    finally:
        F.scaled_dot_product_attention = original
        torch.nn.functional.scaled_dot_product_attention = original
    for (what, q, k, v, mask, causal, want), have in zip(cases, results):
        expect(isinstance(have, torch.Tensor) and tuple(have.shape) == tuple(want.shape), "4.1",
               f"{what} the result should have shape {tuple(want.shape)}, got "
               f"{tuple(have.shape) if isinstance(have, torch.Tensor) else type(have).__name__}.",
               "softmax(q @ k^T / sqrt(D)) has shape (..., T, T); multiply it by v to get (..., T, D).")
        if mask is not None and not bool(have.isfinite().all()):
            expect(False, "4.1", f"{what} a sequence that is all padding gives NaN or inf.",
                   "mask with torch.finfo(scores.dtype).min, not -inf: a row of -inf has no maximum, and softmax "
                   "gives NaN.")
        err = (have - want).abs().max().item()
        if err > 1e-5 and mask is None and not causal:
            unscaled = (q @ k.transpose(-1, -2)).softmax(-1) @ v
            expect((have - unscaled).abs().max().item() >= 1e-5, "4.1", "the scores are not scaled.",
                   "divide q @ k^T by sqrt(D) = sqrt(q.shape[-1]).")
        if err > 1e-5 and causal:
            future = F.softmax((q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(
                torch.ones(5, 5, dtype=torch.bool).tril(-1), torch.finfo(q.dtype).min), -1) @ v
            expect(mask is not None or (have - future).abs().max().item() >= 1e-5, "4.1",
                   "with causal=True each query sees itself and the keys *after* it: the triangle is the wrong way "
                   "round.", "query i may use keys 0..i: keep the lower triangle (torch.tril), mask the upper one.")
        expect(err < 1e-5, "4.1", f"{what} the result differs from PyTorch's fused attention by {err:.3g}.",
               "mask where the boolean mask is False (scores.masked_fill(~mask, torch.finfo(scores.dtype).min)); "
               "with causal=True also mask every key j > i; then softmax over the last dimension and @ v.")
    passed("4.1")


def check_split_qkv(fn) -> None:
    not_done(fn, "4.2")
    gen = torch.Generator().manual_seed(42)
    for B, T, C, H in ((2, 5, 12, 3), (1, 7, 36, 12), (3, 1, 8, 1), (2, 4, 8, 2)):
        D = C // H
        qkv = torch.randn(B, T, 3 * C, generator=gen)
        have = fn(qkv, H)
        expect(isinstance(have, (tuple, list)) and len(have) == 3, "4.2",
               f"split_qkv should return three tensors (q, k, v), got {type(have).__name__}.",
               "return q, k, v.")
        for name, part, t in zip("qkv", range(3), have):
            expect(isinstance(t, torch.Tensor) and tuple(t.shape) == (B, H, T, D), "4.2",
                   f"{name} of a {(B, T, 3 * C)} input with {H} heads should have shape (B, H, T, D) = {(B, H, T, D)}, "
                   f"got {tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}.",
                   "cut the last dimension into q, k, v of C each, then view each as (B, T, H, D) and transpose(1, 2).")
            for h in range(H):
                cols = slice(part * C + h * D, part * C + (h + 1) * D)  # head h of this part, in the packed vector
                if not torch.equal(t[:, h], qkv[:, :, cols]):
                    interleaved = qkv.view(B, T, H, 3 * D)[:, :, h, part * D:(part + 1) * D]
                    expect(not torch.equal(t[:, h], interleaved), "4.2",
                           f"head {h} of {name} takes its numbers from head {h}'s block of 3D values: that reads the "
                           f"packed vector as [q_h k_h v_h] per head, but it is [q | k | v] (C each).",
                           "split the last dimension into three parts of C first, then split each part into heads.")
                    expect(False, "4.2", f"head {h} of {name} does not hold dimensions {cols.start}..{cols.stop - 1} "
                           f"of the packed (B, T, 3C) input (B, T, C, H) = {(B, T, C, H)}.",
                           "q is qkv[..., :C], k is qkv[..., C:2C], v is qkv[..., 2C:]; view each as (B, T, H, D) "
                           "and transpose(1, 2); a direct view to (B, H, T, D) mixes tokens.")
    passed("4.2")


def check_load_from_mha(fn) -> None:
    not_done(fn, "4.3")
    from minibert.attention import BertSelfAttention, extended_attention_mask
    from minibert.config import BertConfig

    for C, H, impl in ((36, 3, "eager"), (24, 2, "sdpa"), (16, 1, "eager")):
        torch.manual_seed(43 + C)
        mha = nn.MultiheadAttention(C, H, batch_first=True).eval()
        with torch.no_grad():
            mha.in_proj_bias.normal_()  # PyTorch starts these at zero; make a wrong bias copy visible
        sa = BertSelfAttention(BertConfig(hidden_size=C, num_attention_heads=H, intermediate_size=4 * C,
                                          attn_implementation=impl)).eval()
        fn(sa, mha)
        x = torch.randn(2, 5, C)
        keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
        mask = extended_attention_mask(keep) if impl == "eager" else keep.bool()[:, None, None, :]
        with torch.no_grad():
            want, _ = mha(x, x, x, key_padding_mask=keep == 0)
            have = mha.out_proj(sa(x, mask)[0])
        err = (have - want).abs().max().item()
        expect(err < 1e-5, "4.3", f"with C = {C}, {H} head(s) the output differs from nn.MultiheadAttention by {err:.3g}.",
               "in_proj_weight is (3C, C): rows [0, C) are the query, [C, 2C) the key, [2C, 3C) the value weights; "
               "split in_proj_bias the same way, and copy inside torch.no_grad().")
    passed("4.3")


def check_counts(num_scores, block_params) -> None:
    not_done(num_scores, "4.4")
    not_done(block_params, "4.4")
    B, T, C, H = 8, 128, 768, 12
    want_scores = B * H * T * T
    expect(num_scores != B * T * T, "4.4", f"{num_scores:,} counts one table per sequence.",
           "every head computes its own T x T table.")
    expect(num_scores == want_scores, "4.4", f"num_scores = {num_scores:,}, expected a different number.",
           "batch x heads x queries x keys.")
    linear = nn.Linear(C, C)
    want_params = 4 * sum(p.numel() for p in linear.parameters()) + sum(p.numel() for p in nn.LayerNorm(C).parameters())
    expect(block_params != want_params - 2 * C, "4.4", f"{block_params:,} leaves out the LayerNorm.",
           "output.LayerNorm has a weight and a bias of C numbers each.")
    expect(block_params == want_params, "4.4", f"attention_block_params = {block_params:,}, expected a different number.",
           "four C x C Linear layers with biases (query, key, value, output.dense) plus LayerNorm's 2C.")
    passed("4.4")
