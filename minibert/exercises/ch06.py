"""Checks for chapter 06, Linear + softmax heads."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from . import ExerciseError, expect, not_done, passed
from .ch03 import forbidding


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def _no_module(*args, **kwargs):
    raise ExerciseError("Exercise 6.1: the answer calls an nn module (nn.Linear or nn.Tanh, or a model's pooler or "
                        "classifier), which the exercise forbids.\nHint: write both layers with tensor operations: "
                        "the pooler (exercise 5.4), then the classifier's dense layer, each as x @ W.T + b.")


def _no_softmax(*args, **kwargs):
    raise ExerciseError("Exercise 6.2: the answer calls torch's softmax, log_softmax or logsumexp (under some name), "
                        "which the exercise forbids.\nHint: write the log-sum-exp formula yourself with max, exp, "
                        "sum and log: log p = z - m - log(sum(exp(z - m))).")


_SOFTMAX_NAMES = ("softmax", "log_softmax", "logsumexp")


class _RefuseSoftmaxOps(TorchDispatchMode):
    """The softmax family refused where every name of it ends up, at the aten operator: `torch._log_softmax`,
    `torch._softmax`, `torch._safe_softmax` and the like reach it without passing any name `forbidding` replaces.
    `logcumsumexp` is refused too: its last entry is a ready-made log-sum-exp."""

    _OPS = ("_softmax", "_log_softmax", "_safe_softmax", "_masked_softmax", "logsumexp", "logcumsumexp",
            "_logcumsumexp")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self._OPS:
            _no_softmax()
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _without_softmax(fn):
    """torch's softmax, log_softmax and logsumexp refused under every name while the answer runs."""
    targets = [(owner, name) for owner in (torch, F, torch.special, torch.Tensor) for name in _SOFTMAX_NAMES
               if hasattr(owner, name)]
    # the aten operators are refused by _RefuseSoftmaxOps (replacing them here would break its dispatch)
    targets += [(nn.Softmax, "forward"), (nn.LogSoftmax, "forward")]
    own = set(vars(torch.Tensor))  # Tensor methods defined in C live on its base class: remove what we set
    try:
        with forbidding(fn, targets, _no_softmax), _RefuseSoftmaxOps():
            yield
    finally:
        for name in _SOFTMAX_NAMES:
            if name not in own and name in vars(torch.Tensor):
                delattr(torch.Tensor, name)


def check_classify(fn) -> None:
    """6.1: the classifier's eval-mode logits from last_hidden_state, against F.linear and torch.tanh."""
    not_done(fn, "6.1")
    g = torch.Generator().manual_seed(61)
    for B, T, C, n in ((4, 5, 6, 3), (2, 3, 8, 5)):
        h = torch.randn(B, T, C, generator=g)
        wp, bp = torch.randn(C, C, generator=g) / C ** 0.5, torch.randn(C, generator=g)
        w, b = torch.randn(n, C, generator=g), torch.randn(n, generator=g)
        want = F.linear(torch.tanh(F.linear(h[:, 0], wp, bp)), w, b)  # pooler (dense + tanh), then the classifier
        with forbidding(fn, [(nn.Linear, "forward"), (nn.Tanh, "forward")], _no_module):
            have = fn(h.clone(), wp, bp, w, b)
        expect(isinstance(have, torch.Tensor) and have.shape == want.shape, "6.1",
               f"for last_hidden_state {tuple(h.shape)} and {n} labels expected logits of shape {tuple(want.shape)}, "
               f"got {_shape(have)}.", "one row of logits per sequence: pool position 0, then the classifier.")
        if torch.allclose(have, want, atol=1e-5):
            continue
        if torch.allclose(have, F.linear(h[:, 0], w, b), atol=1e-5):
            problem, hint = ("these are the classifier's logits on the raw [CLS] row: the pooler is left out.",
                             "first the pooler (exercise 5.4: dense and tanh on the first token), then the classifier.")
        elif torch.allclose(have, F.linear(F.linear(h[:, 0], wp, bp), w, b), atol=1e-5):
            problem, hint = "the pooler's tanh is missing.", "the pooler is a dense layer followed by tanh."
        elif torch.allclose(have, F.linear(torch.tanh(h[:, 0] @ wp + bp), w, b), atol=1e-5):
            problem, hint = ("the pooler's weight is used as (in, out); nn.Linear stores (out_features, in_features).",
                             "multiply by pooler_weight.T.")
        elif torch.allclose(have, F.linear(torch.tanh(F.linear(h.mean(1), wp, bp)), w, b), atol=1e-5):
            problem, hint = "you pooled the mean of all tokens; BERT's pooler reads position 0 ([CLS]).", "use h[:, 0]."
        else:
            problem, hint = (f"expected {[round(v, 3) for v in want[0].tolist()]} for the first sequence, got "
                             f"{[round(v, 3) for v in have[0].tolist()]}.",
                             "the pooler (dense and tanh on the first token, with pooler_weight and pooler_bias), "
                             "then the classifier's dense layer (weight, bias); nn.Linear computes x @ W.T + b.")
        expect(False, "6.1", problem, hint)
    passed("6.1")


