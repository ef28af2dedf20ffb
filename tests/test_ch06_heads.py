"""Chapter 06: BertForSequenceClassification and BertForMaskedLM against transformers (same keys, strict
loading, same logits on both attention paths), the tied decoder, and the head arithmetic against torch.nn and
torch.nn.functional."""

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn

from minibert import BertConfig, BertForMaskedLM, BertForSequenceClassification
from parity import randomize_

torch.set_num_threads(1)

IMPLS = ["eager", "sdpa"]
CONFIGS = {
    "L1-H1-C7-V50-T1": dict(vocab_size=50, hidden_size=7, num_hidden_layers=1, num_attention_heads=1,
                            intermediate_size=13, max_position_embeddings=9, type_vocab_size=1),
    "L3-H5-C30-V97-T3": dict(vocab_size=97, hidden_size=30, num_hidden_layers=3, num_attention_heads=5,
                             intermediate_size=37, max_position_embeddings=16, type_vocab_size=3),
    "L2-H12-C36-gelu_new": dict(vocab_size=1000, hidden_size=36, num_hidden_layers=2, num_attention_heads=12,
                                intermediate_size=61, max_position_embeddings=20, hidden_act="gelu_new"),
    "L4-H4-C64-V30522": dict(vocab_size=30522, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                             intermediate_size=256),
    "L1-H3-C9-relu-pad5": dict(vocab_size=60, hidden_size=9, num_hidden_layers=1, num_attention_heads=3,
                               intermediate_size=11, max_position_embeddings=8, hidden_act="relu", pad_token_id=5),
}
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _hf_config(cfg: BertConfig, impl: str, **extra) -> transformers.BertConfig:
    fields = {k: v for k, v in cfg.to_dict().items() if k not in ("model_type", "attn_implementation")}
    return transformers.BertConfig(**fields, attn_implementation=impl, **extra)


def _batch(cfg: BertConfig, B: int = 3, T: int = 8, seed: int = 0):
    T = min(T, cfg.max_position_embeddings)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    types = torch.randint(0, cfg.type_vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T // 2:] = 0
    mask[2, 1:] = 0
    return ids, types, mask


def _check_pair(theirs, ours, cfg, train=False):
    assert set(ours.state_dict()) == set(theirs.state_dict())
    randomize_(theirs)  # every bias and LayerNorm parameter non-zero, so that each one counts
    result = ours.load_state_dict(theirs.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    theirs.train(train), ours.train(train)
    ids, types, mask = _batch(cfg)
    a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    b = ours(ids, mask, types).logits
    assert a.shape == b.shape
    assert (a - b).abs().max().item() < 1e-5
    return b


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,num_labels", [("L1-H1-C7-V50-T1", 1), ("L3-H5-C30-V97-T3", 2),
                                             ("L2-H12-C36-gelu_new", 3), ("L4-H4-C64-V30522", 14),
                                             ("L1-H3-C9-relu-pad5", 5)])
def test_sequence_classification_matches_transformers(name, num_labels, impl):
    cfg = BertConfig(**CONFIGS[name], attn_implementation=impl)
    torch.manual_seed(0)
    theirs = transformers.BertForSequenceClassification(_hf_config(cfg, impl, num_labels=num_labels))
    ours = BertForSequenceClassification(cfg, num_labels=num_labels)
    logits = _check_pair(theirs, ours, cfg)
    assert logits.shape == (3, num_labels)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_masked_lm_matches_transformers(name, impl):
    cfg = BertConfig(**CONFIGS[name], attn_implementation=impl)
    torch.manual_seed(0)
    theirs = transformers.BertForMaskedLM(_hf_config(cfg, impl))
    ours = BertForMaskedLM(cfg)
    logits = _check_pair(theirs, ours, cfg)
    assert logits.shape == (3, min(8, cfg.max_position_embeddings), cfg.vocab_size)
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight  # tie survives loading


@pytest.mark.parametrize("impl", IMPLS)
def test_both_heads_match_in_train_mode_with_dropout_zero(impl):
    cfg = BertConfig(**CONFIGS["L3-H5-C30-V97-T3"], **NO_DROPOUT, attn_implementation=impl)
    torch.manual_seed(1)
    _check_pair(transformers.BertForSequenceClassification(_hf_config(cfg, impl, num_labels=4)),
                BertForSequenceClassification(cfg, num_labels=4), cfg, train=True)
    _check_pair(transformers.BertForMaskedLM(_hf_config(cfg, impl)), BertForMaskedLM(cfg), cfg, train=True)


