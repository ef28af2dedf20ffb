"""Chapter 01: minibert.LayerNorm, BertSelfOutput and BertOutput against torch.nn and transformers."""

import pytest
import torch
import transformers
from torch import nn
from transformers.models.bert import modeling_bert as hf

from minibert import BertConfig, BertOutput, BertSelfOutput, LayerNorm
from minibert.addnorm import BertAddNorm

SHAPES = [(8,), (3, 8), (2, 5, 8), (2, 3, 4, 8)]


def random_layer_norm(eps, generator):
    reference = nn.LayerNorm(8, eps=eps)
    with torch.no_grad():
        reference.weight.copy_(torch.randn(8, generator=generator))
        reference.bias.copy_(torch.randn(8, generator=generator))
    return reference


@pytest.mark.parametrize("eps", [1e-12, 1e-5])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fast", [True, False])
def test_layer_norm_matches_torch(eps, shape, fast):
    g = torch.Generator().manual_seed(0)
    reference = random_layer_norm(eps, g)
    ours = LayerNorm(8, eps=eps)
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.fast = fast
    x = torch.randn(shape, generator=g) * 3 + 1
    assert (ours(x) - reference(x)).abs().max().item() < 1e-6


def test_layer_norm_by_hand_arithmetic():
    # one vector, computed by hand: mean 2.5, biased variance 1.25
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    want = (x - 2.5) / (1.25 + 1e-12) ** 0.5
    for fast in (True, False):
        ln = LayerNorm(4)
        ln.fast = fast
        assert (ln(x) - want).abs().max().item() < 1e-6


def test_fast_and_readable_paths_agree_with_gradients():
    g = torch.Generator().manual_seed(1)
    ln = LayerNorm(16, eps=1e-12)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(16, generator=g))
        ln.bias.copy_(torch.randn(16, generator=g))
    x = torch.randn(4, 7, 16, generator=g) * 5 - 2
    outs, grads = [], []
    for fast in (True, False):
        ln.fast = fast
        ln.zero_grad()
        xi = x.clone().requires_grad_(True)
        y = ln(xi)
        (y * torch.arange(16.0)).sum().backward()
        outs.append(y.detach())
        grads.append((xi.grad, ln.weight.grad.clone(), ln.bias.grad.clone()))
    assert (outs[0] - outs[1]).abs().max().item() < 1e-6
    for a, b in zip(*grads):
        assert (a - b).abs().max().item() < 1e-4


def test_layer_norm_constant_vector_gives_bias_not_nan():
    for fast in (True, False):
        ln = LayerNorm(6, eps=1e-12)
        ln.fast = fast
        with torch.no_grad():
            ln.bias.copy_(torch.arange(6.0))
        out = ln(torch.full((2, 6), 3.5))
        assert torch.isfinite(out).all()
        assert torch.equal(out, torch.arange(6.0).expand(2, 6))


def test_layer_norm_state_dict_round_trips_with_torch():
    ours = LayerNorm(8, eps=1e-12)
    assert list(ours.state_dict()) == list(nn.LayerNorm(8).state_dict()) == ["weight", "bias"]
    nn.LayerNorm(8).load_state_dict(ours.state_dict(), strict=True)
    assert "eps=1e-12" in repr(ours)


