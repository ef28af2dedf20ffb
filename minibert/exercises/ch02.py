"""Checks for chapter 02, dropout masking."""

from __future__ import annotations

import math

import torch

from . import expect, not_done, passed


def check_drop_tokens(fn) -> None:
    not_done(fn, "2.1")
    B, T, C = 40, 50, 16
    x = torch.linspace(0.5, 2.0, B * T * C).view(B, T, C)  # all non-zero, so a zero in the output means "dropped"
    n = B * T  # tokens
    for p in (0.1, 0.5):
        y = fn(x.clone(), p, torch.Generator().manual_seed(3))
        expect(y is not None, "2.1", "drop_tokens returned None.", "return the tensor after dropout.")
        y = torch.as_tensor(y)
        expect(y.shape == x.shape, "2.1", f"the output has shape {tuple(y.shape)}, the input {tuple(x.shape)}.",
               "multiply x by a keep-mask of shape (B, T, 1); it broadcasts over the C numbers of each token.")
        expect(bool(torch.isfinite(y).all()), "2.1", f"p={p} gives NaN or inf.", "divide by 1 - p, which is > 0 here.")
        nonzero = y != 0
        expect(torch.equal(nonzero.any(-1), nonzero.all(-1)), "2.1",
               "some tokens lost only part of their numbers: the mask was drawn per number, not per token.",
               "draw one uniform number per token: torch.rand(x.shape[:-1] + (1,), generator=generator).")
        kept = nonzero.all(-1)  # (B, T)
        share = kept.float().mean().item()
        tol = 5 * math.sqrt(p * (1 - p) / n)  # 5 standard deviations of the share of tokens kept
        expect(abs(share - p) > tol or abs(p - 0.5) < 1e-9, "2.1",
               f"with p={p} about {share:.3f} of the tokens are kept: you kept with probability p.",
               "p is the probability to DROP; keep a token when its uniform number is below 1 - p.")
        expect(abs(share - (1 - p)) < tol, "2.1", f"with p={p} a share of {share:.3f} of the tokens is kept, "
               f"expected {1 - p} ± {tol:.4f}.", "keep each token with probability 1 - p, independently.")
        ratio = y[kept] / x[kept]
        expect(not torch.allclose(ratio, torch.ones(()), atol=1e-5), "2.1",
               "the kept tokens are not rescaled.", "divide the kept tokens by 1 - p (inverted dropout).")
        expect(not torch.allclose(ratio, torch.tensor(1 - p), atol=1e-5), "2.1",
               "the kept tokens were multiplied by 1 - p.", "divide by 1 - p instead, so the mean stays x.")
        expect(torch.allclose(ratio, torch.tensor(1 / (1 - p)), rtol=1e-5), "2.1",
               f"with p={p} the kept tokens are not x / (1 - p) = x * {1 / (1 - p):.4f}.",
               "multiply x by the 0/1 mask, then divide by 1 - p.")
        again = torch.as_tensor(fn(x.clone(), p, torch.Generator().manual_seed(3)))
        other = torch.as_tensor(fn(x.clone(), p, torch.Generator().manual_seed(4)))
        expect(torch.equal(y, again) and not torch.equal(y, other), "2.1",
               "the mask does not come from `generator` (same seed should give the same mask, another seed another).",
               "pass generator=generator to torch.rand.")
    y0 = torch.as_tensor(fn(x.clone(), 0.0, torch.Generator().manual_seed(3)))
    expect(torch.equal(y0, x), "2.1", "p = 0 should return x unchanged.", "with p = 0 every token is kept "
           "and 1 - p = 1.")
    y1 = torch.as_tensor(fn(x.clone(), 1.0, torch.Generator().manual_seed(3)))
    expect(not bool(y1.isnan().any()), "2.1", "p = 1 gives NaN (0 / 0).",
           "handle p = 1 before dividing: return x * 0.0.")
    expect(torch.equal(y1, torch.zeros_like(x)), "2.1", "p = 1 should give all zeros.", "return x * 0.0.")
    special = x.clone()
    special[0, 0, 0], special[1, 2, 3] = float("inf"), float("nan")  # a non-finite input must stay visible
    y1 = torch.as_tensor(fn(special.clone(), 1.0, torch.Generator().manual_seed(3)))
    expect(bool(y1[0, 0, 0].isnan()) and bool(y1[1, 2, 3].isnan()), "2.1", "with p = 1, an inf or NaN in x "
           "comes out as a number: the answer hides a broken input (torch.nn.Dropout(1.0) gives NaN there).",
           "return x * 0.0, not torch.zeros_like(x): inf * 0 and NaN * 0 are NaN.")
    expect(torch.equal(y1.nan_to_num(7.0), (special * 0.0).nan_to_num(7.0)), "2.1",
           "with p = 1 the finite numbers should become 0 and only inf and NaN become NaN.", "return x * 0.0.")
    passed("2.1")