@pytest.mark.parametrize("classifier_dropout", [None, 0.0, 0.3])
def test_classifier_dropout_follows_transformers(classifier_dropout):
    cfg = BertConfig(**CONFIGS["L1-H1-C7-V50-T1"], classifier_dropout=classifier_dropout)
    theirs = transformers.BertForSequenceClassification(_hf_config(cfg, "eager", num_labels=2))
    assert BertForSequenceClassification(cfg).dropout.p == theirs.dropout.p


def test_classification_logits_are_linear_on_the_pooled_output():
    cfg = BertConfig(**CONFIGS["L3-H5-C30-V97-T3"])
    torch.manual_seed(2)
    clf = BertForSequenceClassification(cfg, num_labels=14).eval()
    assert clf.classifier.weight.shape == (14, 30)  # (out_features, in_features)
    ids, types, mask = _batch(cfg)
    pooled = clf.bert(ids, mask, types).pooler_output
    want = pooled @ clf.classifier.weight.T + clf.classifier.bias
    assert torch.allclose(clf(ids, mask, types).logits, want, atol=1e-6)


def test_seed_001_classifier_768_to_14():
    with torch.device("meta"):
        clf = BertForSequenceClassification(BertConfig(), num_labels=14)
    assert clf.classifier.weight.shape == (14, 768) and clf.classifier.bias.shape == (14,)
    assert sum(p.numel() for p in clf.classifier.parameters()) == 14 * 768 + 14


def test_masked_lm_logits_by_hand():
    """transform = LayerNorm(gelu(dense(h))), then h' @ E.T + bias with E the word-embedding matrix."""
    cfg = BertConfig(**CONFIGS["L3-H5-C30-V97-T3"])
    torch.manual_seed(3)
    mlm = BertForMaskedLM(cfg).eval()
    ids, types, mask = _batch(cfg)
    h = mlm.bert(ids, mask, types).last_hidden_state
    t = mlm.cls.predictions.transform
    h2 = F.layer_norm(F.gelu(F.linear(h, t.dense.weight, t.dense.bias)), (30,), t.LayerNorm.weight, t.LayerNorm.bias,
                      cfg.layer_norm_eps)
    want = h2 @ mlm.bert.embeddings.word_embeddings.weight.T + mlm.cls.predictions.bias
    assert torch.allclose(mlm(ids, mask, types).logits, want, atol=1e-5)


def test_decoder_weight_is_the_word_embedding_storage():
    cfg = BertConfig(**CONFIGS["L1-H3-C9-relu-pad5"])
    mlm = BertForMaskedLM(cfg)
    emb, dec = mlm.bert.embeddings.word_embeddings, mlm.cls.predictions.decoder
    assert dec.weight is emb.weight and dec.weight.data_ptr() == emb.weight.data_ptr()
    assert mlm.cls.predictions.bias is dec.bias
    assert dec.weight.shape == (cfg.vocab_size, cfg.hidden_size)
    with torch.no_grad():
        emb.weight[7] += 1.0
    assert torch.equal(dec.weight[7], emb.weight[7])
    # the tie survives a dtype change and a state-dict load
    mlm = mlm.to(torch.float64)
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight
    mlm.load_state_dict(BertForMaskedLM(cfg).to(torch.float64).state_dict(), strict=True)
    assert mlm.cls.predictions.decoder.weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr()


def test_tied_parameter_count_saves_vocab_times_hidden():
    cfg = BertConfig(**CONFIGS["L2-H12-C36-gelu_new"])
    mlm = BertForMaskedLM(cfg)
    tied = sum(p.numel() for p in mlm.parameters())
    mlm.cls.predictions.decoder.weight = nn.Parameter(mlm.cls.predictions.decoder.weight.detach().clone())
    untied = sum(p.numel() for p in mlm.parameters())
    assert untied - tied == cfg.vocab_size * cfg.hidden_size
    theirs = transformers.BertForMaskedLM(_hf_config(cfg, "eager"))
    assert tied == sum(p.numel() for p in theirs.parameters())


