"""Checks for chapter 03, the feed-forward network."""

from __future__ import annotations

import contextlib
import math

import torch
import torch._dynamo  # noqa: F401  (imported before any patching below: importing it later, patched, can fail)
import torch.nn.functional as F
from torch import nn

from . import ExerciseError, expect, not_done, passed


def _as_tensor(value, exercise: str, what: str) -> torch.Tensor:
    expect(isinstance(value, torch.Tensor), exercise, f"{what} should return a tensor, got {type(value).__name__}.",
           "return the result of tensor arithmetic, not a number or a list.")
    return value


@contextlib.contextmanager
def forbidding(fn, targets, refuse, named=()):
    """While the block runs, every (owner, name) in `targets` is replaced by `refuse`, and so is every global or
    closure variable of `fn` that holds one of the originals (an alias imported before the check, such as
    `sdpa = F.scaled_dot_product_attention`) or a function whose __name__ is in `named` (a helper the notebook
    defined earlier). Everything is put back afterwards, also when the answer fails."""
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    originals = {id(obj) for _, _, obj in saved}

    def banned(value) -> bool:
        return id(value) in originals or (callable(value) and getattr(value, "__name__", None) in named)

    space = getattr(fn, "__globals__", {})
    swapped = [(space, key, value) for key, value in list(space.items()) if banned(value)]  # (namespace, key, original)
    cells = [c for c in (getattr(fn, "__closure__", None) or ()) if banned(_cell_value(c))]
    cell_values = [c.cell_contents for c in cells]
    try:
        for owner, name, _ in saved:
            setattr(owner, name, refuse)
        for space, key, _ in swapped:
            space[key] = refuse
        for c in cells:
            c.cell_contents = refuse
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        for space, key, value in swapped:
            space[key] = value
        for c, value in zip(cells, cell_values):
            c.cell_contents = value


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _no_autograd(*args, **kwargs):
    raise ExerciseError("Exercise 3.1: the answer uses autograd, which the exercise forbids.\n"
                        "Hint: differentiate x * Phi(x) by hand with the product rule: Phi(x) + x * phi(x).")


def _no_gelu(*args, **kwargs):
    raise ExerciseError("Exercise 3.1: the answer calls PyTorch's GELU (F.gelu, nn.GELU or the aten gelu/gelu_backward "
                        "operators), which the exercise forbids.\nHint: write Phi(x) with torch.erf and phi(x) with "
                        "torch.exp: the derivative is Phi(x) + x * phi(x).")


# PyTorch's own GELU and its derivative, under every name a learner can reach them by
_GELU_TARGETS = [(F, "gelu"), (torch._C._nn, "gelu"), (torch.ops.aten, "gelu"), (torch.ops.aten, "gelu_backward"),
                 (nn.GELU, "forward")]


def check_gelu_grad(fn) -> None:
    not_done(fn, "3.1")
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    want = torch.autograd.grad(F.gelu(xg).sum(), xg)[0]  # PyTorch's own derivative of the exact GELU
    autograd = [(torch.autograd, "grad"), (torch.autograd, "backward"), (torch.Tensor, "backward")]
    with forbidding(fn, autograd, _no_autograd), forbidding(fn, _GELU_TARGETS, _no_gelu):
        have = fn(x.clone())
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


