"""minibert.count_parameters against counting real models (minibert and transformers) and hand arithmetic."""

import importlib
import json
import subprocess
import sys
from collections import defaultdict

import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel, PRESETS
import minibert.params
from minibert.params import count_parameters

transformers.logging.set_verbosity_error()
SHAPE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings", "type_vocab_size")


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())  # shared tensors once


def hf_config(c: BertConfig, **extra) -> transformers.BertConfig:
    return transformers.BertConfig(**{k: getattr(c, k) for k in SHAPE_KEYS}, **extra)


def build(c: BertConfig, head, *, ours: bool, tied: bool = True):
    """The model with this head, built on the meta device (shapes, no storage)."""
    with torch.device("meta"):
        if not ours:
            extra = {} if tied else {"tie_word_embeddings": False}
            if head is None:
                return transformers.BertModel(hf_config(c))
            if head == "mlm":
                return transformers.BertForMaskedLM(hf_config(c, **extra))
            if head == "pretraining":
                return transformers.BertForPreTraining(hf_config(c, **extra))
            return transformers.BertForSequenceClassification(hf_config(c, num_labels=head[1]))
        if head is None:
            return BertModel(c)
        if head == "mlm":
            return BertForMaskedLM(c)
        return BertForSequenceClassification(c, num_labels=head[1])


def test_bert_base_by_hand():
    V, P, S, C, F, L = 30522, 512, 2, 768, 3072, 12
    embeddings = 30522 * 768 + 512 * 768 + 2 * 768 + 768 + 768
    layer = 3 * (768 * 768 + 768) + (768 * 768 + 768) + 2 * 768 + (768 * 3072 + 3072) + (3072 * 768 + 768) + 2 * 768
    pooler = 768 * 768 + 768
    c = count_parameters(BertConfig())
    assert c.total == embeddings + 12 * layer + pooler == 109_482_240
    assert c.per_layer == layer
    assert c.non_embedding == c.total - (V + P + S) * C
    assert count_parameters(BertConfig(), pooler=False).total == 109_482_240 - 590_592
    # the popular 108,808,704: weights only, no pooler
    weights_only = embeddings + L * (4 * C * C + 2 * C * F + 4 * C)
    assert weights_only == 108_808_704
    assert c.total - weights_only == 82_944 + 590_592


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_and_head_matches_both_models(name):
    c = BertConfig.from_preset(name)
    for head in (None, "mlm", ("classification", 3), "pretraining"):
        want = count_parameters(c, head=head).total
        assert numel(build(c, head, ours=False)) == want, (name, head)
        if head != "pretraining":  # minibert has no BertForPreTraining
            assert numel(build(c, head, ours=True)) == want, (name, head)
    no_pooler = count_parameters(c, pooler=False).total
    with torch.device("meta"):
        assert numel(BertModel(c, add_pooling_layer=False)) == no_pooler
        assert numel(transformers.BertModel(hf_config(c), add_pooling_layer=False)) == no_pooler


def _component(name: str) -> str:
    """A parameter name -> the breakdown key that counts it."""
    parts = name.removeprefix("bert.").split(".")[:-1]  # drop .weight / .bias
    if parts[0] == "encoder":
        parts[2] = "*"
        if parts[3:5] == ["attention", "self"]:
            parts = parts[:5]
    key = ".".join(parts)
    if key == "cls.predictions":  # the output bias, a parameter of the head itself
        return "cls.predictions.bias"
    return key  # an untied decoder lists its own weight and bias: "cls.predictions.decoder"


@pytest.mark.parametrize("head", [None, "mlm", "pretraining", ("classification", 4)])
def test_breakdown_matches_named_parameters(head):
    c = BertConfig.from_preset("bert-mini")
    listed = defaultdict(int)
    for name, p in build(c, head, ours=False).named_parameters():
        listed[_component(name)] += p.numel()
    breakdown = count_parameters(c, head=head).breakdown
    assert dict(listed) == breakdown
    # the listing's order is the model's order
    assert list(dict.fromkeys(_component(n) for n, _ in build(c, None, ours=False).named_parameters())) == \
        [k for k in count_parameters(c).breakdown]


def test_untied_masked_lm():
    c = BertConfig.from_preset("bert-mini")
    V, C = c.vocab_size, c.hidden_size
    tied, untied = count_parameters(c, head="mlm"), count_parameters(c, head="mlm", tie_word_embeddings=False)
    assert untied.total - tied.total == V * C + V  # the decoder's own weight and its own bias
    for head in ("mlm", "pretraining"):
        model = build(c, head, ours=False, tied=False)
        lm = model.cls.predictions
        assert lm.decoder.weight is not model.bert.embeddings.word_embeddings.weight
        assert lm.decoder.bias is not lm.bias  # transformers 5 keeps both biases when untied
        assert numel(model) == count_parameters(c, head=head, tie_word_embeddings=False).total
        listed = defaultdict(int)
        for name, p in model.named_parameters():
            listed[_component(name)] += p.numel()
        assert dict(listed) == count_parameters(c, head=head, tie_word_embeddings=False).breakdown
    with torch.device("meta"):  # minibert's own masked-LM model, untied the same way (chapter 06)
        ours = BertForMaskedLM(c, tie_word_embeddings=False)
    assert numel(ours) == untied.total


