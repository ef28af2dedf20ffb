"""Chapter 05: BertEmbeddings, BertLayer, BertEncoder, BertPooler and BertModel against transformers.BertModel
(same state-dict keys, strict loading, same outputs on both attention paths, in eval and train mode with
dropout 0), the position_ids buffer, the mask built once, and the input checks."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import minibert.model
from minibert import BertConfig, BertModel
from parity import randomize_

torch.set_num_threads(1)

IMPLS = ["eager", "sdpa"]
# A spread of shapes: 1-4 layers, 1-12 heads (head size down to 1), odd hidden and intermediate sizes,
# vocabularies from 50 to 30522, 1-3 token types, every activation BERT checkpoints use.
CONFIGS = {
    "L1-H1-C7": dict(vocab_size=50, hidden_size=7, num_hidden_layers=1, num_attention_heads=1, intermediate_size=13,
                     max_position_embeddings=9, type_vocab_size=1),
    "L3-H5-C30": dict(vocab_size=97, hidden_size=30, num_hidden_layers=3, num_attention_heads=5, intermediate_size=37,
                      max_position_embeddings=16, type_vocab_size=3),
    "L2-H12-C36-gelu_new": dict(vocab_size=1000, hidden_size=36, num_hidden_layers=2, num_attention_heads=12,
                                intermediate_size=61, max_position_embeddings=20, hidden_act="gelu_new"),
    "L2-H11-C33-relu": dict(vocab_size=211, hidden_size=33, num_hidden_layers=2, num_attention_heads=11,
                            intermediate_size=5, max_position_embeddings=12, type_vocab_size=3, hidden_act="relu"),
    "L1-H12-C12-D1-tanh": dict(vocab_size=64, hidden_size=12, num_hidden_layers=1, num_attention_heads=12,
                               intermediate_size=47, max_position_embeddings=10, hidden_act="gelu_pytorch_tanh",
                               layer_norm_eps=1e-5, pad_token_id=3),
    "L4-H4-C64-V30522": dict(vocab_size=30522, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                             intermediate_size=256),
    "L2-H3-C15-silu-nopad": dict(vocab_size=77, hidden_size=15, num_hidden_layers=2, num_attention_heads=3,
                                 intermediate_size=29, max_position_embeddings=8, hidden_act="silu", pad_token_id=None),
}
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _hf_config(cfg: BertConfig, impl: str) -> transformers.BertConfig:
    fields = {k: v for k, v in cfg.to_dict().items() if k not in ("model_type", "attn_implementation")}
    return transformers.BertConfig(**fields, attn_implementation=impl)


def _pair(kw: dict, impl: str, seed: int = 0, add_pooling_layer: bool = True):
    """A transformers.BertModel with every parameter random and non-zero, and a minibert.BertModel holding the
    same weights."""
    cfg = BertConfig(**kw, attn_implementation=impl)
    torch.manual_seed(seed)
    theirs = randomize_(transformers.BertModel(_hf_config(cfg, impl), add_pooling_layer=add_pooling_layer), seed)
    ours = BertModel(cfg, add_pooling_layer=add_pooling_layer)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return cfg, theirs, ours


def _batch(cfg: BertConfig, B: int = 4, T: int = 9, seed: int = 0):
    """ids, mixed token types, and a mask with a full row, padded rows and a fully padded row."""
    T = min(T, cfg.max_position_embeddings)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    types = torch.randint(0, cfg.type_vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T // 2:] = 0
    mask[2, 1:] = 0
    mask[3] = 0
    return ids, types, mask


def _max_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        return max(_max_diff(x, y) for x, y in zip(a, b))
    assert a.shape == b.shape
    return (a - b).abs().max().item()


# ------------------------------------------------------------------------------------------ keys and loading


@pytest.mark.parametrize("add_pooling_layer", [True, False])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_keys_and_shapes_are_transformers_own(name, add_pooling_layer):
    cfg = BertConfig(**CONFIGS[name])
    theirs = transformers.BertModel(_hf_config(cfg, "eager"), add_pooling_layer=add_pooling_layer)
    ours = BertModel(cfg, add_pooling_layer=add_pooling_layer)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
           {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    result = ours.load_state_dict(theirs.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k


def test_bert_base_names_and_parameter_count():
    with torch.device("meta"):
        ours, theirs = BertModel(BertConfig()), transformers.BertModel(transformers.BertConfig())
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    # embeddings + 12 layers + pooler, counted from the shapes by hand
    C, F_, V, P = 768, 3072, 30522, 512
    layer = 4 * (C * C + C) + 2 * C + (C * F_ + F_) + (F_ * C + C) + 2 * C
    assert sum(p.numel() for p in ours.parameters()) == (V + P + 2) * C + 2 * C + 12 * layer + C * C + C == 109_482_240


def test_old_checkpoint_with_position_ids_key_loads_strictly_and_changes_nothing():
    cfg, theirs, ours = _pair({**CONFIGS["L3-H5-C30"], **NO_DROPOUT}, "eager")
    old = dict(theirs.state_dict())
    old["embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings)[None, :]
    old["embeddings.token_type_ids"] = torch.zeros(1, cfg.max_position_embeddings, dtype=torch.long)
    fresh = BertModel(cfg)
    result = fresh.load_state_dict(old, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert "embeddings.position_ids" in old  # the caller's dict is left as it was
    ids, types, mask = _batch(cfg)
    fresh.eval(), theirs.eval()
    assert _max_diff(fresh(ids, mask, types).last_hidden_state,
                     theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state) < 1e-5
    # an unrelated unexpected key is still refused
    with pytest.raises(RuntimeError, match="encoder.layer.9.extra"):
        fresh.load_state_dict({**old, "encoder.layer.9.extra": torch.zeros(1)}, strict=True)


def test_position_ids_is_a_non_persistent_buffer():
    m = BertModel(BertConfig(**CONFIGS["L1-H1-C7"]))
    buffers = dict(m.named_buffers())
    assert torch.equal(buffers["embeddings.position_ids"], torch.arange(9)[None, :])
    assert "embeddings.position_ids" not in m.state_dict()
    assert "embeddings.position_ids" not in dict(m.named_parameters())
    assert m.to(torch.float64).embeddings.position_ids.dtype == torch.long  # integer buffers keep their dtype


# ------------------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train-dropout0"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_outputs_match_transformers(name, impl, train):
    cfg, theirs, ours = _pair({**CONFIGS[name], **NO_DROPOUT}, impl)
    theirs.train(train), ours.train(train)
    ids, types, mask = _batch(cfg)
    a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    b = ours(ids, mask, types, output_hidden_states=True)
    assert _max_diff(a.last_hidden_state, b.last_hidden_state) < 1e-5
    assert _max_diff(a.pooler_output, b.pooler_output) < 1e-5
    assert len(b.hidden_states) == cfg.num_hidden_layers + 1
    assert _max_diff(a.hidden_states, b.hidden_states) < 1e-5
    assert b.attentions is None


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["L1-H1-C7", "L3-H5-C30", "L2-H12-C36-gelu_new", "L1-H12-C12-D1-tanh"])
def test_attention_probabilities_match_transformers_eager(name, impl):
    """output_attentions=True: both paths return transformers' eager probabilities, layer by layer, and each path's
    hidden states equal transformers' same path (its sdpa returns no probabilities, and a fully padded row gives
    zeros there but an average of the values on the eager path)."""
    cfg, theirs, _ = _pair(CONFIGS[name], "eager")
    ours = BertModel(dataclasses.replace(cfg, attn_implementation=impl)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    same_path = transformers.BertModel(_hf_config(cfg, impl)).eval()
    same_path.load_state_dict(theirs.state_dict(), strict=True)
    theirs.eval()
    ids, types, mask = _batch(cfg, seed=1)
    a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, output_attentions=True,
               output_hidden_states=True)
    c = same_path(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    b = ours(ids, mask, types, output_attentions=True, output_hidden_states=True)
    assert len(b.attentions) == cfg.num_hidden_layers
    assert b.attentions[0].shape == (ids.shape[0], cfg.num_attention_heads, ids.shape[1], ids.shape[1])
    assert _max_diff(a.attentions, b.attentions) < 1e-5
    assert _max_diff(c.hidden_states, b.hidden_states) < 1e-5
    # padded keys get no weight in rows that have at least one real token
    assert b.attentions[0][1, :, :, ids.shape[1] // 2:].abs().max().item() == 0.0


def test_bert_base_width_layer_matches_transformers():
    """One BERT-base-sized layer (C=768, 12 heads, F=3072, V=30522): the shapes real checkpoints have."""
    kw = dict(num_hidden_layers=1, **NO_DROPOUT)
    for impl in IMPLS:
        cfg, theirs, ours = _pair(kw, impl, seed=3)
        theirs.eval(), ours.eval()
        ids, types, mask = _batch(cfg, B=4, T=12, seed=3)
        a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
        b = ours(ids, mask, types)
        assert _max_diff(a.last_hidden_state, b.last_hidden_state) < 1e-5
        assert _max_diff(a.pooler_output, b.pooler_output) < 1e-5


@settings(max_examples=12, deadline=None)
@given(layers=st.integers(1, 4), heads=st.integers(1, 12), head_size=st.integers(1, 6), inter=st.integers(1, 40),
       vocab=st.integers(50, 300), types=st.integers(1, 3), impl=st.sampled_from(IMPLS),
       T=st.integers(1, 10), seed=st.integers(0, 2**16))
def test_random_configs_match_transformers(layers, heads, head_size, inter, vocab, types, impl, T, seed):
    kw = dict(vocab_size=vocab, hidden_size=heads * head_size, num_hidden_layers=layers, num_attention_heads=heads,
              intermediate_size=inter, max_position_embeddings=10, type_vocab_size=types)
    cfg, theirs, ours = _pair(kw, impl, seed=seed)
    theirs.eval(), ours.eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (2, T), generator=g)
    tt = torch.randint(0, types, (2, T), generator=g)
    mask = (torch.rand(2, T, generator=g) > 0.3).long()
    mask[:, 0] = 1
    a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=tt)
    b = ours(ids, mask, tt)
    assert _max_diff(a.last_hidden_state, b.last_hidden_state) < 1e-5
    assert _max_diff(a.pooler_output, b.pooler_output) < 1e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("impl", IMPLS)
def test_other_dtypes_match_transformers(impl, dtype, tol):
    """The additive mask follows the weights' dtype (its most negative value), as in transformers."""
    cfg, theirs, ours = _pair(CONFIGS["L3-H5-C30"], impl)
    theirs.to(dtype).eval(), ours.to(dtype).eval()
    ids, types, mask = _batch(cfg)
    a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    b = ours(ids, mask, types).last_hidden_state
    assert b.dtype == dtype and _max_diff(a.float(), b.float()) < tol