def test_gradient_reaches_the_shared_matrix_from_both_ends():
    cfg = BertConfig(**CONFIGS["L1-H1-C7-V50-T1"], **NO_DROPOUT)
    torch.manual_seed(4)
    mlm = BertForMaskedLM(cfg)
    ids = torch.tensor([[1, 2, 3, 4]])
    F.cross_entropy(mlm(ids).logits.reshape(-1, cfg.vocab_size), ids.reshape(-1)).backward()
    grad = mlm.bert.embeddings.word_embeddings.weight.grad
    # Reference: the same loss with an untied copy of the decoder weight; the shared gradient is the sum.
    torch.manual_seed(4)
    untied = BertForMaskedLM(cfg)
    untied.cls.predictions.decoder.weight = nn.Parameter(untied.bert.embeddings.word_embeddings.weight.detach().clone())
    F.cross_entropy(untied(ids).logits.reshape(-1, cfg.vocab_size), ids.reshape(-1)).backward()
    total = untied.bert.embeddings.word_embeddings.weight.grad + untied.cls.predictions.decoder.weight.grad
    assert torch.allclose(grad, total, atol=1e-6)
    assert grad[10:].abs().sum() > 0  # tokens not in the input: gradient from the decoder only


@pytest.mark.parametrize("num_labels", [0, -1, 2.0, True, "2"])
def test_num_labels_must_be_a_positive_integer(num_labels):
    with pytest.raises(ValueError, match="num_labels"):
        BertForSequenceClassification(BertConfig(**CONFIGS["L1-H1-C7-V50-T1"]), num_labels=num_labels)


@pytest.mark.parametrize("head", [BertForSequenceClassification, BertForMaskedLM])
def test_heads_pass_bad_input_errors_through(head):
    model = head(BertConfig(**CONFIGS["L1-H1-C7-V50-T1"]))
    with pytest.raises(ValueError, match="vocab_size=50"):
        model(torch.tensor([[1, 50]]))
    with pytest.raises(ValueError, match="max_position_embeddings=9"):
        model(torch.ones(1, 10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        model(torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3))


def test_stable_softmax_and_cross_entropy_from_probabilities():
    """The arithmetic the chapter teaches, against torch's own functions."""
    z = torch.tensor([[1000.0, 999.0, 998.0], [-1000.0, -1001.0, -1002.0], [1.2, -0.3, 3.1]])
    naive = torch.exp(z) / torch.exp(z).sum(-1, keepdim=True)
    assert naive[:2].isnan().all()
    e = torch.exp(z - z.max(-1, keepdim=True).values)
    stable = e / e.sum(-1, keepdim=True)
    assert torch.allclose(stable, torch.softmax(z, -1))
    targets = torch.tensor([1, 0, 2])
    assert torch.allclose(-torch.log(stable[torch.arange(3), targets]).mean(), F.cross_entropy(z, targets))


# ------------------------------------------------------------------------------------------ losses


def _clf_pair(num_labels, impl="eager"):
    cfg = BertConfig(**CONFIGS["L3-H5-C30-V97-T3"], attn_implementation=impl)
    torch.manual_seed(5)
    theirs = randomize_(transformers.BertForSequenceClassification(_hf_config(cfg, impl, num_labels=num_labels)).eval())
    ours = BertForSequenceClassification(cfg, num_labels=num_labels).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return cfg, theirs, ours


@pytest.mark.parametrize("kind", ["regression", "single_label", "single_label_ignored", "multi_label"])
def test_classification_loss_matches_transformers(kind):
    num_labels = 1 if kind == "regression" else 4
    cfg, theirs, ours = _clf_pair(num_labels)
    ids, types, mask = _batch(cfg)
    g = torch.Generator().manual_seed(6)
    labels = {"regression": torch.randn(3, generator=g),
              "single_label": torch.tensor([3, 0, 2]),
              "single_label_ignored": torch.tensor([3, -100, 2]),
              "multi_label": (torch.rand(3, 4, generator=g) > 0.5).float()}[kind]
    a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    b = ours(ids, mask, types, labels=labels)
    assert b.loss.shape == () and abs(a.loss.item() - b.loss.item()) < 1e-5
    if kind == "single_label":  # and by hand: mean of -log softmax at the right class
        want = -torch.log_softmax(b.logits, -1)[torch.arange(3), labels].mean()
        assert torch.allclose(b.loss, want, atol=1e-6)
    assert ours(ids, mask, types).loss is None


@pytest.mark.parametrize("impl", IMPLS)
def test_masked_lm_loss_matches_transformers_and_skips_minus_100(impl):
    cfg = BertConfig(**CONFIGS["L2-H12-C36-gelu_new"], attn_implementation=impl)
    torch.manual_seed(7)
    theirs = randomize_(transformers.BertForMaskedLM(_hf_config(cfg, impl)).eval())
    ours = BertForMaskedLM(cfg).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ids, types, mask = _batch(cfg)
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 0], labels[2, 5] = 7, 999, 0
    a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    b = ours(ids, mask, types, labels=labels)
    assert abs(a.loss.item() - b.loss.item()) < 1e-5
    logp = torch.log_softmax(b.logits, -1)
    want = -(logp[0, 2, 7] + logp[1, 0, 999] + logp[2, 5, 0]) / 3
    assert torch.allclose(b.loss, want, atol=1e-5)