def check_log_softmax(fn) -> None:
    """6.2: log-probabilities over the last dimension, finite for large logits, against float64 torch.log_softmax."""
    not_done(fn, "6.2")
    g = torch.Generator().manual_seed(62)
    cases = [torch.randn(5, generator=g), torch.randn(2, 3, 7, generator=g) * 4, torch.tensor([[0.0, 120.0], [1000.0, 0.0]]),
             torch.tensor([[-1000.0, -1001.0, -1002.0], [1.0, 2.0, 3.0]]), torch.tensor([[3.0, 3.0, 3.0]])]
    for z in cases:
        want = torch.log_softmax(z.double(), -1)  # reference in float64
        with _without_softmax(fn):
            have = fn(z.clone())
        expect(isinstance(have, torch.Tensor) and have.shape == z.shape, "6.2",
               f"for logits of shape {tuple(z.shape)} expected log-probabilities of the same shape, got {_shape(have)}.",
               "reduce over the last dimension with keepdim=True, so that each row keeps its own max and sum.")
        expect(bool(torch.isfinite(have).all()), "6.2",
               f"for logits {z.tolist()} the result contains inf or nan: {have.tolist()}.",
               "do not take the log of a probability (it can underflow to 0) and subtract each row's max before "
               "exp: log p = z - m - log(sum(exp(z - m))).")
        expect(torch.allclose(have.double(), want, atol=1e-4), "6.2",
               f"for logits {z.tolist()} expected {[round(v, 4) for v in want.flatten().tolist()]}, "
               f"got {[round(v, 4) for v in have.flatten().tolist()]}.",
               "m is each row's own largest logit (max over dim=-1, keepdim=True), not the largest of the tensor.")
    passed("6.2")


def check_mlm_accuracy(fn) -> None:
    """6.3: the share of masked positions predicted right, against a loop over the positions."""
    not_done(fn, "6.3")
    g = torch.Generator().manual_seed(63)
    for B, T, V, p in ((3, 6, 11, 0.3), (2, 9, 7, 0.5)):
        logits = torch.randn(B, T, V, generator=g)
        labels = torch.randint(0, V, (B, T), generator=g)
        labels[0, 0] = int(logits[0, 0].argmax())  # at least one masked position right ...
        labels[0, 1] = (int(logits[0, 1].argmax()) + 1) % V  # ... and one wrong
        keep = torch.rand(B, T, generator=g) < p
        keep[0, :2] = True
        labels = torch.where(keep, labels, torch.full_like(labels, -100))
        right = [int(logits[b, t].argmax()) == int(labels[b, t]) for b in range(B) for t in range(T) if labels[b, t] != -100]
        want = sum(right) / len(right)
        have = fn(logits.clone(), labels.clone())
        expect(isinstance(have, float), "6.3", f"expected a Python float, got {type(have).__name__}.",
               "finish with .item() (or float(...)).")
        if abs(have - want) < 1e-6:
            continue
        masked = int((labels != -100).sum())
        if abs(have - sum(right) / labels.numel()) < 1e-6:
            problem, hint = (f"you divided by all {labels.numel()} positions; only the {masked} masked ones count.",
                             "average over the positions where labels != -100.")
        else:
            problem, hint = (f"{sum(right)} of the {masked} masked positions are predicted right: expected "
                             f"{want:.4f}, got {have:.4f}.",
                             "compare logits.argmax(-1) with labels where labels != -100, and average those matches.")
        expect(False, "6.3", problem, hint)
    passed("6.3")


def check_untie(fn) -> None:
    """6.4: after untie, the decoder has its own Parameter with the embedding's values."""
    not_done(fn, "6.4")
    torch.manual_seed(64)
    embedding, decoder = nn.Embedding(11, 4), nn.Linear(4, 11)
    decoder.weight = embedding.weight  # tied, as in BertForMaskedLM
    before, shared = embedding.weight.detach().clone(), embedding.weight
    result = fn(decoder, embedding)
    expect(result is None, "6.4", f"untie should change the decoder in place and return nothing, got {type(result).__name__}.",
           "assign a new Parameter to decoder.weight.")
    expect(embedding.weight is shared, "6.4",
           "the embedding got a new weight; the exercise gives the decoder one and leaves the embedding's Parameter "
           "alone (an optimizer or another module may hold it).", "assign the new Parameter to decoder.weight.")
    expect(isinstance(decoder.weight, nn.Parameter) and decoder.weight.requires_grad, "6.4",
           "the decoder's weight is not a trainable Parameter.", "wrap the copy in nn.Parameter (requires_grad stays True).")
    expect(decoder.weight is not embedding.weight and decoder.weight.data_ptr() != embedding.weight.data_ptr(), "6.4",
           "the decoder still shares the embedding's storage.",
           "give decoder.weight a new nn.Parameter made from a copy of the values (a tensor with storage of its own).")
    expect(torch.equal(decoder.weight.detach(), before) and torch.equal(embedding.weight.detach(), before), "6.4",
           "the weights no longer hold the values they had when tied.", "start the new weight as a copy, not random.")
    with torch.no_grad():
        embedding.weight[5] += 1.0
    expect(torch.equal(decoder.weight.detach(), before), "6.4",
           "changing the embedding still changes the decoder.", "the decoder needs its own storage.")
    expect(len(list(nn.ModuleList([embedding, decoder]).parameters())) == 3, "6.4",
           "the two modules should hold 3 parameters (embedding, decoder weight, decoder bias).",
           "assign the new Parameter to decoder.weight.")
    passed("6.4")
