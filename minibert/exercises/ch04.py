"""Checks for chapter 04, multi-head attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import expect, not_done, passed


def check_attention(fn) -> None:
    not_done(fn, "4.1")
    gen = torch.Generator().manual_seed(41)
    for shape in ((5, 8), (2, 3, 7, 4), (1, 1, 1, 16)):
        q, k, v = (torch.randn(shape, generator=gen) for _ in range(3))
        want = F.scaled_dot_product_attention(q, k, v)  # PyTorch's fused attention, no mask
        have = fn(q, k, v)
        expect(isinstance(have, torch.Tensor) and tuple(have.shape) == tuple(want.shape), "4.1",
               f"for q, k, v of shape {shape} the result should have shape {tuple(want.shape)}, got "
               f"{tuple(have.shape) if isinstance(have, torch.Tensor) else type(have).__name__}.",
               "softmax(q @ k^T / sqrt(D)) has shape (..., T, T); multiply it by v to get (..., T, D).")
        err = (have - want).abs().max().item()
        unscaled = (q @ k.transpose(-1, -2)).softmax(-1) @ v
        if err > 1e-5 and (have - unscaled).abs().max().item() < 1e-5:
            expect(False, "4.1", "the scores are not scaled.", "divide q @ k^T by sqrt(D) = sqrt(q.shape[-1]).")
        expect(err < 1e-5, "4.1", f"for shape {shape} the result differs from F.scaled_dot_product_attention "
               f"by {err:.3g}.", "softmax over the last dimension (the keys), then @ v.")
    # with a padding-style boolean mask: (B, 1, 1, T), True = keep, every row keeps at least one key
    q, k, v = (torch.randn(2, 2, 5, 4, generator=gen) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)[:, None, None, :]
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    have = fn(q, k, v, mask)
    err = (have - want).abs().max().item()
    expect(err < 1e-5, "4.1", f"with a boolean mask the result differs from F.scaled_dot_product_attention by {err:.3g}.",
           "where mask is False, replace the score with torch.finfo(scores.dtype).min before the softmax "
           "(scores.masked_fill(~mask, ...)).")
    passed("4.1")


def check_heads(split_heads, merge_heads) -> None:
    not_done(split_heads, "4.2")
    not_done(merge_heads, "4.2")
    gen = torch.Generator().manual_seed(42)
    for B, T, C, H in ((2, 5, 12, 3), (1, 7, 36, 12), (3, 1, 8, 1)):
        D = C // H
        x = torch.randn(B, T, C, generator=gen)
        s = split_heads(x, H)
        expect(isinstance(s, torch.Tensor) and tuple(s.shape) == (B, H, T, D), "4.2",
               f"split_heads of a {(B, T, C)} tensor with {H} heads should give (B, H, T, D) = {(B, H, T, D)}, got "
               f"{tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}.",
               "view as (B, T, H, D), then transpose(1, 2).")
        for h in range(H):
            # head h owns dimensions h*D .. (h+1)*D - 1 of every token
            expect(torch.equal(s[:, h], x[:, :, h * D:(h + 1) * D]), "4.2",
                   f"head {h} does not hold dimensions {h * D}..{(h + 1) * D - 1} of each token (B, T, C) = {(B, T, C)}.",
                   "reshape to (B, T, H, D) first and transpose afterwards; a direct view to (B, H, T, D) mixes tokens.")
        y = torch.randn(B, H, T, D, generator=gen)
        m = merge_heads(y)
        want = torch.cat([y[:, h] for h in range(H)], dim=-1)  # (B, T, H*D): heads side by side
        expect(isinstance(m, torch.Tensor) and tuple(m.shape) == (B, T, C), "4.2",
               f"merge_heads of a {(B, H, T, D)} tensor should give (B, T, C) = {(B, T, C)}, got "
               f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__}.",
               "transpose(1, 2) back to (B, T, H, D), then reshape to (B, T, H * D).")
        expect(torch.equal(m, want), "4.2", "merge_heads puts the heads' values in the wrong places.",
               "transpose before reshaping; use .reshape (not .view) after a transpose.")
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
