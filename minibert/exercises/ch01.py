"""Checks for chapter 01, residual add & norm."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from . import expect, not_done, passed


def _close(a, b, tol: float = 1e-5) -> bool:
    a = torch.as_tensor(a)
    return a.shape == b.shape and bool(torch.isfinite(a).all()) and (a - b).abs().max().item() < tol


class _Forbidden(Exception):
    """Raised inside a check when an answer calls a function the exercise forbids."""


@contextlib.contextmanager
def _without_layer_norm():
    """Every ready-made normalisation PyTorch offers raises _Forbidden while the answer runs."""
    class Refuse:  # calling it, or an overload of it such as torch.ops.aten.layer_norm.default, raises
        def __call__(self, *args, **kwargs):
            raise _Forbidden("layer_norm")

        def __getattr__(self, name):
            return self

    refuse = Refuse()
    saved = [(F, "layer_norm", F.layer_norm), (torch, "layer_norm", torch.layer_norm),
             (torch, "native_layer_norm", torch.native_layer_norm), (F, "group_norm", F.group_norm),
             (torch, "group_norm", torch.group_norm), (F, "instance_norm", F.instance_norm),
             (torch, "instance_norm", torch.instance_norm), (nn.LayerNorm, "forward", nn.LayerNorm.forward),
             (nn.GroupNorm, "forward", nn.GroupNorm.forward), (F, "batch_norm", F.batch_norm),
             (torch, "batch_norm", torch.batch_norm), (torch, "native_batch_norm", torch.native_batch_norm)]
    saved += [(torch.ops.aten, name, getattr(torch.ops.aten, name))
              for name in ("layer_norm", "native_layer_norm", "batch_norm", "native_batch_norm")]
    try:
        for owner, name, _ in saved:
            setattr(owner, name, refuse)
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def check_layer_norm_2d(fn) -> None:
    not_done(fn, "1.1")
    g = torch.Generator().manual_seed(11)
    # (shape, eps, scale): the last two cases make eps matter, by a small variance or by a large eps
    for shape, eps, scale in [((2, 5, 8), 1e-5, 1.0), ((3, 4, 6), 1e-12, 1.0), ((4, 16), 1e-5, 1.0),
                              ((2, 5, 8), 1e-5, 1e-3), ((3, 4, 6), 0.1, 1.0)]:
        T, C = shape[-2:]
        x = (torch.randn(shape, generator=g) * 3 + 2) * scale  # variance about 9 * scale**2
        weight, bias = torch.randn(T, C, generator=g), torch.randn(T, C, generator=g)
        want = F.layer_norm(x, (T, C), weight, bias, eps)  # the reference, computed before the answer runs
        try:
            with _without_layer_norm():
                have = fn(x.clone(), weight, bias, eps)
        except _Forbidden:
            expect(False, "1.1", "your answer calls a ready-made normalisation (F.layer_norm, nn.LayerNorm, "
                   "group_norm, instance_norm, batch_norm, native_layer_norm), which the exercise forbids.", "compute the mean and the biased variance over the last two dimensions yourself: "
                   "Tensor.mean takes a tuple of dimensions and keepdim=True.")
        expect(have is not None, "1.1", "layer_norm_2d returned None.", "return the normalised tensor.")
        have = torch.as_tensor(have)
        expect(have.shape == want.shape, "1.1", f"for an input of shape {tuple(shape)} the output has shape "
               f"{tuple(have.shape)}.", "keep every dimension: reduce with keepdim=True.")
        if _close(have, want):
            continue
        dims = (-2, -1)
        mean = x.mean(dims, keepdim=True)
        last = F.layer_norm(x, (C,), eps=eps) * weight + bias
        unbiased = (x - mean) / torch.sqrt(x.var(dims, keepdim=True) + eps) * weight + bias
        outside = (x - mean) / (x.std(dims, correction=0, keepdim=True) + eps) * weight + bias
        no_affine = F.layer_norm(x, (T, C), eps=eps)
        expect(not _close(have, last), "1.1", "you normalised over the last dimension only (each token on its own).",
               "take the mean and variance over the last TWO dimensions: dim=(-2, -1).")
        expect(not _close(have, unbiased), "1.1", "you used the unbiased variance (divide by T*C - 1).",
               "LayerNorm's variance is the mean of the squared deviations: it divides by T*C, not T*C - 1.")
        expect(not _close(have, outside, 1e-6), "1.1", "eps is outside the square root.",
               "divide by torch.sqrt(var + eps), not by std + eps.")
        for fixed in (1e-12, 1e-5, 1e-6, 1e-8, 0.0):
            if fixed != eps:
                hard = (x - mean) / torch.sqrt(x.var(dims, correction=0, keepdim=True) + fixed) * weight + bias
                expect(not _close(have, hard), "1.1", f"the result does not use the eps = {eps:g} you were given: "
                       "it matches an eps typed in.", "use the argument eps, not a number typed in.")
        expect(not _close(have, no_affine), "1.1", "weight and bias are not applied.",
               "multiply the normalised x by weight (shape (T, C)), then add bias.")
        expect(False, "1.1", f"for shape {tuple(shape)}, eps={eps:g}, input scale {scale:g} the result differs from "
               f"nn.LayerNorm(({T}, {C})) by {(have - want).abs().max().item():.3g}.",
               "normalise with the mean and the biased variance of each sentence's T x C numbers, eps inside the square "
               "root, then apply weight and bias.")
    flat = torch.full((2, 3, 4), 3.0)
    with _without_layer_norm():
        have = torch.as_tensor(fn(flat.clone(), torch.ones(3, 4), torch.arange(12.0).view(3, 4), 1e-12))
    expect(bool(torch.isfinite(have).all()), "1.1", "an input whose values are all equal gives NaN or inf.",
           "add eps to the variance before the square root, so the division is never by zero.")
    passed("1.1")


class _FixedMask(nn.Module):
    """A dropout whose mask is fixed (so the check knows it): in training, x * mask / (1 - p); else x."""

    def __init__(self, mask: torch.Tensor, p: float):
        super().__init__()
        self.mask, self.p = mask, p

    def forward(self, x):
        return x * self.mask / (1 - self.p) if self.training else x


def check_pre_ln(fn) -> None:
    not_done(fn, "1.2")
    expect(callable(fn), "1.2", f"pre_ln_sublayer should be a function, got {type(fn).__name__}.",
           "def pre_ln_sublayer(x, sublayer, norm, dropout): ... return ...")
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 5, 16, generator=g) * 3 + 1  # (B, T, C): an un-normalised residual stream
    norm = nn.LayerNorm(16, eps=1e-12)
    sublayer = nn.Linear(16, 16)
    with torch.no_grad():
        for param in (*norm.parameters(), *sublayer.parameters()):
            param.copy_(torch.randn(param.shape, generator=g))
    ln = lambda t: F.layer_norm(t, (16,), norm.weight, norm.bias, 1e-12)  # noqa: E731
    f = lambda t: F.linear(t, sublayer.weight, sublayer.bias)  # noqa: E731
    dropout = _FixedMask((torch.rand(2, 5, 16, generator=g) > 0.3).float(), 0.3).train()
    drop = lambda t: t * dropout.mask / 0.7  # noqa: E731
    with torch.no_grad():
        have = fn(x.clone(), sublayer, norm, dropout)
        want = x + drop(f(ln(x)))
        wrong = {"this is post-LN (BERT's order): the sum is normalised, so the stream is too.": ln(x + drop(f(x))),
                 "the sum is normalised at the end as well: pre-LN leaves the stream un-normalised.": ln(x + drop(f(ln(x)))),
                 "dropout is missing: the branch arrives whole.": x + f(ln(x)),
                 "dropout is applied to the sum, so it reaches the identity path x.": drop(x + f(ln(x))),
                 "dropout is applied before the sublayer (to its normalised input), not to its output.": x + f(drop(ln(x))),
                 "the norm comes after the sublayer; pre-LN normalises the sublayer's INPUT.": x + drop(ln(f(x))),
                 "the identity path adds the normalised x; it must carry x itself, untouched.": ln(x) + drop(f(ln(x)))}
    expect(have is not None, "1.2", "pre_ln_sublayer returned None.", "return the new residual stream.")
    have = torch.as_tensor(have)
    expect(have.shape == x.shape, "1.2", f"the result has shape {tuple(have.shape)}, expected {tuple(x.shape)}.",
           "return a tensor of the same shape as x.")
    for message, result in wrong.items():
        expect(not _close(have, result), "1.2", message, "normalise x, run the sublayer, drop out its output, "
               "then add x.")
    expect(_close(have, want), "1.2", "in training mode the result is not the pre-LN step with dropout where BERT puts it.",
           "normalise x, run the sublayer, drop out its output, then add x.")
    dropout.eval()
    with torch.no_grad():
        have = torch.as_tensor(fn(x.clone(), sublayer, norm, dropout))
    expect(_close(have, x + f(ln(x))), "1.2", "in evaluation mode (dropout off) the result is not "
           "x + sublayer(norm(x)).", "call the dropout module you are given; do not build your own.")
    passed("1.2")


def check_masked_mean(fn) -> None:
    not_done(fn, "1.3")
    g = torch.Generator().manual_seed(13)
    lengths = [[3, 6], [1, 4, 5], [7]]
    for lens in lengths:
        B, T, C = len(lens), max(lens), 5
        mask = torch.arange(T).expand(B, T) < torch.tensor(lens).unsqueeze(1)  # (B, T): True = real token
        x = torch.randn(B, T, C, generator=g) + 2
        x = torch.where(mask.unsqueeze(-1), x, torch.full_like(x, -7.0))  # padding positions hold -7
        want = torch.cat([x[b, :n] for b, n in enumerate(lens)]).mean(0)  # (C,): the real tokens, one by one
        have = fn(x.clone(), mask.clone())
        expect(have is not None, "1.3", "masked_mean returned None.", "return a tensor of shape (C,).")
        have = torch.as_tensor(have)
        expect(have.shape == (C,), "1.3", f"the result has shape {tuple(have.shape)}, expected ({C},).",
               "average over the batch and time dimensions, keep one number per feature.")
        if _close(have, want):
            continue
        m = mask.unsqueeze(-1).float()
        expect(not _close(have, x.mean((0, 1))), "1.3", "the padding positions are averaged in too.",
               "multiply by the mask (as 0.0 / 1.0, with a trailing dimension) before summing.")
        expect(not _close(have, (x * m).sum((0, 1)) / (B * T)), "1.3", "you divided by B * T, all positions, "
               "instead of the number of real tokens.", "divide by mask.sum().")
        expect(not _close(have, ((x * m).sum(1) / m.sum(1)).mean(0)), "1.3", "you averaged the sentences' means, "
               "so a short sentence counts as much as a long one.", "sum over all real tokens, then divide once "
               "by their number.")
        expect(False, "1.3", f"for lengths {lens} the result differs from the mean of the real tokens by "
               f"{(have - want).abs().max().item():.3g}.",
               "zero the padding (multiply by the mask, given a trailing dimension), sum over the batch and time "
               "dimensions, then divide by the number of real tokens.")
    passed("1.3")


def check_param_counts(self_output_params, output_params) -> None:
    not_done(self_output_params, "1.4")
    not_done(output_params, "1.4")
    C, F_ = 1024, 4096  # BERT-large
    # dense weight (out, in) + dense bias (out) + LayerNorm weight and bias (C each)
    want_self, want_out = C * C + C + C + C, C * F_ + C + C + C
    expect(self_output_params != 768 * 768 + 3 * 768 and output_params != 3072 * 768 + 3 * 768, "1.4",
           "these are BERT-base's counts (C = 768, F = 3072).", "BERT-large has C = 1024 and F = 4096.")
    expect(self_output_params != C * C + C, "1.4", "BertSelfOutput: LayerNorm's weight and bias are missing.",
           "LayerNorm has two vectors of C parameters.")
    expect(self_output_params != C * C, "1.4", "BertSelfOutput: you counted only the dense weight.",
           "add the dense bias (C) and LayerNorm's weight and bias (C each).")
    expect(self_output_params == want_self, "1.4", f"BertSelfOutput has not {self_output_params:,} parameters.",
           "dense: C*C weights + C biases; LayerNorm: C + C.")
    expect(output_params != F_ * C + F_ + 2 * C, "1.4", "BertOutput: the dense bias has C entries, not F.",
           "nn.Linear(F, C) has one bias per output feature.")
    expect(output_params != F_ * C + C, "1.4", "BertOutput: LayerNorm's weight and bias are missing.",
           "LayerNorm has two vectors of C parameters.")
    expect(output_params == want_out, "1.4", f"BertOutput has not {output_params:,} parameters.",
           "dense: F*C weights + C biases; LayerNorm: C + C.")
    passed("1.4")
