"""Chapter 04: masks, BertSelfAttention and BertAttention against F.scaled_dot_product_attention,
torch.nn.MultiheadAttention and transformers, for both attention paths."""

import math

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers.models.bert import modeling_bert as hf

from minibert import BertAttention, BertConfig, BertSelfAttention, extended_attention_mask

torch.set_num_threads(1)

# (hidden, heads): one head, two heads, BERT's 12 heads, odd widths
SHAPES = [(36, 1), (36, 2), (36, 12), (24, 12), (10, 2), (48, 3)]
IMPLS = ["eager", "sdpa"]


def _config(hidden, heads, impl, **kw):
    return BertConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=2 * hidden,
                      attn_implementation=impl, **kw)


def _padding(B, T, seed=0):
    """(B, T) 0/1 masks with lengths from T down to 1 (never all padding)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    return (torch.arange(T)[None, :] < lengths[:, None]).long()


def _mask_for(impl, keep):
    """The mask as BertModel (and transformers) hands it to each path."""
    return extended_attention_mask(keep) if impl == "eager" else keep.bool()[:, None, None, :]


def _by_hand(sa, x, keep):
    """Attention with plain loops over heads, from the Linear weights: an independent reference."""
    B, T, C = x.shape
    H = sa.num_attention_heads
    D = C // H
    q, k, v = F.linear(x, sa.query.weight, sa.query.bias), F.linear(x, sa.key.weight, sa.key.bias), \
        F.linear(x, sa.value.weight, sa.value.bias)
    out = torch.empty(B, T, C)
    for b in range(B):
        for h in range(H):
            cols = slice(h * D, (h + 1) * D)
            s = q[b, :, cols] @ k[b, :, cols].T / math.sqrt(D)  # (T, T)
            s = s.masked_fill(keep[b][None, :] == 0, float("-inf"))
            out[b, :, cols] = s.softmax(-1) @ v[b, :, cols]
    return out


# ---------------------------------------------------------------- the mask helper

def test_extended_attention_mask_values_and_shape():
    keep = torch.tensor([[1, 1, 0], [1, 0, 0]])
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        m = extended_attention_mask(keep, dtype)
        assert m.shape == (2, 1, 1, 3) and m.dtype == dtype
        lowest = torch.finfo(dtype).min
        assert m[0, 0, 0].tolist() == [0.0, 0.0, lowest]
        assert m[1, 0, 0].tolist() == [0.0, lowest, lowest]


def test_extended_attention_mask_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(2, 1, 1, 3\)"):
        extended_attention_mask(torch.ones(2, 1, 1, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_padded_keys_get_zero_weight_and_all_padding_is_finite(dtype):
    keep = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]])
    scores = torch.randn(2, 2, 4, 4).to(dtype)
    probs = (scores + extended_attention_mask(keep, dtype)).float().softmax(-1)
    assert (probs[0, :, :, 3] == 0).all()
    assert torch.isfinite(probs).all()
    assert torch.allclose(probs[1], torch.full((2, 4, 4), 0.25))


# ---------------------------------------------------------------- the modules

@pytest.mark.parametrize("hidden,heads", SHAPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("padded", [False, True])
def test_self_attention_matches_loops_by_hand(hidden, heads, impl, padded):
    torch.manual_seed(hidden * heads)
    sa = BertSelfAttention(_config(hidden, heads, impl)).eval()
    B, T = 3, 7
    x = torch.randn(B, T, hidden)
    keep = _padding(B, T, hidden) if padded else torch.ones(B, T, dtype=torch.long)
    with torch.no_grad():
        context, probs = sa(x, _mask_for(impl, keep))
        assert context.shape == (B, T, hidden)
        assert torch.allclose(context, _by_hand(sa, x, keep), atol=1e-5, rtol=0)
    assert (probs is None) == (impl == "sdpa")


@pytest.mark.parametrize("hidden,heads", SHAPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("B,T", [(2, 6), (1, 1), (4, 3)])
def test_attention_matches_transformers(hidden, heads, impl, padded, B, T):
    torch.manual_seed(hidden + heads + T)
    ours = BertAttention(_config(hidden, heads, impl)).eval()
    hf_config = transformers.BertConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=2 * hidden)
    hf_config._attn_implementation = impl
    theirs = hf.BertAttention(hf_config).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(B, T, hidden)
    keep = _padding(B, T, B + T) if padded else torch.ones(B, T, dtype=torch.long)
    mask = _mask_for(impl, keep) if padded else None
    with torch.no_grad():
        assert torch.allclose(ours(x, mask)[0], theirs(x, attention_mask=mask)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_all_padding_sequence_matches_transformers_and_is_finite(impl):
    torch.manual_seed(1)
    ours = BertAttention(_config(36, 3, impl)).eval()
    hf_config = transformers.BertConfig(hidden_size=36, num_attention_heads=3, intermediate_size=72)
    hf_config._attn_implementation = impl
    theirs = hf.BertAttention(hf_config).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    keep = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    mask = _mask_for(impl, keep)
    x = torch.randn(3, 4, 36)
    with torch.no_grad():
        a, b = ours(x, mask)[0], theirs(x, attention_mask=mask)[0]
        context, _ = ours.self(x, mask)
    assert torch.isfinite(a).all()
    assert torch.allclose(a, b, atol=1e-5, rtol=0)
    if impl == "eager":  # all keys masked equally: a plain average of the values
        v = ours.self.value(x[2])  # (T, C)
        assert torch.allclose(context[2], v.mean(0).expand(4, 36), atol=1e-5)
    else:  # SDPA with a boolean mask and no key to keep returns zeros
        assert (context[2] == 0).all()


@pytest.mark.parametrize("hidden,heads", SHAPES)
def test_eager_and_sdpa_agree_and_probabilities_are_returned(hidden, heads):
    torch.manual_seed(7)
    attn = BertAttention(_config(hidden, heads, "eager")).eval()
    x = torch.randn(3, 5, hidden)
    keep = _padding(3, 5, 3)
    with torch.no_grad():
        eager, probs = attn(x, _mask_for("eager", keep), output_attentions=True)
        attn.self.attn_implementation = "sdpa"
        sdpa, none = attn(x, _mask_for("sdpa", keep))
        sdpa_float, _ = attn(x, _mask_for("eager", keep))  # SDPA also takes the additive mask
        asked, probs2 = attn(x, _mask_for("sdpa", keep), output_attentions=True)  # SDPA's output, eager's probabilities
    assert none is None
    assert torch.allclose(eager, sdpa, atol=1e-5, rtol=0) and torch.allclose(eager, sdpa_float, atol=1e-5, rtol=0)
    assert probs.shape == (3, heads, 5, 5) and torch.allclose(probs.sum(-1), torch.ones(3, heads, 5), atol=1e-5)
    assert torch.allclose(asked, eager, atol=1e-5, rtol=0) and torch.allclose(probs2, probs, atol=1e-6)
    padded_keys = (keep == 0)[:, None, None, :].expand_as(probs)
    assert (probs[padded_keys] == 0).all()


@pytest.mark.parametrize("hidden,heads", SHAPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_torch_multihead_attention(hidden, heads, impl):
    torch.manual_seed(11)
    mha = nn.MultiheadAttention(hidden, heads, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
    sa = BertSelfAttention(_config(hidden, heads, impl)).eval()
    with torch.no_grad():
        for lin, W, b in zip((sa.query, sa.key, sa.value), mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)):
            lin.weight.copy_(W)
            lin.bias.copy_(b)
    x = torch.randn(3, 6, hidden)
    keep = _padding(3, 6, 5)
    with torch.no_grad():
        want, want_probs = mha(x, x, x, key_padding_mask=keep == 0, average_attn_weights=False)
        context, _ = sa(x, _mask_for(impl, keep))
        _, probs = sa(x, _mask_for("eager", keep), output_attentions=True)
    assert torch.allclose(mha.out_proj(context), want, atol=1e-5, rtol=0)
    assert torch.allclose(probs, want_probs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("heads", [1, 2, 12])
def test_matches_scaled_dot_product_attention(heads):
    torch.manual_seed(heads)
    sa = BertSelfAttention(_config(36, heads, "eager")).eval()
    x = torch.randn(2, 5, 36)
    keep = _padding(2, 5, 9)
    with torch.no_grad():
        q, k, v = (t.view(2, 5, heads, 36 // heads).transpose(1, 2) for t in (sa.query(x), sa.key(x), sa.value(x)))
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep.bool()[:, None, None, :])
        ours, _ = sa(x, extended_attention_mask(keep))
    assert torch.allclose(ours, ref.transpose(1, 2).reshape(2, 5, 36), atol=1e-5, rtol=0)


def test_split_heads_slices_the_hidden_dimension():
    sa = BertSelfAttention(_config(12, 3, "eager"))
    x = torch.randn(2, 4, 12)
    s = sa.split_heads(x)
    assert s.shape == (2, 3, 4, 4)
    for h in range(3):
        assert torch.equal(s[:, h], x[:, :, 4 * h:4 * h + 4])


@pytest.mark.parametrize("hidden", [768, 36])
def test_parameter_count_does_not_depend_on_heads(hidden):
    counts = {sum(p.numel() for p in BertAttention(_config(hidden, h, "sdpa")).parameters())
              for h in (1, 2, 12)}
    assert counts == {4 * (hidden * hidden + hidden) + 2 * hidden}


def test_state_dict_keys_match_transformers():
    ours = BertAttention(_config(36, 3, "sdpa"))
    theirs = hf.BertAttention(transformers.BertConfig(hidden_size=36, num_attention_heads=3, intermediate_size=72))
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_on_probabilities_only_in_training(impl):
    torch.manual_seed(0)
    sa = BertSelfAttention(_config(36, 3, impl, attention_probs_dropout_prob=0.5))
    x = torch.randn(2, 5, 36)
    sa.eval()
    a, b = sa(x)[0], sa(x)[0]
    assert torch.equal(a, b)
    sa.train()
    assert not torch.allclose(sa(x)[0], a)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mask_shape", [(3, 6), (3, 1, 1, 5), (2, 1, 1, 6), (3, 6, 6)])
def test_mask_that_does_not_fit_names_both_shapes(impl, mask_shape):
    sa = BertSelfAttention(_config(36, 3, impl))
    x = torch.randn(3, 6, 36)
    with pytest.raises(ValueError) as info:
        sa(x, torch.zeros(mask_shape))
    assert str(tuple(mask_shape)) in str(info.value) and "(3, 6, 36)" in str(info.value)


def test_hidden_states_of_the_wrong_width_are_refused():
    sa = BertSelfAttention(_config(36, 3, "sdpa"))
    with pytest.raises(ValueError, match=r"\(2, 5, 24\)"):
        sa(torch.randn(2, 5, 24))


def test_heads_that_do_not_divide_hidden_are_refused():
    config = _config(36, 3, "sdpa")
    config.num_attention_heads = 5
    with pytest.raises(ValueError, match="36"):
        BertSelfAttention(config)


def _attention_by_hand(q, k, v, mask=None, causal=False, fill=None):
    """A learner's attention with the usual knobs for wrong answers: `fill` is the value masked scores get."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    fill = torch.finfo(scores.dtype).min if fill is None else fill
    if causal:
        scores = scores.masked_fill(~torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(), fill)
    if mask is not None:
        scores = scores.masked_fill(~mask, fill)
    return scores.softmax(-1) @ v