def test_defaults_are_zero_token_types_and_positions_from_zero():
    cfg, theirs, ours = _pair(CONFIGS["L3-H5-C30"], "sdpa")
    ours.eval(), theirs.eval()
    ids, _, _ = _batch(cfg)
    T = ids.shape[1]
    default = ours(ids).last_hidden_state
    explicit = ours(ids, torch.ones_like(ids), torch.zeros_like(ids), torch.arange(T)[None, :]).last_hidden_state
    assert torch.equal(default, explicit)
    assert _max_diff(default, theirs(input_ids=ids).last_hidden_state) < 1e-5


def test_explicit_position_ids_match_transformers():
    """Left padding with positions counted from the first real token, (B, T) and (1, T) position_ids."""
    cfg, theirs, ours = _pair(CONFIGS["L2-H12-C36-gelu_new"], "eager")
    ours.eval(), theirs.eval()
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    ids = torch.randint(1, cfg.vocab_size, mask.shape, generator=torch.Generator().manual_seed(4))
    pos = ((mask.cumsum(-1) - 1) * mask).long()
    assert _max_diff(ours(ids, mask, position_ids=pos).last_hidden_state,
                     theirs(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state) < 1e-5
    shifted = torch.arange(3, 9)[None, :]
    assert _max_diff(ours(ids, mask, position_ids=shifted).last_hidden_state,
                     theirs(input_ids=ids, attention_mask=mask, position_ids=shifted).last_hidden_state) < 1e-5


def test_boolean_and_float_masks_equal_integer_masks():
    cfg, _, ours = _pair(CONFIGS["L3-H5-C30"], "eager")
    ours.eval()
    ids, types, mask = _batch(cfg)
    want = ours(ids, mask, types).last_hidden_state
    assert torch.equal(ours(ids, mask.bool(), types).last_hidden_state, want)
    assert torch.equal(ours(ids, mask.float(), types).last_hidden_state, want)


def test_no_pooler():
    cfg, theirs, ours = _pair(CONFIGS["L3-H5-C30"], "sdpa", add_pooling_layer=False)
    assert ours.pooler is None
    ids, types, mask = _batch(cfg)
    out = ours.eval()(ids, mask, types)
    assert out.pooler_output is None
    assert _max_diff(out.last_hidden_state,
                     theirs.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state) < 1e-5


def test_pooler_is_tanh_of_dense_on_first_token():
    cfg, _, ours = _pair(CONFIGS["L1-H1-C7"], "eager")
    ours.eval()
    ids, types, mask = _batch(cfg)
    out = ours(ids, mask, types)
    dense = ours.pooler.dense
    want = torch.tanh(F.linear(out.last_hidden_state[:, 0], dense.weight, dense.bias))
    assert torch.allclose(out.pooler_output, want, atol=1e-6)


def test_embeddings_are_the_sum_of_three_lookups_then_layer_norm():
    cfg = BertConfig(**CONFIGS["L3-H5-C30"])
    emb = BertModel(cfg).embeddings.eval()
    ids, types, _ = _batch(cfg)
    T = ids.shape[1]
    x = emb.word_embeddings.weight[ids] + emb.position_embeddings.weight[:T][None] + emb.token_type_embeddings.weight[types]
    want = F.layer_norm(x, (cfg.hidden_size,), emb.LayerNorm.weight, emb.LayerNorm.bias, cfg.layer_norm_eps)
    assert torch.allclose(emb(ids, types), want, atol=1e-6)


def test_padding_row_of_word_embeddings_starts_at_zero():
    m = BertModel(BertConfig(**CONFIGS["L1-H12-C12-D1-tanh"]))  # pad_token_id=3
    w = m.embeddings.word_embeddings.weight
    assert w[3].abs().max().item() == 0.0 and w[4].abs().max().item() > 0


@pytest.mark.parametrize("impl", IMPLS)
def test_mask_is_built_once_and_shared_by_every_layer(impl, monkeypatch):
    cfg = BertConfig(**CONFIGS["L4-H4-C64-V30522"], attn_implementation=impl)
    model = BertModel(cfg).eval()
    calls = []
    real = minibert.model.extended_attention_mask
    monkeypatch.setattr(minibert.model, "extended_attention_mask", lambda *a, **k: calls.append(1) or real(*a, **k))
    seen = []
    for layer in model.encoder.layer:
        layer.register_forward_pre_hook(lambda mod, args: seen.append(args[1]))
    ids, types, mask = _batch(cfg)
    model(ids, mask, types)
    assert len(seen) == 4 and all(s is seen[0] for s in seen)
    assert seen[0].shape == (ids.shape[0], 1, 1, ids.shape[1])
    if impl == "sdpa":
        assert seen[0].dtype == torch.bool and not calls
        assert torch.equal(seen[0][:, 0, 0], mask.bool())
    else:
        assert len(calls) == 1 and seen[0].dtype == torch.float32
        assert torch.equal(seen[0][:, 0, 0] == 0, mask.bool())
        assert (seen[0][:, 0, 0][mask == 0] == torch.finfo(torch.float32).min).all()


def test_word_order_comes_only_from_positions():
    cfg, _, model = _pair(CONFIGS["L3-H5-C30"], "sdpa")
    model.eval()
    ids = torch.arange(1, 7)[None, :]
    perm = torch.tensor([0, 3, 1, 4, 2, 5])
    with torch.no_grad():
        assert not torch.allclose(model(ids[:, perm]).last_hidden_state, model(ids).last_hidden_state[:, perm], atol=1e-4)
        model.embeddings.position_embeddings.weight.zero_()
        assert torch.allclose(model(ids[:, perm]).last_hidden_state, model(ids).last_hidden_state[:, perm], atol=1e-5)


# ------------------------------------------------------------------------------------------ bad input

_SMALL = dict(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=9,
              max_position_embeddings=6, type_vocab_size=2)
_OK = torch.tensor([[1, 2, 3]])
BAD = {
    "id too large": (dict(input_ids=torch.tensor([[1, 50, 3]])), ["50", "vocab_size=50"]),
    "negative id": (dict(input_ids=torch.tensor([[1, -1, 3]])), ["-1", "vocab_size=50"]),
    "too long": (dict(input_ids=torch.ones(1, 7, dtype=torch.long)), ["7", "max_position_embeddings=6"]),
    "token type too large": (dict(input_ids=_OK, token_type_ids=torch.tensor([[0, 2, 1]])), ["2", "type_vocab_size=2"]),
    "negative token type": (dict(input_ids=_OK, token_type_ids=torch.tensor([[0, -3, 1]])), ["-3", "type_vocab_size"]),
    "token type shape": (dict(input_ids=_OK, token_type_ids=torch.tensor([[0, 1]])), ["(1, 2)", "(1, 3)"]),
    "float token types": (dict(input_ids=_OK, token_type_ids=torch.zeros(1, 3)), ["token_type_ids", "float32"]),
    "mask shape": (dict(input_ids=_OK, attention_mask=torch.ones(1, 4)), ["(1, 4)", "(1, 3)"]),
    "mask 3-d": (dict(input_ids=_OK, attention_mask=torch.ones(1, 1, 3)), ["(1, 1, 3)", "(1, 3)"]),
    "mask not a tensor": (dict(input_ids=_OK, attention_mask=[[1, 1, 1]]), ["attention_mask", "list"]),
    "mask value 2": (dict(input_ids=_OK, attention_mask=torch.tensor([[1, 2, 1]])), ["2", "0", "1"]),
    "mask value 0.5": (dict(input_ids=_OK, attention_mask=torch.tensor([[1.0, 0.5, 1.0]])), ["0.5"]),
    "float ids": (dict(input_ids=torch.tensor([[1.0, 2.0]])), ["input_ids", "float32"]),
    "bool ids": (dict(input_ids=torch.tensor([[True, False]])), ["input_ids", "bool"]),
    "1-d ids": (dict(input_ids=torch.tensor([1, 2, 3])), ["(3,)", "batch"]),
    "list ids": (dict(input_ids=[[1, 2, 3]]), ["input_ids", "list"]),
    "empty batch": (dict(input_ids=torch.zeros(0, 3, dtype=torch.long)), ["(0, 3)"]),
    "empty sequence": (dict(input_ids=torch.zeros(2, 0, dtype=torch.long)), ["(2, 0)"]),
    "position too large": (dict(input_ids=_OK, position_ids=torch.tensor([[0, 1, 6]])), ["6", "max_position_embeddings=6"]),
    "position shape": (dict(input_ids=_OK, position_ids=torch.tensor([[0, 1]])), ["(1, 2)", "(1, 3)"]),
    "position not a tensor": (dict(input_ids=_OK, position_ids=[0, 1, 2]), ["position_ids", "list"]),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_value_error_naming_value_and_limit(case, impl):
    model = BertModel(BertConfig(**_SMALL, attn_implementation=impl))
    kwargs, parts = BAD[case]
    with pytest.raises(ValueError) as info:  # a ValueError, not an IndexError from inside the embedding lookup
        model(**kwargs)
    for part in parts:
        assert part in str(info.value), (part, str(info.value))


@pytest.mark.parametrize("built,changed", [("sdpa", "eager"), ("eager", "sdpa")])
def test_attention_path_is_fixed_when_the_model_is_built(monkeypatch, built, changed):
    # Changing config.attn_implementation after construction does not switch the layers' path (chapter 05 says
    # so); the outputs still match transformers' model of the path it was built with.
    cfg, theirs, ours = _pair(CONFIGS["L3-H5-C30"], built)
    theirs.eval(), ours.eval()
    ids, types, mask = _batch(cfg)
    want = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    ours.config.attn_implementation = changed
    calls = []
    real_sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real_sdpa(*a, **k))
    with torch.no_grad():
        got = ours(ids, mask, types).last_hidden_state
    assert len(calls) == (cfg.num_hidden_layers if built == "sdpa" else 0)
    assert _max_diff(got[mask.bool()], want[mask.bool()]) < 1e-5


# ------------------------------------------------------------------------------------------ the core stays plain


def test_core_classes_carry_no_packing_path():
    # The classes a learner reads in chapter 05 hold BERT's computation only: the fast path over packed real
    # tokens belongs to the speed chapter. No packing argument in a forward signature, no packing code in the module.
    import inspect

    for cls in (minibert.model.BertLayer, minibert.model.BertEncoder, BertModel):
        params = set(inspect.signature(cls.forward).parameters)
        assert not {"skip_padding", "token_index", "padded_shape"} & params, (cls.__name__, sorted(params))
    source = inspect.getsource(minibert.model)
    for word in ("skip_padding", "index_copy", "index_select", "nonzero", "token_index", "packed"):
        assert word not in source, f"minibert/model.py still mentions {word!r}"