@pytest.mark.parametrize("make, message", [
    (lambda: LayerNorm(0), "hidden_size must be a positive integer, got 0"),
    (lambda: LayerNorm(True), "hidden_size must be a positive integer, got True"),
    (lambda: LayerNorm(2.5), "hidden_size must be a positive integer, got 2.5"),
    (lambda: LayerNorm(8, eps=0.0), "eps must be a positive number, got 0.0"),
    (lambda: LayerNorm(8, eps=-1e-5), "eps must be a positive number, got -1e-05"),
    (lambda: LayerNorm(8)(torch.zeros(2, 6)), "LayerNorm expects a last dimension of 8, got shape (2, 6)"),
])
def test_layer_norm_errors_name_the_value(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def configs(hidden, inter):
    ours = BertConfig(hidden_size=hidden, num_attention_heads=4, intermediate_size=inter)
    theirs = transformers.BertConfig(hidden_size=hidden, num_attention_heads=4, intermediate_size=inter)
    return ours, theirs


@pytest.mark.parametrize("hidden, inter", [(32, 128), (48, 96), (16, 16)])
@pytest.mark.parametrize("which", ["self_output", "output"])
def test_add_norm_matches_transformers(hidden, inter, which):
    torch.manual_seed(0)
    ours_cfg, hf_cfg = configs(hidden, inter)
    ours_cls, hf_cls, width = {"self_output": (BertSelfOutput, hf.BertSelfOutput, hidden),
                               "output": (BertOutput, hf.BertOutput, inter)}[which]
    theirs = hf_cls(hf_cfg).eval()
    with torch.no_grad():  # random LayerNorm parameters, so the comparison is not only ones and zeros
        theirs.LayerNorm.weight.normal_()
        theirs.LayerNorm.bias.normal_()
    ours = ours_cls(ours_cfg).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.dense.in_features == width and ours.dense.out_features == hidden
    for B, T in [(1, 1), (2, 7), (3, 16)]:
        h, residual = torch.randn(B, T, width) * 2, torch.randn(B, T, hidden) * 3
        with torch.no_grad():
            assert (ours(h, residual) - theirs(h, residual)).abs().max().item() < 1e-6


@pytest.mark.parametrize("ours_cls, hf_cls", [(BertSelfOutput, hf.BertSelfOutput), (BertOutput, hf.BertOutput)])
def test_state_dicts_have_transformers_keys_and_shapes(ours_cls, hf_cls):
    ours_cfg, hf_cfg = configs(32, 128)
    ours, theirs = ours_cls(ours_cfg), hf_cls(hf_cfg)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict(), strict=True)


def test_training_mode_matches_transformers_under_the_same_seed():
    ours_cfg, hf_cfg = configs(32, 128)
    theirs = hf.BertOutput(hf_cfg).train()
    ours = BertOutput(ours_cfg).train()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    h, residual = torch.randn(2, 5, 128), torch.randn(2, 5, 32)
    torch.manual_seed(3)
    a = ours(h, residual)
    torch.manual_seed(3)
    b = theirs(h, residual)
    assert (a - b).abs().max().item() < 1e-6


def test_the_two_modules_differ_only_in_input_width():
    base = BertConfig()
    a, b = BertSelfOutput(base), BertOutput(base)
    assert isinstance(a, BertAddNorm) and isinstance(b, BertAddNorm)
    shapes_a = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    shapes_b = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    assert shapes_a.pop("dense.weight") == (768, 768) and shapes_b.pop("dense.weight") == (768, 3072)
    assert shapes_a == shapes_b
    assert sum(p.numel() for p in a.parameters()) == 768 * 768 + 768 + 2 * 768
    assert sum(p.numel() for p in b.parameters()) == 3072 * 768 + 768 + 2 * 768
    assert a.LayerNorm.eps == 1e-12 and a.dropout.p == 0.1


def test_output_is_post_ln_and_unit_scaled():
    cfg = BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=128)
    m = BertSelfOutput(cfg).eval()
    h, x = torch.randn(3, 4, 32) * 10, torch.randn(3, 4, 32) * 5 + 3
    with torch.no_grad():
        out = m(h, x)
        s = m.dense(h) + x
        mean = s.mean(-1, keepdim=True)
        want = (s - mean) / ((s - mean).pow(2).mean(-1, keepdim=True) + 1e-12).sqrt()
    assert (out - want).abs().max().item() < 1e-5
    assert out.mean(-1).abs().max().item() < 1e-5


def test_add_norm_rejects_wrong_residual_width():
    m = BertOutput(BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=128))
    with pytest.raises(ValueError, match=r"input_tensor must end in hidden_size=32, got shape \(2, 5, 16\)"):
        m(torch.randn(2, 5, 128), torch.randn(2, 5, 16))