def test_exercise_4_1_accepts_the_reference_and_rejects_shortcuts_and_slips():
    from minibert.exercises import ExerciseError, ch04

    ch04.check_attention(_attention_by_hand)  # the reference answer passes
    with pytest.raises(ExerciseError, match="not scaled"):
        ch04.check_attention(lambda q, k, v, mask=None, causal=False: (q @ k.transpose(-1, -2)).softmax(-1) @ v)
    with pytest.raises(ExerciseError, match="NaN or inf"):  # -inf turns an all-padding row into NaN
        ch04.check_attention(lambda q, k, v, mask=None, causal=False:
                             _attention_by_hand(q, k, v, mask, causal, fill=float("-inf")))
    with pytest.raises(ExerciseError, match="forbids"):  # the fused function is refused during the check
        ch04.check_attention(lambda q, k, v, mask=None, causal=False:
                             F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal))
    assert F.scaled_dot_product_attention(torch.ones(1, 1, 2), torch.ones(1, 1, 2), torch.ones(1, 1, 2)).shape \
        == (1, 1, 2)  # and restored afterwards

    def future(q, k, v, mask=None, causal=False):  # the triangle the wrong way round: queries see later keys
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if causal:
            scores = scores.masked_fill(torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(-1),
                                        torch.finfo(scores.dtype).min)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return scores.softmax(-1) @ v

    with pytest.raises(ExerciseError, match="wrong way"):
        ch04.check_attention(future)
    with pytest.raises(ExerciseError, match="4.1"):  # causal ignored
        ch04.check_attention(lambda q, k, v, mask=None, causal=False: _attention_by_hand(q, k, v, mask))


