"""Checks for chapter 06, Linear + softmax heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import expect, not_done, passed


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_linear_forward(fn) -> None:
    not_done(fn, "6.1")
    g = torch.Generator().manual_seed(61)
    for shape, n_in, n_out in (((2, 4), 4, 3), ((3, 5, 6), 6, 2), ((1, 7), 7, 7)):
        x = torch.randn(*shape, generator=g)
        w, b = torch.randn(n_out, n_in, generator=g), torch.randn(n_out, generator=g)
        want = F.linear(x, w, b)  # PyTorch's own Linear
        have = fn(x, w, b)
        expect(isinstance(have, torch.Tensor) and have.shape == want.shape, "6.1",
               f"for x of shape {tuple(x.shape)} and weight {tuple(w.shape)} expected shape {tuple(want.shape)}, "
               f"got {_shape(have)}.", "the weight is (out_features, in_features): multiply by its transpose.")
        expect(torch.allclose(have, want, atol=1e-5), "6.1", "the values differ from nn.Linear's.",
               "compute x @ weight.T + bias.")
    passed("6.1")


def check_softmax(fn) -> None:
    not_done(fn, "6.2")
    g = torch.Generator().manual_seed(62)
    cases = [torch.randn(5, generator=g), torch.randn(3, 7, generator=g) * 4, torch.tensor([1000.0, 999.0]),
             torch.tensor([[-1000.0, -1001.0, -1002.0], [88.0, 90.0, 0.0]]), torch.tensor([[3.0, 3.0, 3.0]])]
    for z in cases:
        want = torch.softmax(z.double(), -1)  # reference in float64
        have = fn(z.clone())
        expect(isinstance(have, torch.Tensor) and have.shape == z.shape, "6.2",
               f"for logits of shape {tuple(z.shape)} expected probabilities of the same shape, got {_shape(have)}.",
               "normalise over the last dimension (dim=-1, keepdim=True).")
        expect(bool(torch.isfinite(have).all()), "6.2",
               f"for logits {z.tolist()} the result contains inf or nan: {have.tolist()}.",
               "subtract the largest logit of each row before exp: the largest exponent becomes exp(0) = 1.")
        expect(torch.allclose(have.double(), want, atol=1e-6), "6.2",
               f"for logits {z.tolist()} expected {[round(v, 4) for v in want.flatten().tolist()]}, "
               f"got {[round(v, 4) for v in have.flatten().tolist()]}.",
               "exp(z - max) / sum(exp(z - max)), max and sum over the last dimension of each row.")
    passed("6.2")


def check_cross_entropy(fn) -> None:
    not_done(fn, "6.3")
    g = torch.Generator().manual_seed(63)
    cases = [(torch.randn(4, 5, generator=g) * 2, torch.tensor([2, 0, 4, 1])),
             (torch.randn(1, 3, generator=g), torch.tensor([1])),
             (torch.tensor([[0.0, 120.0], [5.0, -300.0]]), torch.tensor([0, 1]))]
    for logits, targets in cases:
        want = F.cross_entropy(logits.double(), targets)
        have = fn(logits.clone(), targets)
        expect(isinstance(have, torch.Tensor) and have.numel() == 1, "6.3",
               f"expected one number (the mean over the batch), got {_shape(have)}.", "finish with .mean().")
        expect(bool(torch.isfinite(have).all()), "6.3",
               f"for logits {logits.tolist()} and targets {targets.tolist()} the loss is {have.item()}.",
               "do not take log of a probability that may underflow to 0: use log p = z - m - log(sum(exp(z - m))).")
        expect(abs(have.item() - want.item()) < 1e-4 * max(1.0, abs(want.item())), "6.3",
               f"for logits {logits.tolist()} and targets {targets.tolist()} expected {want.item():.4f}, "
               f"got {have.item():.4f}.",
               "pick each row's log-probability of its own target (logp[torch.arange(B), targets]), negate, average.")
    passed("6.3")


def check_tie(fn) -> None:
    not_done(fn, "6.4")
    torch.manual_seed(64)
    embedding, decoder = nn.Embedding(11, 4), nn.Linear(4, 11)
    result = fn(decoder, embedding)
    expect(result is None, "6.4", f"tie should change the decoder in place and return nothing, got {type(result).__name__}.",
           "assign the embedding's Parameter to decoder.weight.")
    expect(decoder.weight.shape == embedding.weight.shape, "6.4",
           f"the decoder weight has shape {tuple(decoder.weight.shape)}, the embedding {tuple(embedding.weight.shape)}.",
           "an nn.Linear(C, V) weight is already (V, C): no transpose is needed.")
    expect(decoder.weight.data_ptr() == embedding.weight.data_ptr(), "6.4",
           "the decoder's weight is a copy, not the embedding's storage.",
           "assign the Parameter itself (decoder.weight = embedding.weight), not .clone() or .data.copy_().")
    expect(len(list(nn.ModuleList([embedding, decoder]).parameters())) == 2, "6.4",
           "the two modules should hold 2 distinct parameters (the shared weight and the decoder bias).",
           "share the Parameter object, so that optimisers see one tensor.")
    with torch.no_grad():
        embedding.weight[5] += 1.0
    h = torch.randn(2, 4)
    expect(torch.allclose(decoder(h), h @ embedding.weight.T + decoder.bias, atol=1e-6), "6.4",
           "after changing the embedding, the decoder does not compute h @ E.T + b.",
           "both modules must keep using the same Parameter.")
    passed("6.4")
