"""Checks for chapter 01, residual add & norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import expect, not_done, passed


def _close(a, b, tol: float = 1e-5) -> bool:
    a = torch.as_tensor(a)
    return a.shape == b.shape and bool(torch.isfinite(a).all()) and (a - b).abs().max().item() < tol


def check_layer_norm(fn) -> None:
    not_done(fn, "1.1")
    g = torch.Generator().manual_seed(11)
    for shape, eps in [((5, 8), 1e-5), ((2, 3, 16), 1e-12), ((4,), 1e-5)]:
        C = shape[-1]
        x = torch.randn(shape, generator=g) * 3 + 2
        weight, bias = torch.randn(C, generator=g), torch.randn(C, generator=g)
        want = F.layer_norm(x, (C,), weight, bias, eps)
        have = fn(x.clone(), weight, bias, eps)
        expect(have is not None, "1.1", "layer_norm returned None.", "return the normalised tensor.")
        have = torch.as_tensor(have)
        expect(have.shape == want.shape, "1.1", f"for an input of shape {tuple(shape)} the output has shape "
               f"{tuple(have.shape)}.", "normalise over the last dimension and keep every dimension "
               "(mean(dim=-1, keepdim=True)).")
        if _close(have, want):
            continue
        mean = x.mean(-1, keepdim=True)
        unbiased = (x - mean) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias
        no_affine = F.layer_norm(x, (C,), eps=eps)
        outside = (x - mean) / (x.std(-1, correction=0, keepdim=True) + eps) * weight + bias
        expect(not _close(have, outside, 1e-6), "1.1", "eps is outside the square root.",
               "divide by torch.sqrt(var + eps), not by std + eps.")
        if x.dim() > 1:
            m0 = x.mean(0, keepdim=True)
            dim0 = (x - m0) / torch.sqrt(((x - m0) ** 2).mean(0, keepdim=True) + eps) * weight + bias
            expect(not _close(have, dim0), "1.1", "you normalised over the first dimension (across the batch).",
                   "LayerNorm normalises each vector over its last dimension: mean(dim=-1, keepdim=True).")
        expect(not _close(have, unbiased), "1.1", "you used the unbiased variance (divide by C - 1).",
               "LayerNorm divides by C: ((x - mean) ** 2).mean(-1), or x.var(-1, correction=0).")
        expect(not _close(have, no_affine), "1.1", "weight and bias are not applied.",
               "multiply the normalised x by weight, then add bias.")
        expect(False, "1.1", f"for shape {tuple(shape)}, eps={eps:g} the result differs from F.layer_norm by "
               f"{(have - want).abs().max().item():.3g}.",
               "mean and variance over the last dimension, (x - mean) / sqrt(var + eps) * weight + bias.")
    # eps must sit inside the root: it decides the result for a token whose variance is below eps
    quiet = torch.randn(3, 8, generator=g) * 1e-3
    have = torch.as_tensor(fn(quiet.clone(), torch.ones(8), torch.zeros(8), 1e-5))
    expect(_close(have, F.layer_norm(quiet, (8,), eps=1e-5)), "1.1",
           "for a token with tiny variance (about 1e-6, below eps = 1e-5) the result is wrong.",
           "eps goes inside the square root: torch.sqrt(var + eps).")
    flat = torch.full((2, 8), 3.0)
    have = torch.as_tensor(fn(flat.clone(), torch.ones(8), torch.arange(8.0), 1e-12))
    expect(bool(torch.isfinite(have).all()), "1.1", "a token whose values are all equal gives NaN or inf.",
           "add eps to the variance before the square root, so the division is never by zero.")
    expect(_close(have, torch.arange(8.0).expand(2, 8)), "1.1",
           "a token whose values are all equal should come out as exactly `bias`.",
           "(x - mean) is zero there; the result is 0 * weight + bias.")
    passed("1.1")


def check_add_norm(fn) -> None:
    not_done(fn, "1.2")
    g = torch.Generator().manual_seed(12)
    x, s = torch.randn(2, 5, 16, generator=g) * 3, torch.randn(2, 5, 16, generator=g)
    norm = nn.LayerNorm(16, eps=1e-12)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, generator=g))
        norm.bias.copy_(torch.randn(16, generator=g))
    dropout = nn.Dropout(0.1).eval()
    with torch.no_grad():
        have = fn(x, s, norm, dropout)
        want = F.layer_norm(x + s, (16,), norm.weight, norm.bias, 1e-12)
        seed003 = x + F.layer_norm(s, (16,), norm.weight, norm.bias, 1e-12)
    expect(have is not None, "1.2", "add_norm returned None.", "return the normalised sum.")
    have = torch.as_tensor(have)
    expect(not _close(have, seed003), "1.2", "this is still seed 003's order: the branch is normalised "
           "before the add.", "add first, then normalise the sum: norm(x + ...).")
    expect(_close(have, want), "1.2", "with dropout off the result is not LayerNorm(x + sublayer_out).",
           "return norm(x + dropout(sublayer_out)).")
    # In training, dropout may only touch the branch: with a zero branch the output is norm(x) exactly.
    dropout.train()
    with torch.no_grad():
        have = torch.as_tensor(fn(x, torch.zeros_like(s), norm, dropout))
        want = F.layer_norm(x, (16,), norm.weight, norm.bias, 1e-12)
    expect(_close(have, want), "1.2", "in training mode, dropout reaches the identity path x.",
           "apply dropout to sublayer_out only, before the add; never to x or to the sum.")
    passed("1.2")


def check_pre_ln_step(fn) -> None:
    not_done(fn, "1.3")
    g = torch.Generator().manual_seed(13)
    sublayer = nn.Linear(16, 16)
    norm = nn.LayerNorm(16)
    with torch.no_grad():
        sublayer.weight.copy_(torch.randn(16, 16, generator=g))
        sublayer.bias.copy_(torch.randn(16, generator=g))
        norm.weight.copy_(torch.randn(16, generator=g))
        norm.bias.copy_(torch.randn(16, generator=g))
        x = torch.randn(3, 4, 16, generator=g) * 5 + 2
        ln_x = F.layer_norm(x, (16,), norm.weight, norm.bias, norm.eps)
        want = x + (ln_x @ sublayer.weight.T + sublayer.bias)
        post = F.layer_norm(x + (x @ sublayer.weight.T + sublayer.bias), (16,), norm.weight, norm.bias, norm.eps)
        have = fn(x, sublayer, norm)
    expect(have is not None, "1.3", "pre_ln_step returned None.", "return the new residual stream.")
    have = torch.as_tensor(have)
    expect(not _close(have, post), "1.3", "this is post-LN (BERT's order): the sum is normalised.",
           "in pre-LN only the sublayer's input is normalised: x + sublayer(norm(x)).")
    expect(not _close(have, ln_x + (ln_x @ sublayer.weight.T + sublayer.bias)), "1.3",
           "the identity path carries norm(x) instead of x.", "add the un-normalised x: x + sublayer(norm(x)).")
    expect(_close(have, want, 1e-4), "1.3", "the result is not x + sublayer(norm(x)).",
           "normalise x, run the sublayer on it, add x.")
    passed("1.3")


def check_param_counts(self_output_params, output_params) -> None:
    not_done(self_output_params, "1.4")
    not_done(output_params, "1.4")
    C, F_ = 768, 3072
    # dense weight (out, in) + dense bias (out) + LayerNorm weight and bias (C each)
    want_self, want_out = C * C + C + C + C, C * F_ + C + C + C
    expect(self_output_params != C * C, "1.4", "BertSelfOutput: you counted only the dense weight.",
           "add the dense bias (C) and LayerNorm's weight and bias (C each).")
    expect(self_output_params == want_self, "1.4", f"BertSelfOutput has {want_self:,} parameters, "
           f"not {self_output_params:,}.", "dense: C*C weights + C biases; LayerNorm: C + C.")
    expect(output_params != F_ * C + F_ + 2 * C, "1.4", "BertOutput: the dense bias has C entries, not F.",
           "nn.Linear(F, C) has one bias per output feature.")
    expect(output_params == want_out, "1.4", f"BertOutput has {want_out:,} parameters, not {output_params:,}.",
           "dense: F*C weights + C biases; LayerNorm: C + C.")
    passed("1.4")
