"""Checks for chapter 03, the feed-forward network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ExerciseError, expect, not_done, passed


def _as_tensor(value, exercise: str, what: str) -> torch.Tensor:
    expect(isinstance(value, torch.Tensor), exercise, f"{what} should return a tensor, got {type(value).__name__}.",
           "return the result of tensor arithmetic, not a number or a list.")
    return value


def _no_autograd(*args, **kwargs):
    raise ExerciseError("Exercise 3.1: the answer uses autograd, which the exercise forbids.\n"
                        "Hint: differentiate x * Phi(x) by hand with the product rule: Phi(x) + x * phi(x).")


def check_gelu_grad(fn) -> None:
    not_done(fn, "3.1")
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    want = torch.autograd.grad(F.gelu(xg).sum(), xg)[0]  # PyTorch's own derivative of the exact GELU
    saved = torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward
    torch.autograd.grad = torch.autograd.backward = torch.Tensor.backward = _no_autograd
    try:
        have = fn(x.clone())
    finally:
        torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward = saved
    have = _as_tensor(have, "3.1", "gelu_grad(x)")
    expect(have.shape == x.shape, "3.1", f"gelu_grad(x) changed the shape: {tuple(x.shape)} -> {tuple(have.shape)}.",
           "the derivative works element by element.")
    have = have.detach().to(torch.float64)
    err = (have - want).abs().max().item()
    if err > 1e-6:
        cdf = 0.5 * (1 + torch.erf(x / 2 ** 0.5))
        pdf = torch.exp(-0.5 * x * x) / (2 * torch.pi) ** 0.5
        expect((have - cdf).abs().max().item() > 1e-6, "3.1", "this is Phi(x) alone: the product rule's second "
               "term is missing.", "d/dx [x * Phi(x)] = Phi(x) + x * phi(x), with phi(x) = exp(-x^2/2) / sqrt(2 pi).")
        expect((have - (cdf + pdf)).abs().max().item() > 1e-6, "3.1", "this is Phi(x) + phi(x): the second term "
               "needs the factor x.", "d/dx [x * Phi(x)] = Phi(x) + x * phi(x).")
        xt = x.clone().requires_grad_(True)
        tanh_grad = torch.autograd.grad(F.gelu(xt, approximate="tanh").sum(), xt)[0]
        expect((have - tanh_grad).abs().max().item() > 1e-6, "3.1", "this is the derivative of the tanh "
               "approximation, not of the exact GELU.", "use Phi(x) = 0.5 * (1 + erf(x / sqrt(2))).")
        worst = x[(have - want).abs().argmax()].item()
        expect(False, "3.1", f"gelu_grad differs from the derivative of the exact GELU by {err:.2e} (worst at "
               f"x = {worst:.2f}).", "Phi(x) + x * phi(x); check the sqrt(2) inside erf and the 1/sqrt(2 pi) in phi.")
    passed("3.1")


def check_conv_to_linear(fn) -> None:
    not_done(fn, "3.2")
    gen = torch.Generator().manual_seed(31)
    for c_in, c_out, bias in ((36, 144, True), (5, 3, True), (8, 8, False)):
        conv = nn.Conv1d(c_in, c_out, kernel_size=1, bias=bias)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
            if bias:
                conv.bias.copy_(torch.randn(c_out, generator=gen))
        lin = fn(conv)
        expect(isinstance(lin, nn.Module) and hasattr(lin, "weight"), "3.2",
               f"conv_to_linear should return an nn.Linear, got {type(lin).__name__}.",
               "create nn.Linear(conv.in_channels, conv.out_channels) and copy the weights into it.")
        expect(tuple(lin.weight.shape) == (c_out, c_in), "3.2",
               f"the Linear weight has shape {tuple(lin.weight.shape)}, expected (out, in) = {(c_out, c_in)}.",
               "Conv1d.weight is (out, in, 1); drop the last axis with .squeeze(-1) or [:, :, 0].")
        x = torch.randn(2, 7, c_in, generator=gen)  # (B, T, C)
        with torch.no_grad():
            want = conv(x.transpose(1, 2)).transpose(1, 2)  # the convolution on (B, C, T), back to (B, T, C)
            have = lin(x)
        err = (have - want).abs().max().item()
        expect(err < 1e-5, "3.2", f"for Conv1d({c_in}, {c_out}, bias={bias}) the outputs differ by {err:.3g}.",
               "copy conv.weight[:, :, 0] into lin.weight and conv.bias into lin.bias (inside torch.no_grad()); "
               "a Linear created without bias=... has a random bias of its own.")
    passed("3.2")


def check_large_ffn(per_layer, total) -> None:
    not_done(per_layer, "3.3")
    not_done(total, "3.3")
    d, f, layers = 1024, 4096, 24
    want = sum(p.numel() for p in nn.Linear(d, f).parameters()) + sum(p.numel() for p in nn.Linear(f, d).parameters())
    expect(per_layer != 2 * d * f, "3.3", f"{per_layer:,} counts the weights but not the biases.",
           "each Linear also has one bias per output: f for the first, d for the second.")
    expect(per_layer != want + 2 * d, "3.3", f"{per_layer:,} includes the LayerNorm's 2d parameters.",
           "count only the two Linear layers: 2*d*f + f + d.")
    expect(per_layer == want, "3.3", f"large_ffn = {per_layer:,}, expected a different number.",
           "two Linear layers: d*f + f and f*d + d, with d = 1024 and f = 4096.")
    expect(total == layers * want, "3.3", f"large_ffn_all = {total:,}, expected {layers} times the per-layer count.",
           "BERT-large has 24 layers, each with its own FFN.")
    passed("3.3")


def check_token_by_token(fn) -> None:
    not_done(fn, "3.4")
    from minibert.addnorm import BertOutput
    from minibert.config import BertConfig
    from minibert.feedforward import BertIntermediate

    config = BertConfig(hidden_size=12, num_attention_heads=2, intermediate_size=20)
    torch.manual_seed(34)
    intermediate, output = BertIntermediate(config).eval(), BertOutput(config).eval()
    x = torch.randn(3, 4, 12)
    sizes = []  # tokens per call of intermediate: the per-token loop gives one C-vector each time
    hook = intermediate.register_forward_hook(lambda mod, inp, out: sizes.append(inp[0].numel() // inp[0].shape[-1]))
    try:
        with torch.no_grad():
            have = fn(intermediate, output, x)
    finally:
        hook.remove()
        # the batched FFN without residual and LayerNorm, written with F.linear and F.gelu
        want = F.linear(F.gelu(F.linear(x, intermediate.dense.weight, intermediate.dense.bias)),
                        output.dense.weight, output.dense.bias)
    have = _as_tensor(have, "3.4", "ffn_token_by_token")
    expect(len(sizes) > 0, "3.4", "intermediate was never called.",
           "compute output.dense(intermediate(x[b, t])) for each token.")
    expect(max(sizes) == 1, "3.4", f"intermediate got {max(sizes)} tokens in one call; the exercise asks for one token "
           f"at a time.", "loop over b and t and pass x[b, t], a single C-vector, to intermediate.")
    expect(len(sizes) == x.shape[0] * x.shape[1], "3.4", f"intermediate was called {len(sizes)} times for "
           f"{x.shape[0] * x.shape[1]} tokens.", "call it exactly once per token: B * T calls.")
    expect(tuple(have.shape) == tuple(want.shape), "3.4",
           f"the result has shape {tuple(have.shape)}, expected (B, T, C) = {tuple(want.shape)}.",
           "collect one C-vector per token and torch.stack them back into (B, T, C).")
    err = (have - want).abs().max().item()
    expect(err < 1e-5, "3.4", f"the result differs from the batched FFN by {err:.3g}.",
           "apply output.dense(intermediate(x[b, t])) to each token; do not add x or apply the LayerNorm.")
    passed("3.4")