BAD_LABELS = {
    "class id too large": (4, torch.tensor([0, 4, 1]), ["4", "num_labels=4"]),
    "negative class id": (4, torch.tensor([0, -2, 1]), ["-2", "num_labels=4"]),
    "class ids wrong shape": (4, torch.tensor([[0, 1, 1]]), ["(1, 3)", "(3,)"]),
    "multi-label wrong shape": (4, torch.zeros(3, 3), ["(3, 3)", "(3, 4)"]),
    "regression wrong count": (1, torch.zeros(2), ["3", "(2,)"]),
    "bool labels": (4, torch.tensor([True, False, True]), ["bool"]),
}


@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_bad_classification_labels_raise_value_error(case):
    num_labels, labels, parts = BAD_LABELS[case]
    cfg = BertConfig(**CONFIGS["L1-H1-C7-V50-T1"])
    model = BertForSequenceClassification(cfg, num_labels=num_labels)
    ids, _, _ = _batch(cfg)
    with pytest.raises(ValueError) as info:
        model(ids, labels=labels)
    for part in parts:
        assert part in str(info.value), (part, str(info.value))


@pytest.mark.parametrize("labels,parts", [(torch.tensor([[1, 50, -100]]), ["50", "vocab_size=50"]),
                                          (torch.tensor([[1, -5, -100]]), ["-5", "vocab_size=50"]),
                                          (torch.tensor([[1, 2]]), ["(1, 2)", "(1, 3)"]),
                                          (torch.tensor([[1.0, 2.0, 3.0]]), ["float32"])])
def test_bad_masked_lm_labels_raise_value_error(labels, parts):
    model = BertForMaskedLM(BertConfig(**CONFIGS["L1-H1-C7-V50-T1"]))
    with pytest.raises(ValueError) as info:
        model(torch.tensor([[1, 2, 3]]), labels=labels)
    for part in parts:
        assert part in str(info.value), (part, str(info.value))


# ------------------------------------------------------------------------------------------ exercise checks


