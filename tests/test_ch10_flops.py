"""Chapter 10: FLOP counts against torch's FlopCounterMode, and minibert.packed.packed_forward against
transformers, minibert's default path and a frozen copy of the packed code BertModel carried as
`skip_padding=True` before chapter 10 took it over (small configs, CPU, seconds)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from minibert import BertConfig, BertModel
from minibert.attention import extended_attention_mask
from minibert.flops import DATASHEET_PEAKS, flops_per_token, forward_flops, mfu, mlm_head_flops, training_flops
from minibert.model import BertEncoder, BertModelOutput, BertPooler
from minibert.packed import packed_forward
from minibert.pretraining import BertForPreTraining, pretraining_loss
from parity import randomize_



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


@pytest.mark.parametrize("kw, tokens", [({}, 256), ({"hidden_size": 96, "num_attention_heads": 3, "vocab_size": 777}, 7)])
def test_mlm_head_flops_matches_transformers_head_on_the_counter(kw, tokens):
    from transformers.models.bert.modeling_bert import BertOnlyMLMHead
    hf_config = transformers.BertConfig(**kw)
    with torch.device("meta"):
        head = BertOnlyMLMHead(hf_config)
        x = torch.empty(1, tokens, hf_config.hidden_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        head(x)
    assert mlm_head_flops(BertConfig(**kw), tokens) == counter.get_total_flops()
    # BERT-base: 2·C·V = 2 x 768 x 30522 = 46,881,792 FLOPs per token for the decoder, plus 2 x 768^2
    assert mlm_head_flops(BertConfig(), 1) == 46_881_792 + 1_179_648


@pytest.mark.parametrize("batch, seq", [(2, 128), (3, 7)])
def test_training_flops_is_forward_plus_backward_on_the_counter(batch, seq):
    config = BertConfig(hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=200,
                        attn_implementation="eager")
    with torch.device("meta"):
        encoder, pooler = BertEncoder(config), BertPooler(config)
        x = torch.empty(batch, seq, 96, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        out, _, _ = encoder(x)
        pooler(out).sum().backward()
    assert training_flops(config, batch, seq) == counter.get_total_flops()


def test_mfu_and_the_peaks():
    assert mfu(2e12, 0.5, 4e12) == 1.0  # 2 TFLOP in 0.5 s = 4 TFLOP/s: all of a 4 TFLOP/s peak
    assert DATASHEET_PEAKS["H100 SXM"]["bfloat16"] == 989e12  # dense; the data sheet's 1,979 is with sparsity
    assert DATASHEET_PEAKS["A100 SXM"]["bfloat16"] == 312e12
    for bad in ({"seconds": 0}, {"seconds": -1.0}, {"peak": 0}, {"seconds": float("nan")}):
        with pytest.raises(ValueError, match="positive"):
            mfu(1e12, **({"seconds": 1.0, "peak": 1e12} | bad))
    with pytest.raises(ValueError, match="tokens"):
        mlm_head_flops(BertConfig(), -1)


# ---- packed_forward, built in the chapter's "Padding is wasted work" ----------------------------------------------

SMALL = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=40)


def pair(attn: str = "sdpa"):
    hf = randomize_(transformers.BertModel(transformers.BertConfig(**SMALL, attn_implementation=attn)).eval())
    mb = BertModel(BertConfig(**SMALL, attn_implementation=attn)).eval()
    mb.load_state_dict(hf.state_dict(), strict=True)
    return hf, mb


def batch(padded: bool):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 120, (4, 24), generator=g)
    lengths = torch.tensor([24, 20, 9, 1]) if padded else torch.full((4,), 24)
    mask = (torch.arange(24)[None, :] < lengths[:, None]).long()
    types = torch.randint(0, 2, (4, 24), generator=g) * mask
    return ids * mask, mask, types


def frozen_skip_padding(model, ids, mask, types):
    """The packed path as BertModel.forward(..., skip_padding=True) and BertLayer.forward(..., token_index=...)
    ran it before chapter 10 took it over, copied here unchanged apart from calling the submodules directly."""
    if model.encoder.layer[0].attention.self.attn_implementation == "sdpa":
        layer_mask = mask.to(torch.bool)[:, None, None, :]
    else:
        layer_mask = extended_attention_mask(mask, model.embeddings.word_embeddings.weight.dtype)
    hidden = model.embeddings(input_ids=ids, token_type_ids=types)
    B, T, C = hidden.shape
    token_index = mask.reshape(-1).nonzero().squeeze(1)
    packed = hidden.reshape(B * T, C).index_select(0, token_index)
    for layer in model.encoder.layer:
        padded = packed.new_zeros(B * T, packed.shape[-1])
        padded = padded.index_copy(0, token_index, packed).view(B, T, -1)
        context, _ = layer.attention.self(padded, layer_mask, False)
        context = context.reshape(B * T, -1).index_select(0, token_index)
        attention_output = layer.attention.output(context, packed)
        packed = layer.output(layer.intermediate(attention_output), attention_output)
    hidden = packed.new_zeros(B * T, C).index_copy(0, token_index, packed).view(B, T, C)
    return BertModelOutput(last_hidden_state=hidden, pooler_output=model.pooler(hidden))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("train", [False, True])
def test_packed_forward_is_bit_identical_to_the_former_skip_padding(attn, train):
    _, mb = pair(attn)
    mb.train(train)  # in train mode the dropout masks must come out of the random stream in the same order
    ids, mask, types = batch(padded=True)
    torch.manual_seed(7)
    have = packed_forward(mb, ids, mask, types)
    torch.manual_seed(7)
    want = frozen_skip_padding(mb, ids, mask, types)
    assert torch.equal(have.last_hidden_state, want.last_hidden_state)
    assert torch.equal(have.pooler_output, want.pooler_output)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_forward_matches_transformers(attn):
    hf, mb = pair(attn)
    ids, mask, types = batch(padded=True)
    real = mask.bool()
    with torch.inference_mode():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        have = packed_forward(mb, ids, mask, types)
        default = mb(ids, attention_mask=mask, token_type_ids=types)
    assert torch.allclose(have.last_hidden_state[real], want.last_hidden_state[real], atol=1e-5, rtol=0)
    assert torch.allclose(have.pooler_output, want.pooler_output, atol=1e-5, rtol=0)
    assert torch.allclose(have.last_hidden_state[real], default.last_hidden_state[real], atol=1e-6, rtol=0)
    assert have.last_hidden_state[~real].abs().max() == 0  # padding carries nothing: zeros
    assert default.last_hidden_state[~real].abs().max() > 0  # the default path computes values there


def test_packed_forward_is_bit_identical_to_transformers_on_this_machine():
    # the packed rows go through the same kernels as transformers' padded ones; on the course's CPUs the real
    # tokens and the pooler come out equal bit for bit (as the former skip_padding did)
    hf, mb = pair("sdpa")
    ids, mask, types = batch(padded=True)
    with torch.inference_mode():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        have = packed_forward(mb, ids, mask, types)
    real = mask.bool()
    assert torch.equal(have.last_hidden_state[real], want.last_hidden_state[real])
    assert torch.equal(have.pooler_output, want.pooler_output)


def test_packed_forward_performs_the_flops_it_claims():
    # the chapter's statement: q/k/v and attention on all B·T positions, the rest on the real tokens only
    config = BertConfig(**SMALL, attn_implementation="eager")
    mb = BertModel(config).eval()
    ids, mask, types = batch(padded=True)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        packed_forward(mb, ids, mask, types)
    C, F, L, B, T, n_real = 64, 128, 2, 4, 24, 24 + 20 + 9 + 1
    grid = L * B * T * (3 * 2 * C * C + 4 * T * C)  # q, k, v and attention's two products
    rows = L * n_real * (2 * C * C + 4 * C * F)  # attention output projection and feed-forward
    assert counter.get_total_flops() == grid + rows + B * 2 * C * C  # + the pooler
    assert forward_flops(config, B, T) > counter.get_total_flops() > sum(forward_flops(config, 1, n) for n in (24, 20, 9, 1))


def test_packed_forward_trains():
    # gradients through the packed path equal those of the default path on the real tokens
    grads = []
    for packed in (False, True):
        _, mb = pair()
        ids, mask, types = batch(padded=True)
        out = (packed_forward(mb, ids, mask, types) if packed else mb(ids, mask, types)).last_hidden_state
        out[mask.bool()].square().sum().backward()
        grads.append(mb.encoder.layer[0].intermediate.dense.weight.grad)
    assert grads[1].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)


def test_pretraining_loss_packed_or_not_gives_the_same_losses():
    config = BertConfig(**SMALL)
    torch.manual_seed(0)
    model = randomize_(BertForPreTraining(config)).eval()
    ids, mask, types = batch(padded=True)
    labels = torch.full_like(ids, -100)
    chosen = (torch.arange(24)[None, :] < 3) & mask.bool()  # up to three labelled positions per row, real tokens
    labels[chosen] = ids[chosen]
    b = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels,
         "next_sentence_label": torch.tensor([0, 1, 1, 0])}
    with torch.no_grad():
        fast, plain = pretraining_loss(model, b, packed=True), pretraining_loss(model, b, packed=False)
    for a, c in zip(fast, plain):
        assert torch.allclose(a, c, atol=1e-6, rtol=0)


BAD_CALLS = [
    ("not a BertModel", lambda mb, ids, mask: packed_forward(torch.nn.Linear(2, 2), ids, mask), "needs a BertModel"),
    ("float ids", lambda mb, ids, mask: packed_forward(mb, ids.float(), mask), "int64 or int32"),
    ("1-D ids", lambda mb, ids, mask: packed_forward(mb, ids[0], mask[0]), r"\(B, T\)"),
    ("id past the vocabulary", lambda mb, ids, mask: packed_forward(mb, ids + 200, mask), r"outside \[0, 120\)"),
    ("mask of another shape", lambda mb, ids, mask: packed_forward(mb, ids, mask[:, :5]), r"got \(4, 5\)"),
    ("mask value 2", lambda mb, ids, mask: packed_forward(mb, ids, mask * 2), "found 2"),
    ("token type 2", lambda mb, ids, mask: packed_forward(mb, ids, mask, torch.full_like(ids, 2)), "token_type_ids"),
    ("too long", lambda mb, ids, mask: packed_forward(mb, torch.ones(1, 41, dtype=torch.long), None),
     "max_position_embeddings=40"),
]


@pytest.mark.parametrize("what, call, message", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_packed_forward_refuses_bad_input_with_a_value_error(what, call, message):
    _, mb = pair()
    ids, mask, _ = batch(padded=True)
    with pytest.raises(ValueError, match=message):
        call(mb, ids, mask)


def _timing_cells():
    """(index, source, tags) of chapter 10's code cells that time something: outside a function definition they call
    time.perf_counter or median_seconds."""
    import ast
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).parent.parent / "notebooks" / "10_flops_and_speed.ipynb").read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        tree = ast.parse("\n".join(line for line in src.splitlines() if not line.startswith(("%", "!"))))
        calls = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                 for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef))
                 for node in ast.walk(stmt) if isinstance(node, ast.Call)}
        if calls & {"perf_counter", "median_seconds"}:
            yield i, src, cell.get("metadata", {}).get("tags", [])


def test_every_timing_cell_pins_the_threads_and_its_output_is_not_compared():
    # a default-thread timing cell once took 1,184 ms on a loaded machine against 14 ms stored
    cells = list(_timing_cells())
    assert len(cells) >= 3  # throughput, time against T, packed against padded
    for i, src, tags in cells:
        assert "torch.set_num_threads(" in src, f"cell {i} times without pinning the threads"
        assert "nbval-ignore-output" in tags, f"cell {i} prints a timing that nbval would compare"


def test_the_crossover_check_never_says_which_way_to_guess():
    """A "too many"/"too few" answer would let a student find exercise 10.1's number by halving guesses."""
    from minibert.exercises import ExerciseError, ch10

    messages = []
    for guess in (1.0, 6143.0, 6145.0, 10**6):
        with pytest.raises(ExerciseError) as caught:
            ch10.check_crossover(guess)
        messages.append(str(caught.value).replace(f"{guess}", "GUESS"))
    assert len(set(messages)) == 1, messages
    assert "too" not in messages[0]