def check_elements_needed(fn) -> None:
    not_done(fn, "2.2")
    # the last case gives n = 711.1...: rounding to the nearest whole number (711) is one element too few
    for p, tol, k in [(0.1, 0.001, 5), (0.5, 0.01, 3), (0.3, 0.005, 4), (0.1, 0.0007, 5), (0.2, 0.03, 2)]:
        have = fn(p, tol, k)
        expect(have is not None, "2.2", "elements_needed returned None.", "return a whole number.")
        expect(isinstance(have, (int, float)) and not isinstance(have, bool) and float(have).is_integer()
               and have >= 1, "2.2", f"elements_needed({p}, {tol}, {k}) returned {have!r}, not a whole number of "
               "elements.", "round up with math.ceil: a fraction of an element is not possible.")
        spread = lambda n: k * math.sqrt(p * (1 - p) / n)  # noqa: E731  k standard deviations of the share kept
        exact = k ** 2 * p * (1 - p) / tol ** 2
        expect(not (have == round(exact) and have < exact), "2.2", f"for p={p}, tol={tol}, k={k}: n = {exact:.2f} "
               f"rounded to the nearest is {int(have):,}, which leaves k standard deviations above tol.",
               "round UP (math.ceil): the next whole number above n, never below.")
        expect(spread(have) <= tol * (1 + 1e-9), "2.2", f"for p={p}, tol={tol}, k={k}: with n = {int(have):,} "
               f"elements, k standard deviations are {spread(have):.3g}, more than tol.",
               "solve k * sqrt(p (1 - p) / n) <= tol for n: both sides squared, k too.")
        expect(have == 1 or spread(have - 1) > tol * (1 - 1e-9), "2.2", f"for p={p}, tol={tol}, k={k}: "
               f"{int(have):,} elements are more than needed; fewer already give k standard deviations within tol.",
               "n = k^2 p (1 - p) / tol^2, rounded up.")
    passed("2.2")


def check_attention_majority(fn) -> None:
    not_done(fn, "2.3")
    from minibert.config import BertConfig

    configs = [BertConfig(), BertConfig.from_preset("bert-large-uncased"), BertConfig.from_preset("bert-tiny"),
               BertConfig(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=384)]
    for config in configs:
        C, L, H = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
        attention = lambda T: L * H * T * T  # noqa: E731  draws on the attention probabilities, one sentence
        others = lambda T: T * C + L * 2 * T * C  # noqa: E731  embeddings + two sublayer outputs per layer
        want = next(T for T in range(1, 100_000) if attention(T) > others(T))
        have = fn(config)
        expect(have is not None, "2.3", "first_t_attention_majority returned None.", "return a whole number T.")
        if have == want:
            continue
        sizes = f"C = {C}, L = {L}, H = {H}"
        no_embeddings = next(T for T in range(1, 100_000) if attention(T) > others(T) - T * C)
        expect(have != no_embeddings, "2.3", f"for {sizes} your T leaves out the T x C draws of the embedding "
               "dropout.", "count every dropout draw: T*C (embeddings) + L * (H*T*T + 2*T*C).")
        expect(not (attention(have) == others(have)), "2.3", f"for {sizes} at T = {have} the attention "
               "probabilities take exactly half of the draws, not more.", "'more than half' needs a strict >.")
        expect(attention(have) > others(have), "2.3", f"for {sizes} at T = {have} the attention probabilities "
               "take less than half of the draws.", "compare L*H*T*T with all the other draws; T must be larger.")
        expect(False, "2.3", f"for {sizes}, {have} is not the smallest such T: a smaller T already gives the "
               "attention probabilities more than half.", "start at T = 1 and stop at the first T that works.")
    passed("2.3")
