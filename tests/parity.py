"""The one helper every parity test uses: fill every parameter with random non-zero values, then compare.

A fresh model (transformers' or minibert's) has zero biases and LayerNorms that are the identity
(weight 1, bias 0). Compared in that state, a minibert that forgot a bias, or a LayerNorm's weight,
would still match. `randomize_` draws every parameter, each element at least 0.05 away from zero, and
LayerNorm weights around 1 but never exactly 1, so every parameter changes the output.
"""

from __future__ import annotations

import torch
from torch import nn


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter of `model` in place, tied parameters once: |value| in [0.05, 0.25] with a random
    sign; LayerNorm weights 1 + such a value. Returns the model. Deterministic for a given seed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # a tied parameter is listed once
            size = torch.rand(p.shape, generator=g, dtype=torch.float64) * 0.2 + 0.05  # [0.05, 0.25)
            sign = torch.randint(0, 2, p.shape, generator=g, dtype=torch.float64) * 2 - 1
            value = sign * size
            if name.endswith("LayerNorm.weight"):
                value = 1 + value  # a scale near 1, never exactly 1
            p.copy_(value.to(p.dtype))
    return model


def random_pair(theirs: nn.Module, ours: nn.Module, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Randomize transformers' model, then load its weights into minibert's with strict=True (same keys)."""
    randomize_(theirs, seed)
    result = ours.load_state_dict(theirs.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return theirs, ours


def tensors_of(out) -> list[torch.Tensor]:
    """Every tensor of an output (ModelOutput, tuple, dict, tensor), flattened in order; None skipped."""
    if out is None:
        return []
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for item in out for t in tensors_of(item)]


def max_diff(a, b) -> float:
    """The largest |a - b| over every tensor of two outputs, which must have the same structure and shapes."""
    xs, ys = tensors_of(a), tensors_of(b)
    assert len(xs) == len(ys), f"{len(xs)} tensors against {len(ys)}"
    for x, y in zip(xs, ys):
        assert x.shape == y.shape, f"shape {tuple(x.shape)} against {tuple(y.shape)}"
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(xs, ys))


def neutral_parameters(model: nn.Module) -> list[tuple[str, float]]:
    """(name, neutral value) for every bias (0) and LayerNorm weight (1) of a model, tied ones once: the
    parameters whose omission a parity test must see."""
    out = []
    for name, _ in model.named_parameters():
        if name.endswith("bias"):
            out.append((name, 0.0))
        elif name.endswith("LayerNorm.weight"):
            out.append((name, 1.0))
    return out


class without:
    """Context manager: the model runs as if the parameter `name` were left out of the forward pass (a bias
    not added, a LayerNorm not scaled): the parameter holds its neutral value, and is restored afterwards."""

    def __init__(self, model: nn.Module, name: str, neutral: float):
        self.param = model.get_parameter(name)
        self.neutral = neutral

    def __enter__(self):
        self.saved = self.param.detach().clone()
        with torch.no_grad():
            self.param.fill_(self.neutral)

    def __exit__(self, *exc):
        with torch.no_grad():
            self.param.copy_(self.saved)
