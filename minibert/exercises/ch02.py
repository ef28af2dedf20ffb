"""Checks for chapter 02, dropout masking."""

from __future__ import annotations

import math

import torch

from . import expect, not_done, passed


def check_dropout(fn) -> None:
    not_done(fn, "2.1")
    n = 200_000
    x = torch.linspace(0.5, 2.0, n)  # all non-zero, so a zero in the output means "dropped"
    for p in (0.1, 0.5):
        y = fn(x.clone(), p, torch.Generator().manual_seed(3))
        expect(y is not None, "2.1", "my_dropout returned None.", "return the tensor after dropout.")
        y = torch.as_tensor(y)
        expect(y.shape == x.shape, "2.1", f"the output has shape {tuple(y.shape)}, the input {tuple(x.shape)}.",
               "draw one uniform number per element: torch.rand(x.shape, generator=generator).")
        expect(bool(torch.isfinite(y).all()), "2.1", f"p={p} gives NaN or inf.", "divide by 1 - p, which is > 0 here.")
        kept = y != 0
        share = kept.float().mean().item()
        tol = 5 * math.sqrt(p * (1 - p) / n)  # 5 standard deviations of the share kept
        expect(abs(share - p) > tol or abs(p - 0.5) < 1e-9, "2.1",
               f"with p={p} about {share:.3f} of the elements are kept: you kept with probability p.",
               "p is the probability to DROP; keep an element when the uniform number is below 1 - p.")
        expect(abs(share - (1 - p)) < tol, "2.1", f"with p={p} a share of {share:.3f} is kept, expected "
               f"{1 - p} ± {tol:.4f}.", "keep each element with probability 1 - p, independently.")
        ratio = y[kept] / x[kept]
        expect(not torch.allclose(ratio, torch.ones(()), atol=1e-5), "2.1",
               "the kept elements are not rescaled.", "divide the kept elements by 1 - p (inverted dropout).")
        expect(not torch.allclose(ratio, torch.tensor(1 - p), atol=1e-5), "2.1",
               "the kept elements were multiplied by 1 - p.", "divide by 1 - p instead, so the mean stays x.")
        expect(torch.allclose(ratio, torch.tensor(1 / (1 - p)), rtol=1e-5), "2.1",
               f"with p={p} the kept elements are not x / (1 - p) = x * {1 / (1 - p):.4f}.",
               "multiply x by the 0/1 mask, then divide by 1 - p.")
        again = torch.as_tensor(fn(x.clone(), p, torch.Generator().manual_seed(3)))
        other = torch.as_tensor(fn(x.clone(), p, torch.Generator().manual_seed(4)))
        expect(torch.equal(y, again) and not torch.equal(y, other), "2.1",
               "the mask does not come from `generator` (same seed should give the same mask, another seed another).",
               "pass generator=generator to torch.rand.")
    y0 = torch.as_tensor(fn(x.clone(), 0.0, torch.Generator().manual_seed(3)))
    expect(torch.equal(y0, x), "2.1", "p = 0 should return x unchanged.", "with p = 0 every element is kept "
           "and 1 - p = 1.")
    y1 = torch.as_tensor(fn(x.clone(), 1.0, torch.Generator().manual_seed(3)))
    expect(not bool(y1.isnan().any()), "2.1", "p = 1 gives NaN (0 / 0).",
           "handle p = 1 before dividing: return torch.zeros_like(x).")
    expect(torch.equal(y1, torch.zeros_like(x)), "2.1", "p = 1 should give all zeros.", "return torch.zeros_like(x).")
    passed("2.1")


def check_tolerance(fn) -> None:
    not_done(fn, "2.2")
    for n, p, k in [(1_000_000, 0.1, 5), (100, 0.5, 1), (10_000, 0.3, 3)]:
        want = k * math.sqrt(p * (1 - p) / n)  # k * sd of (number kept / n), number kept ~ Binomial(n, 1 - p)
        have = fn(n, p, k)
        expect(have is not None, "2.2", "keep_share_tolerance returned None.", "return a number.")
        have = float(have)
        expect(not math.isclose(have, k * math.sqrt(n * p * (1 - p))), "2.2",
               "that is the tolerance on the NUMBER kept, not on the share.", "divide the count's deviation by n.")
        expect(math.isclose(have, want, rel_tol=1e-9), "2.2", f"for n={n}, p={p}, k={k} expected {want:.6g}, "
               f"got {have:.6g}.", "the number kept is Binomial(n, 1 - p), variance n p (1 - p); the share's "
               "standard deviation is sqrt(p (1 - p) / n).")
    # the formula's promise: a share outside k=5 deviations essentially never happens
    g = torch.Generator().manual_seed(5)
    share = (torch.rand(1_000_000, generator=g) < 0.9).float().mean().item()
    expect(abs(share - 0.9) < fn(1_000_000, 0.1, 5), "2.2", "a real dropout mask fell outside your tolerance.",
           "k standard deviations: k * sqrt(p (1 - p) / n).")
    passed("2.2")


def check_sites(sites) -> None:
    not_done(sites, "2.3")
    expect(isinstance(sites, dict), "2.3", f"dropout_sites should be a dict, got {type(sites).__name__}.",
           "fill in the three numbers of the dict.")
    # Counted independently from Hugging Face's BertModel: embeddings.dropout, then per layer
    # attention.self.dropout (probabilities), attention.output.dropout and output.dropout (sublayer outputs).
    from torch import nn
    import transformers

    config = transformers.BertConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=10,
                                     max_position_embeddings=8)
    names = [n for n, m in transformers.BertModel(config).named_modules() if isinstance(m, nn.Dropout)]
    want = {"embeddings": sum(n.startswith("embeddings.") for n in names),
            "attention probabilities": sum(n.endswith("attention.self.dropout") for n in names),
            "sublayer outputs": sum(n.endswith("output.dropout") for n in names)}
    for kind, count in want.items():
        expect(kind in sites, "2.3", f"the key {kind!r} is missing.", f"use the keys {list(want)}.")
        expect(sites[kind] == count, "2.3", f"{kind}: {sites[kind]} is not right.",
               "BERT-base has 12 layers; each has one attention block and two add & norm steps.")
    passed("2.3")
