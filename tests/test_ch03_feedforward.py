"""Chapter 03: activations, BertIntermediate + BertOutput, against transformers and arithmetic by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.bert import modeling_bert as hf

from minibert import ACT2CLS, HIDDEN_ACTS, BertConfig, BertIntermediate, BertOutput, get_activation

torch.set_num_threads(1)


@pytest.mark.parametrize("name", ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"])
def test_activation_matches_transformers(name):
    x = torch.linspace(-8, 8, 4001)
    assert torch.allclose(get_activation(name)(x), ACT2FN[name](x), atol=1e-6, rtol=0)


def test_every_activation_the_config_accepts_is_known():
    assert set(ACT2CLS) == set(HIDDEN_ACTS)


def test_gelu_is_exact_erf_and_tanh_versions_differ():
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    by_hand = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    assert torch.allclose(get_activation("gelu")(x), by_hand, atol=1e-12, rtol=0)
    tanh_by_hand = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert torch.allclose(get_activation("gelu_new")(x), tanh_by_hand, atol=1e-12, rtol=0)
    gap = (by_hand - tanh_by_hand).abs().max().item()
    assert 1e-4 < gap < 5e-4  # different functions, but close: the number chapter 03 prints (4.7e-04)


@pytest.mark.parametrize("name", ["swish!", "GELU", "", "gelu_fast"])
def test_unknown_activation_lists_known_names(name):
    with pytest.raises(ValueError) as info:
        get_activation(name)
    message = str(info.value)
    assert repr(name) in message
    for known in ("gelu", "gelu_new", "relu"):
        assert repr(known) in message


def test_config_with_unknown_activation_is_refused():
    config = BertConfig(hidden_size=12, num_attention_heads=2, intermediate_size=24)
    config.hidden_act = "swish!"
    with pytest.raises(ValueError, match="swish!"):
        BertIntermediate(config)


@pytest.mark.parametrize("hidden,heads,inter,act", [
    (36, 3, 144, "gelu"), (36, 1, 37, "gelu_new"), (24, 2, 96, "relu"), (64, 4, 256, "gelu"),
    (96, 12, 384, "gelu_pytorch_tanh"),
])
@pytest.mark.parametrize("shape", [(2, 7), (1, 1), (3, 5)])
def test_ffn_matches_transformers(hidden, heads, inter, act, shape):
    config = BertConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=inter, hidden_act=act)
    hf_config = transformers.BertConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=inter,
                                        hidden_act=act)
    torch.manual_seed(hidden + inter)
    ours_i, ours_o = BertIntermediate(config).eval(), BertOutput(config).eval()
    hf_i, hf_o = hf.BertIntermediate(hf_config).eval(), hf.BertOutput(hf_config).eval()
    hf_i.load_state_dict(ours_i.state_dict(), strict=True)
    hf_o.load_state_dict(ours_o.state_dict(), strict=True)
    x = torch.randn(*shape, hidden)
    with torch.no_grad():
        h = ours_i(x)
        assert h.shape == (*shape, inter)
        assert torch.allclose(h, hf_i(x), atol=1e-5, rtol=0)
        assert torch.allclose(ours_o(h, x), hf_o(hf_i(x), x), atol=1e-5, rtol=0)


def test_state_dict_keys():
    config = BertConfig(hidden_size=12, num_attention_heads=2, intermediate_size=24)
    assert list(BertIntermediate(config).state_dict()) == ["dense.weight", "dense.bias"]
    assert BertIntermediate(config).dense.weight.shape == (24, 12)  # Linear stores (out, in)


def test_position_wise_permutation_and_independence():
    config = BertConfig(hidden_size=20, num_attention_heads=2, intermediate_size=80)
    torch.manual_seed(0)
    inter, out = BertIntermediate(config).eval(), BertOutput(config).eval()
    ffn = lambda x: out(inter(x), x)  # noqa: E731
    x = torch.randn(2, 9, 20)
    perm = torch.randperm(9)
    with torch.no_grad():
        y = ffn(x)
        assert torch.allclose(ffn(x[:, perm]), y[:, perm], atol=1e-6, rtol=0)
        x2 = x.clone()
        x2[1, 4] += 1.0
        moved = (ffn(x2) - y).abs().amax(-1) > 0
        assert moved.sum().item() == 1 and moved[1, 4]
        alone = torch.stack([ffn(x[0, t:t + 1][None])[0, 0] for t in range(9)])
        assert torch.allclose(alone, y[0], atol=1e-6, rtol=0)


def test_conv1d_kernel_1_equals_linear():
    torch.manual_seed(4)
    conv = nn.Conv1d(36, 144, kernel_size=1)
    lin = nn.Linear(36, 144)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.squeeze(-1))
        lin.bias.copy_(conv.bias)
    x = torch.randn(2, 7, 36)
    assert torch.allclose(conv(x.transpose(1, 2)).transpose(1, 2), lin(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("d,f", [(768, 3072), (1024, 4096), (36, 144), (5, 7)])
def test_ffn_parameter_count_by_hand(d, f):
    config = BertConfig(hidden_size=d, num_attention_heads=1, intermediate_size=f)
    count = sum(p.numel() for p in BertIntermediate(config).parameters())
    count += sum(p.numel() for p in BertOutput(config).dense.parameters())
    assert count == 2 * d * f + f + d


def test_gradients_flow():
    config = BertConfig(hidden_size=12, num_attention_heads=2, intermediate_size=24)
    inter = BertIntermediate(config)
    x = torch.randn(2, 3, 12, requires_grad=True)
    inter(x).sum().backward()
    assert x.grad is not None and inter.dense.weight.grad is not None
    assert torch.isfinite(x.grad).all()


def _gelu_grad(x):
    """The derivative of x * Phi(x) by the product rule, written here independently of the notebook."""
    return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def test_gelu_grad_reference_matches_autograd():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(_gelu_grad(x.detach()), torch.autograd.grad(F.gelu(x).sum(), x)[0], atol=1e-12)


def test_exercise_3_1_rejects_slips_and_autograd():
    from minibert.exercises import ExerciseError, ch03
    ch03.check_gelu_grad(_gelu_grad)
    with pytest.raises(ExerciseError, match="Phi\\(x\\) alone"):
        ch03.check_gelu_grad(lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2))))
    with pytest.raises(ExerciseError, match="factor x"):
        ch03.check_gelu_grad(lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2))) + torch.exp(-x * x / 2) / math.sqrt(2 * math.pi))

    def tanh_grad(x):
        x = x.clone().requires_grad_(True)
        tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))  # by hand
        return torch.autograd.grad(tanh_gelu.sum(), x)[0]

    with pytest.raises(ExerciseError, match="autograd"):
        ch03.check_gelu_grad(tanh_grad)

    def by_backward(x):
        x = x.clone().requires_grad_(True)
        (x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))).sum().backward()  # GELU by hand, derivative by autograd
        return x.grad

    with pytest.raises(ExerciseError, match="autograd"):
        ch03.check_gelu_grad(by_backward)
    x = torch.ones(2, requires_grad=True)
    (x * 2).sum().backward()  # autograd works again after the check
    assert torch.equal(x.grad, torch.full((2,), 2.0))


def test_exercise_3_1_rejects_pytorchs_gelu_under_any_name():
    from minibert.exercises import ExerciseError, ch03

    gelu = F.gelu  # an alias taken before the check

    answers = [lambda x: torch.ops.aten.gelu_backward(torch.ones_like(x), x),  # PyTorch's derivative, by its op
               lambda x: (F.gelu(x + 1e-6) - F.gelu(x - 1e-6)) / 2e-6,  # a finite difference of F.gelu
               lambda x: (gelu(x + 1e-6) - gelu(x - 1e-6)) / 2e-6,
               lambda x: (nn.GELU()(x + 1e-6) - nn.GELU()(x - 1e-6)) / 2e-6,
               lambda x: (torch.ops.aten.gelu(x + 1e-6) - torch.ops.aten.gelu(x - 1e-6)) / 2e-6]
    for answer in answers:
        with pytest.raises(ExerciseError, match="PyTorch's GELU"):
            ch03.check_gelu_grad(answer)
    z = torch.linspace(-3, 3, 7)  # everything is back after the checks
    assert torch.equal(F.gelu(z), gelu(z)) and torch.equal(nn.GELU()(z), torch.ops.aten.gelu(z))
    assert torch.allclose(F.gelu(z), 0.5 * z * (1 + torch.erf(z / math.sqrt(2))), atol=1e-6)


def _conv_to_linear(conv):
    """Reference answer to 3.2, written here: (out, in, k) -> (out, k, in) -> (out, k * in)."""
    out_c, in_c, k = conv.weight.shape
    lin = nn.Linear(k * in_c, out_c, bias=conv.bias is not None)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.permute(0, 2, 1).reshape(out_c, k * in_c))
        if conv.bias is not None:
            lin.bias.copy_(conv.bias)
    return lin


def test_windows_helper_matches_a_loop_by_hand():
    from minibert.exercises import ch03
    x = torch.randn(2, 4, 3)
    win = ch03.windows(x, 3)
    zero = torch.zeros(3)
    for b in range(2):
        for t in range(4):
            parts = [x[b, s] if 0 <= s < 4 else zero for s in (t - 1, t, t + 1)]
            assert torch.equal(win[b, t], torch.cat(parts))


def test_exercise_3_2_accepts_the_reference_and_rejects_wrong_answers():
    from minibert.exercises import ExerciseError, ch03
    ch03.check_conv_to_linear(_conv_to_linear)

    def unpermuted(conv):  # (out, in, k) flattened channel by channel
        lin = _conv_to_linear(conv)
        with torch.no_grad():
            lin.weight.copy_(conv.weight.reshape(conv.out_channels, -1))
        return lin

    def flipped(conv):  # a textbook convolution, kernel flipped
        lin = _conv_to_linear(conv)
        with torch.no_grad():
            lin.weight.copy_(conv.weight.flip(-1).permute(0, 2, 1).reshape(conv.out_channels, -1))
        return lin

    def zero_bias(conv):  # bias=False ignored: a zero bias is still a parameter
        lin = nn.Linear(conv.kernel_size[0] * conv.in_channels, conv.out_channels)
        with torch.no_grad():
            lin.weight.copy_(_conv_to_linear(conv).weight)
            lin.bias.copy_(conv.bias if conv.bias is not None else torch.zeros(conv.out_channels))
        return lin

    class Wrapper(nn.Module):  # a module with a .weight that just calls the convolution
        def __init__(self, conv):
            super().__init__()
            self.conv, self.weight = conv, nn.Parameter(_conv_to_linear(conv).weight.detach())

        def forward(self, x):
            return self.conv(x.transpose(1, 2)).transpose(1, 2)

    def centre_only(conv):  # chapter 03's kernel-1 answer: the middle tap alone
        lin = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(conv.weight[:, :, conv.kernel_size[0] // 2])
            if conv.bias is not None:
                lin.bias.copy_(conv.bias)
        return lin

    for answer, message in ((unpermuted, "channel by channel"), (flipped, "flipped"), (zero_bias, "has a bias"),
                            (Wrapper, "should return an nn.Linear"),
                            (lambda conv: nn.Linear(conv.in_channels, conv.out_channels), "outputs differ"),  # nothing copied
                            (centre_only, "expected \\(out, k \\* in\\)")):
        with pytest.raises(ExerciseError, match=message):
            ch03.check_conv_to_linear(answer)


def test_exercise_3_3_accepts_the_reference_and_rejects_wrong_answers():
    from minibert.exercises import ExerciseError, ch03

    def by_counting(c, f):  # count BERT's FFN with nn.Linear, then add gated units until it is reached
        bert = sum(p.numel() for p in nn.Linear(c, f).parameters()) + sum(p.numel() for p in nn.Linear(f, c).parameters())
        width = 0
        while 3 * c * width < bert:
            width += 1
        return width

    assert by_counting(768, 3072) == 2050  # 2/3 of 3072 is 2048: the biases need two more units
    ch03.check_gated_width(by_counting)
    for answer, message in ((lambda c, f: 2 * f // 3, "ignores the biases"),
                            (lambda c, f: round((2 * c * f + f + c) / (3 * c)), "round up"),
                            (lambda c, f: (2 * c * f + f + c) // (3 * c), "round up"),
                            (lambda c, f: (2 * c * f + f + c) / (3 * c), "whole number"),
                            (lambda c, f: -(-(2 * c * f + f + c) // (2 * c)), "expected a different number")):
        with pytest.raises(ExerciseError, match=message):
            ch03.check_gated_width(answer)


def test_exercise_3_4_needs_one_token_per_call():
    from minibert.exercises import ExerciseError, ch03

    def loop(i, o, x):
        return torch.stack([torch.stack([o.dense(i(x[b, t])) for t in range(x.shape[1])]) for b in range(x.shape[0])])

    ch03.check_token_by_token(loop)
    with pytest.raises(ExerciseError, match="3.4"):
        ch03.check_token_by_token(lambda i, o, x: o(i(x), x))  # adds the residual and LayerNorm
    with pytest.raises(ExerciseError, match="12 tokens in one call"):  # right numbers, no loop
        ch03.check_token_by_token(lambda i, o, x: o.dense(i(x)))
    with pytest.raises(ExerciseError, match="4 tokens in one call"):  # a loop over sentences only
        ch03.check_token_by_token(lambda i, o, x: torch.stack([o.dense(i(x[b])) for b in range(x.shape[0])]))


def test_hidden_states_of_the_wrong_width_are_refused_by_pytorch():
    config = BertConfig(hidden_size=12, num_attention_heads=2, intermediate_size=24)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(6x10 and 12x24\)"):
        BertIntermediate(config)(torch.randn(2, 3, 10))


def test_impossible_sizes_are_refused_by_the_config_check():
    config = BertConfig(hidden_size=12, num_attention_heads=2, intermediate_size=24)
    config.intermediate_size = 0  # assigning a field does not validate; building the module does
    with pytest.raises(ValueError, match="intermediate_size"):
        BertIntermediate(config)
