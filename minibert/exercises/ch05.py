"""Checks for chapter 05, assembling BERT."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import expect, not_done, passed


def _close(a, b, atol=1e-5) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol)


def check_embed(fn) -> None:
    not_done(fn, "5.1")
    g = torch.Generator().manual_seed(5)
    for B, T, V, P, types, C in ((1, 1, 7, 4, 1, 3), (2, 5, 11, 8, 2, 6), (3, 4, 30, 4, 3, 10)):
        word, position, token_type = (torch.randn(n, C, generator=g) for n in (V, P, types))
        gamma, beta = torch.rand(C, generator=g) + 0.5, torch.randn(C, generator=g)
        ids = torch.randint(0, V, (B, T), generator=g)
        tt = torch.randint(0, types, (B, T), generator=g)
        # Reference: torch's own embedding lookup and layer norm.
        x = F.embedding(ids, word) + F.embedding(torch.arange(T), position)[None] + F.embedding(tt, token_type)
        want = F.layer_norm(x, (C,), gamma, beta, eps=1e-12)
        have = fn(ids, tt, word, position, token_type, gamma, beta, 1e-12)
        expect(isinstance(have, torch.Tensor) and tuple(have.shape) == (B, T, C), "5.1",
               f"for input_ids of shape {(B, T)} and hidden size {C} the result should have shape {(B, T, C)}, got "
               f"{tuple(have.shape) if isinstance(have, torch.Tensor) else type(have).__name__}.",
               "index each table with its ids (word[input_ids], ...) and add the three (B, T, C) results.")
        x_no_type = F.embedding(ids, word) + F.embedding(torch.arange(T), position)[None]
        expect(not _close(have, F.layer_norm(x_no_type, (C,), gamma, beta, eps=1e-12)), "5.1",
               "the result does not depend on the token types.", "add token_type[token_type_ids] to the sum.")
        expect(not _close(have, x), "5.1", "the sum is returned without LayerNorm.",
               "normalise each vector: (x - mean) / sqrt(var + eps) * gamma + beta, mean and var over the last dim.")
        expect(_close(have, want, atol=1e-4), "5.1",
               f"the values differ from word + position + token type followed by LayerNorm "
               f"(max |diff| {float((have.float() - want).abs().max()):.3g}).",
               "positions are 0..T-1 for every row; LayerNorm uses the biased variance (mean of squared deviations) "
               "over the last dimension, then * gamma + beta.")
    passed("5.1")


def check_pool(fn) -> None:
    not_done(fn, "5.2")
    g = torch.Generator().manual_seed(6)
    for B, T, C in ((1, 1, 4), (3, 5, 8), (2, 7, 5)):
        h = torch.randn(B, T, C, generator=g)
        w, b = torch.randn(C, C, generator=g), torch.randn(C, generator=g)
        want = torch.tanh(F.linear(h[:, 0], w, b))  # nn.Linear's rule: x W^T + b
        have = fn(h, w, b)
        expect(isinstance(have, torch.Tensor) and tuple(have.shape) == (B, C), "5.2",
               f"for hidden states of shape {(B, T, C)} the pooled output should have shape {(B, C)}, got "
               f"{tuple(have.shape) if isinstance(have, torch.Tensor) else type(have).__name__}.",
               "take only the first token: hidden_states[:, 0].")
        expect(not _close(have, torch.tanh(h[:, 0] @ w + b)) or torch.allclose(w, w.T), "5.2",
               "the weight is used untransposed.", "nn.Linear computes x @ weight.T + bias.")
        expect(not _close(have, F.linear(h[:, 0], w, b)), "5.2", "tanh is missing.", "apply torch.tanh last.")
        expect(_close(have, want), "5.2", "the values differ from tanh(dense(first token)).",
               "pool the first token (index 0), compute x @ weight.T + bias, then tanh.")
    passed("5.2")


def check_left_padded_positions(fn) -> None:
    not_done(fn, "5.3")
    masks = [[[1, 1, 1]], [[0, 0, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], [[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]]
    for rows in masks:
        mask = torch.tensor(rows)
        want = []
        for row in rows:  # by hand: count real tokens seen so far
            seen, out = 0, []
            for m in row:
                out.append(seen if m else 0)
                seen += m
            want.append(out)
        have = fn(mask)
        expect(isinstance(have, torch.Tensor) and have.shape == mask.shape, "5.3",
               f"for a mask of shape {tuple(mask.shape)} the positions should have the same shape, got "
               f"{tuple(have.shape) if isinstance(have, torch.Tensor) else type(have).__name__}.",
               "return one position per token, a (B, T) tensor.")
        expect(not have.dtype.is_floating_point, "5.3", f"positions must be integers, got dtype {have.dtype}.",
               "finish with .long().")
        expect(have.tolist() == want, "5.3", f"for the mask {rows} expected {want}, got {have.tolist()}.",
               "a running count of real tokens (cumsum along the sequence) minus 1 gives the position of each real "
               "token; set padding positions to 0.")
    passed("5.3")
