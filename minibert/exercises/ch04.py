"""Checks for chapter 04, multi-head attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ExerciseError, expect, not_done, passed
from .ch03 import forbidding


def _forbidden_sdpa(*args, **kwargs):
    raise ExerciseError("Exercise 4.1: the answer calls a ready-made attention (F.scaled_dot_product_attention, its "
                        "aten operator, this chapter's attention_probs or transformers' eager_attention_forward), which the "
                        "exercise forbids.\n"
                        "Hint: write the four steps yourself: q @ k^T, / sqrt(D), mask, softmax, @ v.")


def _sdpa_targets():
    import minibert.attention

    from transformers.models.bert import modeling_bert

    targets = [(F, "scaled_dot_product_attention"), (torch._C._nn, "scaled_dot_product_attention"),
               (torch.ops.aten, "scaled_dot_product_attention"), (F, "multi_head_attention_forward"),
               (minibert.attention, "attention_probs")]
    # transformers' BERT attention function: its modeling_bert.py is the students' reference, readable
    return targets + [(modeling_bert, name) for name in ("eager_attention_forward",) if hasattr(modeling_bert, name)]


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
    # causal and padding with an all-padding sequence: masks *added* twice (finfo.min + finfo.min = -inf) give NaN
    want_all = torch.cat([cases[-1][-1], v[2:].mean(dim=-2, keepdim=True).expand(1, 2, 5, 4)])
    cases.append(("with causal=True, a padding mask and a sequence that is all padding", q, k, v, mask, True,
                  want_all))
    # the shortcuts the prompt forbids fail loudly, under any name the answer can reach them by
    with forbidding(fn, _sdpa_targets(), _forbidden_sdpa, named=("attention_probs",)):
        results = [fn(q, k, v, mask, causal) for _, q, k, v, mask, causal, _ in cases]
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


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_prune_head(fn) -> None:
    not_done(fn, "4.3")
    import copy

    from minibert.attention import BertAttention, extended_attention_mask
    from minibert.config import BertConfig

    for C, H, h, impl in ((12, 3, 1, "eager"), (24, 4, 0, "sdpa"), (16, 2, 1, "eager")):
        D = C // H
        torch.manual_seed(43 + C)
        attention = BertAttention(BertConfig(hidden_size=C, num_attention_heads=H, intermediate_size=4 * C,
                                             attn_implementation=impl)).eval()
        with torch.no_grad():
            for p in attention.parameters():  # fresh biases are 0 and LayerNorm an identity: fill every number
                p.copy_(torch.randn(p.shape))
        x = torch.randn(2, 5, C)
        keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
        mask = extended_attention_mask(keep) if impl == "eager" else keep.bool()[:, None, None, :]
        what = f"with C = {C}, H = {H}, pruning head {h}"
        # the reference: the unpruned module with head h's part of Concat(heads) set to zero before W^O
        reference = copy.deepcopy(attention)
        with torch.no_grad():
            context, _ = reference.self(x, mask)  # (B, T, C) = Concat(heads)
            context[..., h * D:(h + 1) * D] = 0
            want = reference.output(context, x)
        before = _param_count(attention)
        result = fn(attention, h)
        expect(result is None or result is attention, "4.3", f"prune_head returned a {type(result).__name__}; "
               f"it should change the module it is given, in place.", "replace attention.self.query (and key, value, "
               "attention.output.dense) by smaller nn.Linear layers; return nothing.")
        removed = before - _param_count(attention)
        expect(removed == 4 * C * D + 3 * D, "4.3", f"{what} removed {removed:,} parameters, expected "
               f"{4 * C * D + 3 * D:,}: D = {D} rows of query, key and value (weights and biases) and D columns of "
               f"output.dense.", "pruning removes the numbers: build nn.Linear layers with C - D outputs (query, "
               "key, value) and C - D inputs (output.dense); setting them to zero keeps them.")
        try:
            with torch.no_grad():
                have, probs = attention(x, mask, output_attentions=True)
        except (RuntimeError, ValueError) as exc:
            expect(False, "4.3", f"{what} the pruned module fails to run: {exc}",
                   "also update attention.self.num_attention_heads (H - 1) and attention.self.all_head_size (C - D): "
                   "forward cuts the projections into heads with them.")
        expect(tuple(probs.shape) == (2, H - 1, 5, 5), "4.3", f"{what} the attention probabilities have shape "
               f"{tuple(probs.shape)}, expected (B, H - 1, T, T) = {(2, H - 1, 5, 5)}.",
               "set attention.self.num_attention_heads to H - 1.")
        err = (have - want).abs().max().item()
        expect(err < 1e-5, "4.3", f"{what} the output differs from the unpruned module with head {h} silenced "
               f"by {err:.3g}.", f"head h owns dimensions h*D .. (h+1)*D - 1: rows of the query, key and value "
               f"weights and biases, and columns of output.dense.weight (its bias stays whole).")
    passed("4.3")


def check_probs_memory(probs_bytes, t_cross) -> None:
    not_done(probs_bytes, "4.4")
    not_done(t_cross, "4.4")
    from minibert.config import BertConfig

    for batch, tokens, (C, H), dtype in ((8, 128, (768, 12), torch.float32), (2, 512, (1024, 16), torch.float16),
                                         (3, 7, (36, 3), torch.float64), (1, 100, (64, 1), torch.bfloat16)):
        config = BertConfig(hidden_size=C, num_attention_heads=H, intermediate_size=4 * C)
        probs = torch.empty(batch, H, tokens, tokens, dtype=dtype, device="meta")  # (B, H, T, T), no memory
        want = probs.numel() * probs.element_size()
        have = probs_bytes(batch, tokens, config, dtype)
        what = f"probs_bytes({batch}, {tokens}, C = {C} H = {H}, {dtype})"
        if have != want:
            expect(have != probs.numel(), "4.4", f"{what} = {have:,} counts numbers, not bytes.",
                   "multiply by the bytes per number: torch.finfo(dtype).bits // 8, or Tensor.element_size().")
            expect(have != want // H, "4.4", f"{what} = {have:,} counts one T x T table per sequence.",
                   "every head has its own table: (B, H, T, T).")
            expect(have != probs.numel() * 4, "4.4", f"{what} = {have:,} assumes 4 bytes per number.",
                   "the bytes per number depend on dtype: torch.finfo(dtype).bits // 8.")
            expect(False, "4.4", f"{what} = {have!r}, expected a different number.",
                   "count the numbers of a (B, H, T, T) tensor, times the bytes one number of dtype takes.")
    base = BertConfig()
    T = 1  # the smallest T at which (B, H, T, T) holds more numbers than (B, T, C), counted on the meta device
    while torch.empty(1, base.num_attention_heads, T, T, device="meta").numel() <= torch.empty(
            1, T, base.hidden_size, device="meta").numel():
        T += 1
    expect(t_cross != T - 1, "4.4", f"T_cross = {t_cross}: at T = {t_cross} the probabilities and the hidden "
           f"states are the same size, not larger.", "the smallest T with H * T * T > T * C.")
    expect(t_cross == T, "4.4", f"T_cross = {t_cross!r}, expected a different number.",
           "compare H * T * T (the probabilities) with T * C (the hidden states): B and the dtype cancel out.")
    passed("4.4")
