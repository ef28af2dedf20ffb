"""Chapter 10: FLOP counts against torch's FlopCounterMode, and BertModel's skip_padding fast path against
transformers and minibert's default path (small configs, CPU, seconds)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from minibert import BertConfig, BertModel
from minibert.flops import flops_per_token, forward_flops
from minibert.model import BertEncoder, BertPooler



def counted(config: BertConfig, batch: int, seq: int, pooler: bool) -> int:
    """What FlopCounterMode sees in an eager encoder (+ pooler) on meta tensors: shapes only, no numbers."""
    config = dataclasses.replace(config, attn_implementation="eager")  # the eager path's bmm calls are counted
    with torch.device("meta"):
        encoder, head = BertEncoder(config).eval(), BertPooler(config)
        x = torch.empty(batch, seq, config.hidden_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out, _, _ = encoder(x)
        if pooler:
            head(out)
    return counter.get_total_flops()


def _config(**kw) -> BertConfig:
    return BertConfig(**kw)


@pytest.mark.parametrize("kw, batch, seq", [
    ({}, 2, 128),  # BERT-base
    ({"hidden_size": 1024, "num_hidden_layers": 2, "num_attention_heads": 16, "intermediate_size": 4096}, 1, 512),
    ({"hidden_size": 96, "num_hidden_layers": 3, "num_attention_heads": 3, "intermediate_size": 200}, 5, 7),
    ({"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 256}, 1, 1),
])
@pytest.mark.parametrize("pooler", [True, False])
def test_forward_flops_matches_flop_counter(kw, batch, seq, pooler):
    config = _config(**kw)
    assert forward_flops(config, batch, seq, pooler=pooler) == counted(config, batch, seq, pooler)


def test_bert_base_by_hand():
    # 12 layers x (2 x (4 x 768^2 + 2 x 768 x 3072) + 4 x 128 x 768) = 12 x (14,155,776 + 393,216)
    assert flops_per_token(BertConfig(), 128) == 12 * (14_155_776 + 393_216) == 174_587_904
    # 8 x 128 tokens, plus the pooler: 2 x 768^2 per sequence
    assert forward_flops(BertConfig(), 8, 128) == 1024 * 174_587_904 + 8 * 1_179_648


def test_two_times_weight_matrices():
    # the seq-independent part is exactly 2 FLOPs per weight-matrix entry of the encoder
    config = BertConfig()
    with torch.device("meta"):
        encoder = BertEncoder(config)
    matrices = sum(p.numel() for p in encoder.parameters() if p.dim() == 2)
    slope = flops_per_token(config, 2) - flops_per_token(config, 1)
    assert flops_per_token(config, 1) - slope == 2 * matrices


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, None, "128"])
def test_bad_sizes_raise(bad):
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token(BertConfig(), bad)
    with pytest.raises(ValueError, match="batch"):
        forward_flops(BertConfig(), bad, 16)


# ---- a small model pair and batches for the fast path ------------------------------------------------------------

SMALL = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=40)


def pair():
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(**SMALL, attn_implementation="sdpa")).eval()
    mb = BertModel(BertConfig(**SMALL)).eval()
    mb.load_state_dict(hf.state_dict(), strict=True)
    return hf, mb


def batch(padded: bool):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 120, (4, 24), generator=g)
    lengths = torch.tensor([24, 20, 9, 1]) if padded else torch.full((4,), 24)
    mask = (torch.arange(24)[None, :] < lengths[:, None]).long()
    return ids * mask, mask


# ---- BertModel(skip_padding=True), shown in the chapter's "Padding is wasted work" ------------------------------

@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_skip_padding_matches_transformers(attn):
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(**SMALL, attn_implementation=attn)).eval()
    mb = BertModel(BertConfig(**SMALL, attn_implementation=attn)).eval()
    mb.load_state_dict(hf.state_dict(), strict=True)
    ids, mask = batch(padded=True)
    real = mask.bool()
    with torch.inference_mode():
        want = hf(input_ids=ids, attention_mask=mask)
        have = mb(ids, attention_mask=mask, skip_padding=True)
        default = mb(ids, attention_mask=mask)
    assert torch.allclose(have.last_hidden_state[real], want.last_hidden_state[real], atol=1e-5, rtol=0)
    assert torch.allclose(have.pooler_output, want.pooler_output, atol=1e-5, rtol=0)
    assert torch.allclose(have.last_hidden_state[real], default.last_hidden_state[real], atol=1e-6, rtol=0)
    assert have.last_hidden_state[~real].abs().max() == 0  # padding carries nothing: zeros
    assert default.last_hidden_state[~real].abs().max() > 0  # the default path computes values there


def test_skip_padding_without_padding_is_the_default_path():
    _, mb = pair()
    ids, mask = batch(padded=False)
    with torch.inference_mode():
        a = mb(ids, attention_mask=mask, skip_padding=True).last_hidden_state
        b = mb(ids, attention_mask=mask).last_hidden_state
    assert torch.equal(a, b)


def test_skip_padding_trains():
    # gradients through the packed path equal those of the default path on the real tokens
    grads = []
    for skip in (False, True):
        _, mb = pair()
        ids, mask = batch(padded=True)
        out = mb(ids, attention_mask=mask, skip_padding=skip).last_hidden_state[mask.bool()]
        out.square().sum().backward()
        grads.append(mb.encoder.layer[0].intermediate.dense.weight.grad)
    assert grads[1].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)