def test_untied_bert_base_masked_lm_is_transformers_count():
    with torch.device("meta"):
        model = transformers.BertForMaskedLM(transformers.BertConfig(tie_word_embeddings=False))
    assert numel(model) == 132_985_716  # not 132,955,194: the decoder's own bias of V = 30,522 counts too
    assert count_parameters("bert-base-uncased", head="mlm", tie_word_embeddings=False).total == numel(model)


def test_bytes_and_groups():
    c = count_parameters("bert-base-uncased")
    assert c.bytes() == c.bytes("float32") == c.bytes(torch.float32) == 4 * 109_482_240
    assert c.bytes("float16") == c.bytes(torch.bfloat16) == 2 * 109_482_240
    assert c.bytes(torch.int8) == 109_482_240
    with torch.device("meta"):
        model = BertModel(BertConfig()).half()
    assert c.bytes(torch.float16) == sum(p.numel() * p.element_size() for p in model.parameters())
    with pytest.raises(ValueError, match="complex64"):
        c.bytes("complex64")
    g = c.groups()
    assert g["embeddings"] == (30522 + 512 + 2) * 768 + 2 * 768
    assert g["attention"] == 12 * (4 * 768 * 768 + 4 * 768)
    assert g["feed-forward"] == 12 * (2 * 768 * 3072 + 3072 + 768)
    assert g["layer norms"] == 12 * 4 * 768
    assert g["pooler"] == 768 * 768 + 768 and g["head"] == 0
    assert sum(g.values()) == c.total


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_attention_heads"):
        cfg = BertConfig()
        cfg.num_attention_heads = 10  # configs are mutable: count_parameters validates again
        count_parameters(cfg)
    with pytest.raises(ValueError, match="head must be"):
        count_parameters(BertConfig(), head="nsp")
    with pytest.raises(ValueError, match="positive number of labels"):
        count_parameters(BertConfig(), head=("classification", 0))
    with pytest.raises(ValueError, match="pooler"):
        count_parameters(BertConfig(), head="pretraining", pooler=False)
    with pytest.raises(ValueError, match="unknown preset"):
        count_parameters("bert-huge")


def test_importing_params_does_not_import_torch():
    code = "import sys, minibert.params; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@st.composite
def small_configs(draw):
    heads = draw(st.integers(1, 4))
    return BertConfig(
        vocab_size=draw(st.integers(1, 300)), hidden_size=heads * draw(st.integers(1, 8)),
        num_hidden_layers=draw(st.integers(1, 3)), num_attention_heads=heads,
        intermediate_size=draw(st.integers(1, 40)), max_position_embeddings=draw(st.integers(1, 64)),
        type_vocab_size=draw(st.integers(1, 4)))


heads = st.one_of(st.none(), st.just("mlm"), st.tuples(st.just("classification"), st.integers(1, 6)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_configs(), heads)
def test_random_configs_match_minibert(c, head):
    assert numel(build(c, head, ours=True)) == count_parameters(c, head=head).total


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_configs(), st.one_of(heads, st.just("pretraining")), st.booleans())
def test_random_configs_match_transformers(c, head, pooler):
    if head in (None, "mlm"):
        want = count_parameters(c, head=head, pooler=pooler).total
        with torch.device("meta"):
            model = (transformers.BertModel(hf_config(c), add_pooling_layer=pooler) if head is None else
                     transformers.BertForMaskedLM(hf_config(c)))
        if head == "mlm" and pooler:  # BertForMaskedLM has no pooler: the count with one is C² + C more
            want -= c.hidden_size ** 2 + c.hidden_size
        assert numel(model) == want
    else:
        assert numel(build(c, head, ours=False)) == count_parameters(c, head=head).total


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_configs(), st.sampled_from(["mlm", "pretraining"]))
def test_random_untied_configs_match_transformers(c, head):
    assert numel(build(c, head, ours=False, tied=False)) == \
        count_parameters(c, head=head, tie_word_embeddings=False).total