def test_exercise_checks_reject_the_typical_wrong_answers():
    from minibert.exercises import ExerciseError, ch06

    def pool(h, wp, bp):
        return torch.tanh(F.linear(h[:, 0], wp, bp))

    with pytest.raises(ExerciseError, match="raw \\[CLS\\] row"):  # seed 001's classifier: no pooler
        ch06.check_classify(lambda h, wp, bp, w, b: F.linear(h[:, 0], w, b))
    with pytest.raises(ExerciseError, match="mean of all tokens"):
        ch06.check_classify(lambda h, wp, bp, w, b: F.linear(torch.tanh(F.linear(h.mean(1), wp, bp)), w, b))
    ch06.check_classify(lambda h, wp, bp, w, b: F.linear(pool(h, wp, bp), w, b))

    def classify_with_modules(h, wp, bp, w, b):  # the prompt asks for tensor operations only
        dense = torch.nn.Linear(wp.shape[1], wp.shape[0])
        with torch.no_grad():
            dense.weight.copy_(wp), dense.bias.copy_(bp)
            return F.linear(torch.nn.Tanh()(dense(h[:, 0])), w, b)

    with pytest.raises(ExerciseError, match="calls an nn module"):
        ch06.check_classify(classify_with_modules)
    def shifted(z):
        return z - z.max(-1, keepdim=True).values

    with pytest.raises(ExerciseError, match="inf or nan"):  # log of a probability that underflows to 0
        ch06.check_log_softmax(lambda z: torch.log(torch.exp(shifted(z)) / torch.exp(shifted(z)).sum(-1, keepdim=True)))
    with pytest.raises(ExerciseError, match="6.2"):  # normalised over the wrong dimension
        ch06.check_log_softmax(lambda z: z - z.max(0, keepdim=True).values
                               - torch.exp(z - z.max(0, keepdim=True).values).sum(0, keepdim=True).log())
    for forbidden in (lambda z: torch.log_softmax(z, -1), lambda z: F.log_softmax(z, -1),  # the shortcuts the
                      lambda z: z - torch.logsumexp(z, -1, keepdim=True), lambda z: z.softmax(-1).log(),  # prompt
                      lambda z: torch.special.log_softmax(z, -1), lambda z: torch.nn.LogSoftmax(-1)(z)):  # forbids
        with pytest.raises(ExerciseError, match="which the exercise forbids"):
            ch06.check_log_softmax(forbidden)
    assert "softmax" not in vars(torch.Tensor) and torch.equal(torch.ones(2).softmax(-1), torch.full((2,), 0.5))
    ch06.check_log_softmax(lambda z: shifted(z) - torch.exp(shifted(z)).sum(-1, keepdim=True).log())
    with pytest.raises(ExerciseError, match="only the .* masked ones count"):  # every position counted
        ch06.check_mlm_accuracy(lambda lg, lb: ((lg.argmax(-1) == lb) & (lb != -100)).sum().item() / lb.numel())
    with pytest.raises(ExerciseError, match="a Python float"):
        ch06.check_mlm_accuracy(lambda lg, lb: (lg.argmax(-1)[lb != -100] == lb[lb != -100]).float().mean())
    ch06.check_mlm_accuracy(lambda lg, lb: sum(int(lg[b, t].argmax()) == int(lb[b, t]) for b, t in (lb != -100).nonzero())
                            / int((lb != -100).sum()))

    def untie_by_alias(decoder, embedding):
        decoder.weight = torch.nn.Parameter(embedding.weight)  # a new Parameter object on the same storage

    with pytest.raises(ExerciseError, match="shares the embedding's storage"):
        ch06.check_untie(untie_by_alias)

    def untie_the_embedding(decoder, embedding):  # untied, but the embedding's Parameter was replaced
        embedding.weight = torch.nn.Parameter(embedding.weight.detach().clone())

    with pytest.raises(ExerciseError, match="the embedding got a new weight"):
        ch06.check_untie(untie_the_embedding)

    def untie_right(decoder, embedding):
        decoder.weight = torch.nn.Parameter(torch.tensor(embedding.weight.tolist()))

    ch06.check_untie(untie_right)


@pytest.mark.parametrize("head", [BertForSequenceClassification, BertForMaskedLM])
def test_heads_take_no_packing_argument(head):
    """The heads pass on only BertModel's own keywords (output_attentions, output_hidden_states); the packed fast
    path is not one of them, so skip_padding is refused with a ValueError naming the head, not silently dropped."""
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                     max_position_embeddings=16)
    ids = torch.randint(0, 50, (2, 5))
    with pytest.raises(ValueError, match=f"{head.__name__} got an unexpected argument 'skip_padding'"):
        head(cfg)(ids, skip_padding=True)
    out = head(cfg).eval()(ids, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 2 and len(out.attentions) == 1  # the options it does pass on


@pytest.mark.parametrize("head", [BertForSequenceClassification, BertForMaskedLM])
def test_heads_take_transformers_positional_arguments_in_order(head):
    """A call that passes arguments by position means the same in both libraries; transformers' cross-attention
    slots of the masked LM are refused unless None, naming the argument."""
    import inspect

    def positional(forward):
        return [n for n, p in inspect.signature(forward).parameters.items() if p.kind == p.POSITIONAL_OR_KEYWORD]

    assert positional(head.forward) == positional(getattr(transformers, head.__name__).forward)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                     max_position_embeddings=16)
    ids = torch.randint(0, 50, (2, 5))
    if head is BertForMaskedLM:
        model = head(cfg).eval()
        labels = torch.full_like(ids, -100)
        labels[:, 1] = ids[:, 1]
        assert torch.equal(model(ids, None, None, None, None, None, None, labels).loss, model(ids, labels=labels).loss)
        with pytest.raises(ValueError, match="encoder_hidden_states"):
            model(ids, None, None, None, None, torch.zeros(2, 5, 16))