def _split_qkv(qkv, num_heads):
    B, T, C3 = qkv.shape
    return tuple(t.reshape(B, T, num_heads, -1).transpose(1, 2) for t in qkv.split(C3 // 3, dim=-1))


def test_exercise_4_2_accepts_the_reference_and_rejects_mixed_heads():
    from minibert.exercises import ExerciseError, ch04

    ch04.check_split_qkv(_split_qkv)
    with pytest.raises(ExerciseError, match="per head"):  # [q_h k_h v_h] per head instead of [q | k | v]
        ch04.check_split_qkv(lambda qkv, h: qkv.view(*qkv.shape[:2], h, -1).transpose(1, 2).chunk(3, dim=-1))
    with pytest.raises(ExerciseError, match="mixes tokens"):  # a direct view to (B, H, T, D)
        ch04.check_split_qkv(lambda qkv, h: tuple(t.reshape(t.shape[0], h, t.shape[1], -1)
                                                  for t in qkv.split(qkv.shape[-1] // 3, dim=-1)))
    with pytest.raises(ExerciseError, match="shape"):  # heads left in dimension 2
        ch04.check_split_qkv(lambda qkv, h: tuple(t.reshape(*t.shape[:2], h, -1)
                                                  for t in qkv.split(qkv.shape[-1] // 3, dim=-1)))


def test_exercise_4_1_refuses_the_chapters_own_attention_and_the_fused_op_under_any_name():
    import minibert.attention
    from minibert.exercises import ExerciseError, ch04

    sdpa = F.scaled_dot_product_attention  # an alias taken before the check
    probs = minibert.attention.attention_probs

    def both_masks(q, k, causal, mask):
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril() if causal else None
        return mask if keep is None else (keep if mask is None else mask & keep)

    answers = [  # the chapter's export with the masks combined; the aten operator; the alias; the export by module
        lambda q, k, v, mask=None, causal=False: minibert.attention.attention_probs(q, k, both_masks(q, k, causal, mask)) @ v,
        lambda q, k, v, mask=None, causal=False: probs(q, k, both_masks(q, k, causal, mask)) @ v,
        lambda q, k, v, mask=None, causal=False: torch.ops.aten.scaled_dot_product_attention(
            q, k, v, attn_mask=both_masks(q, k, causal, mask)),
        lambda q, k, v, mask=None, causal=False: sdpa(q, k, v, attn_mask=both_masks(q, k, causal, mask))]
    for answer in answers:
        with pytest.raises(ExerciseError, match="forbids"):
            ch04.check_attention(answer)
    q = torch.randn(1, 3, 4)  # everything is back afterwards
    assert minibert.attention.attention_probs is probs and F.scaled_dot_product_attention is sdpa
    assert torch.allclose(torch.ops.aten.scaled_dot_product_attention(q, q, q), probs(q, q) @ q, atol=1e-6)


def _prune_head(attention, h):
    """Reference answer to 4.3, written here: drop head h's D rows of query/key/value and D columns of W^O."""
    sa = attention.self
    D = sa.attention_head_size
    _keep_only(attention, [i for i in range(sa.all_head_size) if i // D != h])


def _keep_only(attention, keep):
    """Shrink query/key/value to the output dimensions `keep` and W^O to those input columns; one head fewer."""
    sa = attention.self
    with torch.no_grad():
        for name in ("query", "key", "value"):
            old = getattr(sa, name)
            new = nn.Linear(old.in_features, len(keep))
            new.weight.copy_(old.weight[keep])
            new.bias.copy_(old.bias[keep])
            setattr(sa, name, new)
        old = attention.output.dense
        new = nn.Linear(len(keep), old.out_features)
        new.weight.copy_(old.weight[:, keep])
        new.bias.copy_(old.bias)
        attention.output.dense = new
    sa.num_attention_heads -= 1
    sa.all_head_size -= sa.attention_head_size


def test_pruning_by_hand_equals_silencing_the_head():
    torch.manual_seed(0)
    attention = BertAttention(_config(12, 3, "eager")).eval()
    _fill_random(attention, 1)
    x = torch.randn(2, 4, 12)
    with torch.no_grad():
        heads = attention.self(x)[0].view(2, 4, 3, 4)  # (B, T, H, D)
        heads[:, :, 1] = 0  # head 1 silenced
        want = attention.output(heads.reshape(2, 4, 12), x)
    _prune_head(attention, 1)
    with torch.no_grad():
        assert torch.allclose(attention(x)[0], want, atol=1e-5)


def test_exercise_4_3_accepts_the_reference_and_rejects_wrong_answers():
    from minibert.exercises import ExerciseError, ch04
    ch04.check_prune_head(_prune_head)

    def zeroed(attention, h):  # silences the head but keeps its parameters
        D = attention.self.attention_head_size
        with torch.no_grad():
            for lin in (attention.self.query, attention.self.key, attention.self.value):
                lin.weight[h * D:(h + 1) * D] = 0
                lin.bias[h * D:(h + 1) * D] = 0

    def counts_not_updated(attention, h):  # the layers shrink, num_attention_heads stays
        _prune_head(attention, h)
        attention.self.num_attention_heads += 1
        attention.self.all_head_size += attention.self.attention_head_size

    def strided(attention, h):  # takes every H-th dimension as head h
        sa, H = attention.self, attention.self.num_attention_heads
        drop = set(range(h, sa.all_head_size, H))
        _keep_only(attention, [i for i in range(sa.all_head_size) if i not in drop])

    def output_dense_kept(attention, h):  # W^O left at full width
        dense = attention.output.dense
        _prune_head(attention, h)
        attention.output.dense = dense

    for answer, message in ((zeroed, "removed 0 parameters"), (counts_not_updated, "fails to run"),
                            (strided, "owns dimensions h\\*D"), (output_dense_kept, "removed")):
        with pytest.raises(ExerciseError, match=message):
            ch04.check_prune_head(answer)


def _probs_bytes(batch, tokens, config, dtype):
    """Reference answer to 4.4, written here: B * H * T * T numbers of finfo(dtype).bits / 8 bytes."""
    return batch * config.num_attention_heads * tokens * tokens * torch.finfo(dtype).bits // 8


def test_exercise_4_4_accepts_the_reference_and_rejects_wrong_answers():
    from minibert.exercises import ExerciseError, ch04
    assert 12 * 65 * 65 > 65 * 768 and not 12 * 64 * 64 > 64 * 768  # BERT-base: the tables win from T = D + 1
    ch04.check_probs_memory(_probs_bytes, 65)
    for answer, t_cross, message in (
            (lambda b, t, c, d: b * c.num_attention_heads * t * t, 65, "numbers, not bytes"),
            (lambda b, t, c, d: b * t * t * torch.finfo(d).bits // 8, 65, "one T x T table per sequence"),
            (lambda b, t, c, d: b * c.num_attention_heads * t * t * 4, 65, "4 bytes per number"),
            (_probs_bytes, 64, "same size, not larger"),
            (_probs_bytes, 769, "expected a different number")):
        with pytest.raises(ExerciseError, match=message):
            ch04.check_probs_memory(answer, t_cross)


# ---------------------------------------------------------------- sdpa + output_attentions + an all-padding row

def _fill_random(module, seed):
    """Every parameter random and non-zero (fresh modules have zero biases and identity LayerNorms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + 0.1)


def _hf_attention(hidden, heads, impl):
    cfg = transformers.BertConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=2 * hidden)
    cfg._attn_implementation = impl
    return hf.BertAttention(cfg).eval()


@pytest.mark.parametrize("hidden,heads", [(36, 3), (24, 12), (10, 2)])
@pytest.mark.parametrize("impl", IMPLS)
def test_all_padding_row_with_output_attentions_matches_transformers(hidden, heads, impl):
    """output_attentions=True on each path, a batch with an all-padding sequence: the output is transformers' for
    the same call (SDPA's zeros on the sdpa path, the eager average on the eager path), bit for bit, and the
    probabilities are transformers' eager probabilities."""
    ours = BertAttention(_config(hidden, heads, impl)).eval()
    _fill_random(ours, hidden + heads)
    theirs, their_eager = _hf_attention(hidden, heads, impl), _hf_attention(hidden, heads, "eager")
    theirs.load_state_dict(ours.state_dict(), strict=True)
    their_eager.load_state_dict(ours.state_dict(), strict=True)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    mask = _mask_for(impl, keep)  # as transformers' BertModel hands it to this path
    x = torch.randn(3, 5, hidden, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out, probs = ours(x, mask, output_attentions=True)
        plain, _ = ours(x, mask)
        want = theirs(x, attention_mask=mask, output_attentions=True)[0]
        want_probs = their_eager(x, attention_mask=extended_attention_mask(keep))[1]
        eager_out = their_eager(x, attention_mask=extended_attention_mask(keep))[0]
    assert torch.equal(out, want) and torch.equal(out, plain)  # asking for probabilities changes nothing
    assert torch.allclose(probs, want_probs, atol=1e-6, rtol=0)
    row_gap = (want[2] - eager_out[2]).abs().max().item()
    assert (row_gap > 1e-3) == (impl == "sdpa")  # the two paths really differ on that row, and we follow each
    assert torch.isfinite(out).all() and torch.isfinite(probs).all()


def test_sdpa_output_does_not_depend_on_output_attentions_in_transformers_either():
    """What the test above relies on: transformers' sdpa path ignores output_attentions for its output."""
    theirs = _hf_attention(36, 3, "sdpa")
    _fill_random(theirs, 9)
    keep = torch.tensor([[1, 1, 0], [0, 0, 0]]).bool()[:, None, None, :]
    x = torch.randn(2, 3, 36, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, none = theirs(x, attention_mask=keep, output_attentions=True)
        b, _ = theirs(x, attention_mask=keep)
    assert none is None and torch.equal(a, b) and (theirs.self(x, attention_mask=keep)[0][1] == 0).all()


def _model_pair(impl, seed=0):
    from minibert import BertModel
    kw = dict(vocab_size=40, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48,
              max_position_embeddings=16)
    theirs = transformers.BertModel(transformers.BertConfig(**kw, attn_implementation=impl)).eval()
    _fill_random(theirs, seed)
    ours = BertModel(BertConfig(**kw, attn_implementation=impl)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def test_bert_model_eager_all_padding_row_with_output_attentions_matches_transformers():
    ours, theirs = _model_pair("eager")
    ids = torch.randint(0, 40, (3, 6), generator=torch.Generator().manual_seed(2))
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        a, b = ours(ids, keep, output_attentions=True), theirs(input_ids=ids, attention_mask=keep, output_attentions=True)
    assert (a.last_hidden_state - b.last_hidden_state).abs().max().item() < 1e-5
    assert max((x - y).abs().max().item() for x, y in zip(a.attentions, b.attentions)) < 1e-6


def test_bert_model_sdpa_all_padding_row_with_output_attentions_matches_transformers():
    """Asking for attentions must not change the sdpa path's numbers: BertModel hands its sdpa layers the boolean
    mask whatever output_attentions is, so an all-padding row gives transformers' SDPA result (zeros before the
    output projection), not the average of the values that the additive mask would give."""
    ours, theirs = _model_pair("sdpa")
    ids = torch.randint(0, 40, (3, 6), generator=torch.Generator().manual_seed(2))
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        a = ours(ids, keep, output_attentions=True)
        b = theirs(input_ids=ids, attention_mask=keep, output_attentions=True)
        c = ours(ids, keep)
    assert (a.last_hidden_state - b.last_hidden_state).abs().max().item() < 1e-5
    assert torch.equal(a.last_hidden_state, c.last_hidden_state)


@pytest.mark.parametrize("hidden,heads", SHAPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_outputs_are_bit_identical_to_transformers(hidden, heads, impl):
    # The eager path multiplies the scores by D**-0.5 as transformers does (dividing by sqrt(D) can differ in
    # the last bit when sqrt(D) is not a power of two), so both paths agree exactly, not just within a tolerance.
    torch.manual_seed(hidden * heads)
    ours = BertAttention(_config(hidden, heads, impl)).eval()
    hf_config = transformers.BertConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=2 * hidden)
    hf_config._attn_implementation = impl
    theirs = hf.BertAttention(hf_config).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(3, 7, hidden)
    mask = _mask_for(impl, _padding(3, 7, hidden))
    with torch.no_grad():
        assert torch.equal(ours(x, mask)[0], theirs(x, attention_mask=mask)[0])


@pytest.mark.parametrize("D", [1, 4, 12, 64])
def test_attention_probs_matches_softmax_by_hand_for_both_mask_forms(D):
    """attention_probs against torch.softmax written here: real rows over the kept keys only, an all-padding row
    uniform; the boolean and the additive mask give the same probabilities."""
    from minibert import attention_probs

    g = torch.Generator().manual_seed(D)
    q, k = torch.randn(3, 2, 5, D, generator=g), torch.randn(3, 2, 5, D, generator=g)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 1, 0], [0, 0, 0, 0, 0]])
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(D)
    want = torch.softmax(scores.masked_fill(keep[:, None, None, :] == 0, float("-inf")), dim=-1)
    want[2] = 1 / 5  # no key to keep: finfo.min everywhere, a plain average
    for mask in (keep.bool()[:, None, None, :], extended_attention_mask(keep)):
        have = attention_probs(q, k, mask)
        assert have.shape == (3, 2, 5, 5)
        assert torch.allclose(have, want, atol=1e-6, rtol=0)
    assert torch.allclose(attention_probs(q, k), torch.softmax(scores, dim=-1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_training_mode_drops_probabilities_on_both_paths(impl):
    attn = BertSelfAttention(_config(36, 3, impl, attention_probs_dropout_prob=0.5))
    _fill_random(attn, 3)
    x = torch.randn(2, 5, 36, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trained = attn.train()(x)[0]
        evaluated = attn.eval()(x)[0]
    assert (trained - evaluated).abs().max().item() > 1e-3


@pytest.mark.parametrize("impl", IMPLS)
def test_training_mode_matches_transformers_with_the_same_seed(impl):
    """Dropout on the probabilities draws the same mask as transformers' (same generator, same order), so in
    training mode the outputs agree bit for bit, and the eager path returns the probabilities after dropout, as
    transformers' eager path does."""
    cfg = _config(36, 3, impl, attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.0)
    ours = BertAttention(cfg).train()
    _fill_random(ours, 11)
    hf_cfg = transformers.BertConfig(hidden_size=36, num_attention_heads=3, intermediate_size=72,
                                     attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.0)
    hf_cfg._attn_implementation = impl
    theirs = hf.BertAttention(hf_cfg).train()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    x = torch.randn(2, 5, 36, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.manual_seed(3)
        out, probs = ours(x, _mask_for(impl, keep), output_attentions=True)
        torch.manual_seed(3)
        want, want_probs = theirs(x, attention_mask=_mask_for(impl, keep))
    assert torch.equal(out, want)
    if impl == "eager":
        assert torch.equal(probs, want_probs)
        assert (probs == 0).float().mean().item() > 0.3  # dropped weights (padding and dropout) are zeros
