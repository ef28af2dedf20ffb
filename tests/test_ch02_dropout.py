"""Chapter 02: minibert.Dropout against torch.nn.Dropout and arithmetic."""

import math

import pytest
import torch
from torch import nn

from minibert import Dropout


def both_paths(p):
    layers = []
    for fast in (True, False):
        layer = Dropout(p)
        layer.fast = fast
        layers.append(layer)
    return layers


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(7,), (16, 33), (2, 3, 4, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_seed_same_bits_as_nn_dropout(p, shape, dtype):
    x = torch.randn(shape, dtype=dtype)
    torch.manual_seed(123)
    want = nn.Dropout(p)(x)
    for layer in both_paths(p):
        torch.manual_seed(123)
        assert torch.equal(layer(x), want)


def test_readable_path_is_torch_cpu_recipe():
    # F.dropout on CPU (ATen _dropout_impl): noise = empty_like(x).bernoulli_(1 - p); noise.div_(1 - p); x * noise
    x = torch.randn(50, 40)
    torch.manual_seed(5)
    noise = torch.empty_like(x).bernoulli_(0.7)
    noise.div_(0.7)
    want = x * noise
    _, readable = both_paths(0.3)
    torch.manual_seed(5)
    assert torch.equal(readable(x), want)
    kept = noise != 0
    assert abs(kept.float().mean().item() - 0.7) < 5 * math.sqrt(0.21 / x.numel())


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_statistics_match_theory_and_nn_dropout(p):
    n = 400_000
    x = torch.ones(n)
    torch.manual_seed(0)
    tol = 5 * math.sqrt(p * (1 - p) / n)  # 5 standard deviations of the share kept
    for layer in (*both_paths(p), nn.Dropout(p)):
        y = layer(x)
        kept = y != 0
        assert abs(kept.float().mean().item() - (1 - p)) < tol
        assert abs(y.mean().item() - 1) < tol / (1 - p)
        assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)), rtol=0, atol=1e-6)
        assert torch.equal(y[~kept], torch.zeros_like(y[~kept]))


def test_gradient_flows_through_kept_elements_only():
    x = torch.randn(30, 20, requires_grad=True)
    for layer in both_paths(0.25):
        x.grad = None
        torch.manual_seed(9)
        y = layer(x)
        y.sum().backward()
        kept = (y != 0).float()
        assert (x.grad - kept / 0.75).abs().max().item() < 1e-6


def test_p_zero_is_identity_even_in_training():
    x = torch.randn(5, 6)
    for layer in both_paths(0.0):
        assert layer.training and torch.equal(layer(x), x)
    assert torch.equal(Dropout(0).train()(x), x)


def test_p_one_multiplies_by_zero_like_nn_dropout():
    # finite numbers become (signed) zeros, never NaN from 0 / 0; inf and NaN become NaN, as in nn.Dropout(1.0)
    x = torch.tensor([[1.0, -2.0, float("inf")], [0.5, float("nan"), -1e30]])
    want = nn.Dropout(1.0)(x)
    assert want.isnan().tolist() == [[False, False, True], [False, True, False]]  # PyTorch's own behaviour
    for layer in both_paths(1.0):
        out = layer(x)
        assert out.isnan().tolist() == want.isnan().tolist()
        assert torch.equal(out.nan_to_num(7.0), want.nan_to_num(7.0))
        assert torch.equal(out.signbit(), want.signbit())
    finite = torch.randn(4, 4)
    assert torch.equal(Dropout(1.0)(finite), torch.zeros(4, 4))
    assert not Dropout(1.0)(finite).isnan().any()


def test_eval_mode_is_identity():
    x = torch.randn(8, 8)
    for p in (0.0, 0.1, 0.5, 1.0):
        for layer in both_paths(p):
            assert torch.equal(layer.eval()(x), x)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf"), True, "0.1", None])
def test_invalid_p_is_rejected_with_its_value(bad):
    with pytest.raises(ValueError) as info:
        Dropout(bad)
    assert str(info.value) == f"dropout probability p must be a number in [0, 1], got {bad!r}"


@pytest.mark.parametrize("p", [0, 1, 0.0, 1.0, 0.3])
def test_valid_p_is_stored_as_float(p):
    layer = Dropout(p)
    assert layer.p == float(p) and isinstance(layer.p, float)
    assert repr(layer) == f"Dropout(p={float(p)})"


def test_no_parameters_and_empty_state_dict():
    assert list(Dropout(0.1).state_dict()) == [] == list(nn.Dropout(0.1).state_dict())