def windows(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, C) -> (B, T, k*C): token t's vector is [x[t - k//2] | ... | x[t] | ... | x[t + k//2]], zeros past the
    ends. Written with F.pad and Tensor.unfold, independently of any convolution."""
    padded = F.pad(x, (0, 0, k // 2, k // 2))  # (B, T + k - 1, C): k//2 zero tokens at each end
    return padded.unfold(1, k, 1).transpose(-1, -2).flatten(-2)  # (B, T, C, k) -> (B, T, k, C) -> (B, T, k*C)


def check_conv_to_linear(fn) -> None:
    not_done(fn, "3.2")
    gen = torch.Generator().manual_seed(31)
    for c_in, c_out, k, bias in ((36, 144, 1, True), (5, 3, 3, True), (4, 6, 3, False), (3, 2, 5, True)):
        conv = nn.Conv1d(c_in, c_out, kernel_size=k, padding=k // 2, bias=bias)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
            if bias:
                conv.bias.copy_(torch.randn(c_out, generator=gen))
        what = f"for Conv1d({c_in}, {c_out}, kernel_size={k}, bias={bias})"
        lin = fn(conv)
        expect(isinstance(lin, nn.Linear), "3.2", f"conv_to_linear should return an nn.Linear, got "
               f"{type(lin).__name__}.", "create nn.Linear(k * conv.in_channels, conv.out_channels, bias=...) and "
               "copy the weights into it.")
        expect(tuple(lin.weight.shape) == (c_out, k * c_in), "3.2", f"{what} the Linear weight has shape "
               f"{tuple(lin.weight.shape)}, expected (out, k * in) = {(c_out, k * c_in)}.",
               "the Linear reads the whole window of k tokens, k * in numbers, not one token.")
        expect((lin.bias is None) == (not bias), "3.2", f"{what} the Linear " +
               ("has a bias, though the convolution has none." if not bias else "has no bias, but the convolution has one."),
               "pass bias=conv.bias is not None to nn.Linear; a zero bias is still a bias (a parameter that trains).")
        x = torch.randn(2, 7, c_in, generator=gen)  # (B, T, C)
        with torch.no_grad():
            want = conv(x.transpose(1, 2)).transpose(1, 2)  # the convolution on (B, C, T), back to (B, T, C)
            have = lin(windows(x, k))
        err = (have - want).abs().max().item()
        if err > 1e-5 and k > 1:
            w = conv.weight.detach()
            expect(not torch.equal(lin.weight.detach(), w.reshape(c_out, -1)), "3.2",
                   f"{what} the weight is conv.weight reshaped as it is, channel by channel (in, k), but the window "
                   f"is token by token: [x[t-{k // 2}] | ... | x[t+{k // 2}]].",
                   "permute conv.weight from (out, in, k) to (out, k, in) before reshaping to (out, k * in).")
            expect(not torch.equal(lin.weight.detach(), w.flip(-1).permute(0, 2, 1).reshape(c_out, -1)), "3.2",
                   f"{what} the kernel is flipped: PyTorch's Conv1d does not flip it (it computes a "
                   f"cross-correlation).", f"tap j of the kernel multiplies token t + j - {k // 2}: keep the order.")
        expect(err < 1e-5, "3.2", f"{what} the outputs differ by {err:.3g}.",
               "lin.weight = conv.weight permuted to (out, k, in) and reshaped to (out, k * in); lin.bias = conv.bias; "
               "copy inside torch.no_grad().")
    passed("3.2")


def _linear_params(n_in: int, n_out: int, bias: bool) -> int:
    with torch.device("meta"):  # shapes only, no memory
        return sum(p.numel() for p in nn.Linear(n_in, n_out, bias=bias).parameters())


def check_gated_width(fn) -> None:
    not_done(fn, "3.3")
    # (8, 32): 2CF + F + C = 552 = 3C * 23 exactly, so "floor + 1" overshoots there
    for c, f in ((768, 3072), (1024, 4096), (12, 48), (36, 144), (8, 32)):
        bert = _linear_params(c, f, True) + _linear_params(f, c, True)
        per_unit = 2 * _linear_params(c, 1, False) + _linear_params(1, c, False)  # gate, up, down: one unit's share
        want = -(-bert // per_unit)  # the smallest whole width whose count reaches BERT's
        have = fn(c, f)
        expect(isinstance(have, int) and not isinstance(have, bool), "3.3", f"gated_width({c}, {f}) should be a "
               f"whole number (int), got {have!r}.", "a layer has a whole number of units: round with math.ceil.")
        if have != want:
            expect(have not in (2 * f // 3, math.ceil(2 * f / 3)), "3.3", f"gated_width({c}, {f}) = {have}: 2/3 of "
                   f"F ignores the biases of BERT's FFN (F + C = {f + c} parameters).",
                   "BERT's FFN has 2CF + F + C parameters; the gated one 3CF'.")
            expect(have != want - 1, "3.3", f"gated_width({c}, {f}) = {have}: at that width the gated FFN has "
                   f"{3 * c * have:,} parameters, fewer than BERT's {bert:,}.", "round up (math.ceil), not down or to "
                   "the nearest.")
            expect(have != want + 1, "3.3", f"gated_width({c}, {f}) = {have}: at width {want} the gated FFN "
                   f"already has {3 * c * want:,} parameters, exactly BERT's {bert:,}.",
                   "when the division is exact, ceil gives the quotient itself; floor + 1 overshoots.")
            expect(False, "3.3", f"gated_width({c}, {f}) = {have}, expected a different number.",
                   "solve 3 * C * F' >= 2 * C * F + F + C for the smallest whole F'.")
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