def test_exercise_checks_accept_right_and_reject_wrong_answers():
    from minibert.exercises import ExerciseError, ch07

    def mqa(C, F, H):
        D = C // H
        return (C * C + C) + 2 * (C * D + D) + (C * C + C) + 2 * C + (C * F + F) + (F * C + C) + 2 * C

    ch07.check_mqa_layer_parameters(mqa)
    with pytest.raises(ExerciseError, match="whole number"):  # D = C / H: a float count
        ch07.check_mqa_layer_parameters(lambda C, F, H: float(mqa(C, F, H)))
    with pytest.raises(ExerciseError, match="BERT's layer"):
        ch07.check_mqa_layer_parameters(lambda C, F, H: 4 * C * C + 2 * C * F + 9 * C + F)
    with pytest.raises(ExerciseError, match="biases"):
        ch07.check_mqa_layer_parameters(lambda C, F, H: mqa(C, F, H) - 2 * (C // H))

    def colleague(V):
        return (V + 512 + 2) * 768 + 2 * 768 + 12 * 7_087_872

    ch07.check_colleague_parameters(colleague)
    with pytest.raises(ExerciseError, match="pooler"):
        ch07.check_colleague_parameters(lambda V: colleague(V) + 768 * 768 + 768)
    with pytest.raises(ExerciseError, match="forbids"):  # the shortcut the prompt forbids
        ch07.check_colleague_parameters(lambda V: count_parameters(BertConfig(vocab_size=V), pooler=False).total)
    with pytest.raises(ExerciseError, match="forbids"):  # a reloaded copy of count_parameters
        ch07.check_colleague_parameters(lambda V: importlib.reload(minibert.params).count_parameters(
            BertConfig(vocab_size=V), pooler=False).total)

    def hf_state_dict(V):  # transformers' model counted through its state dict, not .parameters()
        with torch.device("meta"):
            model = transformers.BertModel(transformers.BertConfig(vocab_size=V), add_pooling_layer=False)
        return sum(t.numel() for t in model.state_dict().values())

    assert hf_state_dict(50_000) == colleague(50_000)  # outside the check it gives the right number
    with pytest.raises(ExerciseError, match="forbids"):
        ch07.check_colleague_parameters(hf_state_dict)

    def cli(V):  # `minibert params` in another process
        out = subprocess.run([sys.executable, "-m", "minibert", "params", "bert-base-uncased", "--no-pooler", "--json"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)["total"] + (V - 30_522) * 768

    assert cli(50_000) == colleague(50_000)
    with pytest.raises(ExerciseError, match="forbids"):
        ch07.check_colleague_parameters(cli)

    def caught(V):  # a refusal caught by the answer still fails the check
        try:
            return count_parameters(BertConfig(vocab_size=V), pooler=False).total
        except Exception:
            return colleague(V)

    profile = sys.getprofile()
    with pytest.raises(ExerciseError, match="forbids"):
        ch07.check_colleague_parameters(caught)
    assert sys.getprofile() is profile  # the check's hook is gone
    assert count_parameters("bert-tiny").total == 4_385_920  # put back after the check
    assert numel(build(BertConfig.from_preset("bert-tiny"), None, ours=True)) == 4_385_920

    ch07.check_largest_trainable(lambda gib: int(gib * 2**30) // 16)
    assert int(16 * 2**30) // 16 == 1_073_741_824  # a 16 GiB GPU: about 1.07 billion parameters
    with pytest.raises(ExerciseError, match="2\\*\\*30"):
        ch07.check_largest_trainable(lambda gib: int(gib * 10**9) // 16)
    with pytest.raises(ExerciseError, match="four numbers"):
        ch07.check_largest_trainable(lambda gib: int(gib * 2**30) // 4)
    with pytest.raises(ExerciseError, match="int"):
        ch07.check_largest_trainable(lambda gib: gib * 2**30 / 16)

    def max_layers(budget, V, P, S, C, F):
        fixed = (V + P + S) * C + 2 * C + C * C + C
        return max(0, (budget - 1 - fixed) // (4 * C * C + 2 * C * F + 9 * C + F))

    ch07.check_max_layers(max_layers)
    assert max_layers(50_000_000, 30_522, 512, 2, 512, 2048) == 10  # 16,154,112 + 10 · 3,152,384 < 50M < + 11
    with pytest.raises(ExerciseError, match="exactly the budget"):
        ch07.check_max_layers(lambda b, V, P, S, C, F: max(0, (b - (V + P + S) * C - 2 * C - C * C - C)
                                                           // (4 * C * C + 2 * C * F + 9 * C + F)))
    with pytest.raises(ExerciseError, match="forbids"):
        ch07.check_max_layers(lambda b, V, P, S, C, F: next(
            L for L in range(10**6) if count_parameters(BertConfig(
                vocab_size=V, max_position_embeddings=P, type_vocab_size=S, hidden_size=C, num_attention_heads=1,
                intermediate_size=F, num_hidden_layers=L + 1)).total >= b))

    def helper(b, V, P, S, C, F):  # the calculator's helper prints one layer's count
        from minibert.widgets import layer_formula

        per_layer = int(layer_formula(BertConfig(hidden_size=C, num_attention_heads=1, intermediate_size=F))
                        .split("= ")[-1].replace(",", ""))
        return max(0, (b - 1 - (V + P + S) * C - 2 * C - C * C - C) // per_layer)

    assert helper(50_000_000, 30_522, 512, 2, 512, 2048) == 10
    with pytest.raises(ExerciseError, match="forbids"):
        ch07.check_max_layers(helper)
