"""Property-based checks: random valid configs and inputs match transformers; random bad inputs give ValueError."""

import warnings

import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibert import BertConfig, BertModel
from minibert.packed import packed_forward
from parity import randomize_

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
transformers.logging.set_verbosity_error()


@st.composite
def configs(draw):
    heads = draw(st.integers(1, 4))
    return dict(
        vocab_size=draw(st.integers(2, 60)),
        hidden_size=heads * draw(st.integers(1, 8)),
        num_attention_heads=heads,
        num_hidden_layers=draw(st.integers(1, 2)),
        intermediate_size=draw(st.integers(1, 40)),
        max_position_embeddings=draw(st.integers(4, 16)),
        type_vocab_size=draw(st.integers(1, 3)),
        hidden_act=draw(st.sampled_from(["gelu", "gelu_new", "relu", "silu", "gelu_pytorch_tanh"])),
        layer_norm_eps=draw(st.sampled_from([1e-12, 1e-5])),
    )


@st.composite
def batches(draw, cfg):
    B = draw(st.integers(1, 3))
    T = draw(st.integers(1, cfg["max_position_embeddings"]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    types = torch.randint(0, cfg["type_vocab_size"], (B, T), generator=g)
    lengths = [draw(st.integers(0, T)) for _ in range(B)]  # 0: a fully padded row
    mask = torch.tensor([[1] * n + [0] * (T - n) for n in lengths])
    return ids, types, mask


def _pair(cfg: dict, impl: str):
    theirs = randomize_(transformers.BertModel(transformers.BertConfig(**cfg, attn_implementation=impl)).eval())
    ours = BertModel(BertConfig(**cfg, attn_implementation=impl)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@SETTINGS
@given(data=st.data(), impl=st.sampled_from(["eager", "sdpa"]))
def test_random_configs_and_inputs_match_transformers(data, impl):
    cfg = data.draw(configs())
    ids, types, mask = data.draw(batches(cfg))
    ours, theirs = _pair(cfg, impl)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, token_type_ids=types)
        b = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert torch.isfinite(a.last_hidden_state).all()
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.pooler_output, b.pooler_output, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_fully_padded_rows_are_finite_and_equal_to_transformers(impl):
    cfg = dict(vocab_size=50, hidden_size=24, num_attention_heads=3, num_hidden_layers=2, intermediate_size=30)
    ours, theirs = _pair(cfg, impl)
    ids = torch.randint(0, 50, (3, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [0] * 6, [0] * 6])
    with torch.no_grad():
        a, b = ours(ids, mask).last_hidden_state, theirs(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


SMALL = BertConfig(vocab_size=30, hidden_size=8, num_attention_heads=2, num_hidden_layers=1, intermediate_size=10,
                   max_position_embeddings=12, type_vocab_size=2)
MODEL = BertModel(SMALL).eval()


@st.composite
def bad_calls(draw):
    """A call with exactly one thing wrong, and a word naming it."""
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, 12))
    ids = torch.randint(0, 30, (B, T))
    kwargs = {}
    kind = draw(st.sampled_from(["id_high", "id_negative", "float_ids", "bool_ids", "empty", "too_long", "ids_1d",
                                 "type_high", "type_shape", "mask_shape", "mask_value", "mask_float_value",
                                 "not_a_tensor", "position_high"]))
    if kind == "id_high":
        ids[draw(st.integers(0, B - 1)), draw(st.integers(0, T - 1))] = draw(st.integers(30, 10**6))
    elif kind == "id_negative":
        ids[0, 0] = draw(st.integers(-10**6, -1))
    elif kind == "float_ids":
        ids = ids.float()
    elif kind == "bool_ids":
        ids = ids > 3
    elif kind == "empty":
        ids = torch.zeros((draw(st.sampled_from([0, B])), 0 if draw(st.booleans()) else T), dtype=torch.long)
        if ids.numel():
            ids = torch.zeros((0, T), dtype=torch.long)
    elif kind == "too_long":
        ids = torch.randint(0, 30, (B, draw(st.integers(13, 40))))
    elif kind == "ids_1d":
        ids = ids[0]
    elif kind == "type_high":
        kwargs["token_type_ids"] = torch.full((B, T), draw(st.integers(2, 100)))
    elif kind == "type_shape":
        kwargs["token_type_ids"] = torch.zeros((B, T + draw(st.integers(1, 3))), dtype=torch.long)
    elif kind == "mask_shape":
        kwargs["attention_mask"] = torch.ones((B + draw(st.integers(1, 2)), T), dtype=torch.long)
    elif kind == "mask_value":
        mask = torch.ones((B, T), dtype=torch.long)
        mask[0, 0] = draw(st.integers(2, 9) | st.integers(-9, -1))
        kwargs["attention_mask"] = mask
    elif kind == "mask_float_value":
        kwargs["attention_mask"] = torch.full((B, T), draw(st.floats(0.01, 0.99)))
    elif kind == "not_a_tensor":
        ids = ids.tolist()
    elif kind == "position_high":
        kwargs["position_ids"] = torch.full((B, T), draw(st.integers(12, 99)))
    return kind, ids, kwargs


@settings(max_examples=150, deadline=None)
@given(bad_calls())
def test_random_bad_inputs_always_raise_value_error_with_a_message(call):
    kind, ids, kwargs = call
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning instead of an error is not good enough either
        with pytest.raises(ValueError) as err:
            MODEL(ids, **kwargs)
    assert len(str(err.value)) > 20, (kind, str(err.value))


@SETTINGS
@given(data=st.data(), impl=st.sampled_from(["eager", "sdpa"]))
def test_packed_forward_gives_the_same_numbers_on_real_tokens(data, impl):
    cfg = data.draw(configs())
    ids, types, mask = data.draw(batches(cfg))
    mask[:, 0] = 1  # packed_forward packs only when the first token is real (the pooler reads it)
    ours, theirs = _pair(cfg, impl)
    with torch.no_grad():
        fast = packed_forward(ours, ids, mask, types)
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(fast.last_hidden_state[real], ref.last_hidden_state[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.pooler_output, ref.pooler_output, atol=1e-5, rtol=1e-5)
    assert (fast.last_hidden_state[~real] == 0).all()  # padded positions are not computed


def test_packed_forward_falls_back_to_the_model_when_it_cannot_pack():
    cfg = dict(vocab_size=50, hidden_size=24, num_attention_heads=3, num_hidden_layers=2, intermediate_size=30)
    ours, _ = _pair(cfg, "sdpa")
    ids = torch.randint(1, 50, (2, 5), generator=torch.Generator().manual_seed(1))
    left_padded = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # position 0 is padding: the pooler reads it
    nothing_padded = torch.ones(2, 5, dtype=torch.long)
    with torch.no_grad():
        for mask in (left_padded, nothing_padded, None):
            have, want = packed_forward(ours, ids, mask), ours(ids, mask)
            assert torch.equal(have.last_hidden_state, want.last_hidden_state)
            assert torch.equal(have.pooler_output, want.pooler_output)
