"""Chapter 12: BertForTokenClassification and BertForNextSentencePrediction against transformers (same keys,
strict loading, every parameter random and non-zero; logits, hidden states and losses with -100 labels), and the
bad inputs a user can make."""

import pytest
import torch
import transformers

from minibert import BertConfig, BertForNextSentencePrediction, BertForTokenClassification
from parity import randomize_

torch.set_num_threads(1)

CONFIGS = {
    "L1-H1-C7-V50": dict(vocab_size=50, hidden_size=7, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=13, max_position_embeddings=12, type_vocab_size=1),
    "L3-H5-C30-V97-T3": dict(vocab_size=97, hidden_size=30, num_hidden_layers=3, num_attention_heads=5,
                             intermediate_size=37, max_position_embeddings=16, type_vocab_size=3),
    "L2-H2-C128-V4325": dict(vocab_size=4325, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=512),  # the shape of the chapter's checkpoint
}
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
IMPLS = ["eager", "sdpa"]


def _hf_config(cfg: BertConfig, impl: str, **extra) -> transformers.BertConfig:
    fields = {k: v for k, v in cfg.to_dict().items() if k not in ("model_type", "attn_implementation")}
    return transformers.BertConfig(**fields, attn_implementation=impl, **extra)


def _batch(cfg: BertConfig, B: int = 3, T: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    types = torch.randint(0, cfg.type_vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T // 2:] = 0
    mask[2, 2:] = 0
    return ids, types, mask


def _pair(theirs, ours):
    assert set(ours.state_dict()) == set(theirs.state_dict())  # transformers' names, nothing more or less
    randomize_(theirs)
    result = ours.load_state_dict(theirs.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    theirs.eval(), ours.eval()
    return theirs, ours


def _token_labels(cfg, mask, num_labels, seed=1):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_labels, mask.shape, generator=g)
    labels[mask == 0] = -100  # padding
    labels[:, 0] = -100  # [CLS]
    return labels


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("num_labels", [1, 3, 7])
@pytest.mark.parametrize("name", CONFIGS)
def test_token_classification_matches_transformers(name, num_labels, impl):
    cfg = BertConfig(**CONFIGS[name], **NO_DROPOUT, attn_implementation=impl)
    theirs, ours = _pair(transformers.BertForTokenClassification(_hf_config(cfg, impl, num_labels=num_labels)),
                         BertForTokenClassification(cfg, num_labels=num_labels))
    ids, types, mask = _batch(cfg)
    labels = _token_labels(cfg, mask, num_labels)
    a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels, output_hidden_states=True)
    b = ours(ids, mask, types, labels=labels, output_hidden_states=True)
    assert a.logits.shape == b.logits.shape == (3, 9, num_labels)
    assert (a.logits - b.logits).abs().max().item() < 1e-5
    assert abs(a.loss.item() - b.loss.item()) < 1e-5
    assert len(a.hidden_states) == len(b.hidden_states) == cfg.num_hidden_layers + 1
    assert all((x - y).abs().max().item() < 1e-5 for x, y in zip(a.hidden_states, b.hidden_states))


def test_token_loss_leaves_out_minus_100_positions():
    """The loss is the mean cross-entropy over the labelled positions only: changing a -100 position's logits
    (by changing its token) leaves it unchanged; computed here with torch.nn.functional over the kept rows."""
    cfg = BertConfig(**CONFIGS["L1-H1-C7-V50"], **NO_DROPOUT)
    model = randomize_(BertForTokenClassification(cfg, num_labels=4)).eval()
    ids, types, mask = _batch(cfg)
    labels = _token_labels(cfg, mask, 4)
    out = model(ids, mask, types, labels=labels)
    keep = labels != -100
    want = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    assert abs(out.loss.item() - want.item()) < 1e-6
    assert abs(out.loss.item() - torch.nn.functional.cross_entropy(out.logits.reshape(-1, 4), labels.reshape(-1).clamp(min=0)).item()) > 1e-4


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", CONFIGS)
def test_next_sentence_prediction_matches_transformers(name, impl):
    cfg = BertConfig(**CONFIGS[name], **NO_DROPOUT, attn_implementation=impl)
    theirs, ours = _pair(transformers.BertForNextSentencePrediction(_hf_config(cfg, impl)),
                         BertForNextSentencePrediction(cfg))
    ids, types, mask = _batch(cfg)
    labels = torch.tensor([0, 1, -100])
    a = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels, output_hidden_states=True)
    b = ours(ids, mask, types, labels=labels, output_hidden_states=True)
    assert a.logits.shape == b.logits.shape == (3, 2)
    assert (a.logits - b.logits).abs().max().item() < 1e-5
    assert abs(a.loss.item() - b.loss.item()) < 1e-5
    assert all((x - y).abs().max().item() < 1e-5 for x, y in zip(a.hidden_states, b.hidden_states))


def test_next_sentence_head_loads_the_pretraining_checkpoints_nsp_weights(tmp_path):
    """transformers' BertForNextSentencePrediction reads our folder's weights and gives our logits."""
    cfg = BertConfig(**CONFIGS["L1-H1-C7-V50"], **NO_DROPOUT)
    ours = randomize_(BertForNextSentencePrediction(cfg)).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.BertForNextSentencePrediction.from_pretrained(tmp_path).eval()
    ids, types, mask = _batch(cfg)
    assert (theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
            - ours(ids, mask, types).logits).abs().max().item() < 1e-5


def test_token_classifier_round_trips_through_transformers(tmp_path):
    cfg = BertConfig(**CONFIGS["L3-H5-C30-V97-T3"], **NO_DROPOUT)
    names = {0: "O", 1: "B-PER", 2: "I-PER"}
    ours = randomize_(BertForTokenClassification(cfg, num_labels=3, id2label=names)).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    assert theirs.config.id2label == names
    ids, types, mask = _batch(cfg)
    assert (theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
            - ours(ids, mask, types).logits).abs().max().item() < 1e-5
    again = BertForTokenClassification.from_pretrained(tmp_path).eval()
    assert again.id2label == names and torch.equal(again(ids, mask, types).logits, ours(ids, mask, types).logits)


BAD_TOKEN_LABELS = [
    (lambda B, T: torch.full((B, T), 4), ["4", "num_labels=4"]),  # an id one past the last label
    (lambda B, T: torch.full((B, T), -1), ["-1", "-100"]),  # negative but not the ignore index
    (lambda B, T: torch.zeros(B, T - 1, dtype=torch.long), ["(3, 8)", "(3, 9)"]),  # one label short per text
    (lambda B, T: torch.zeros(B, dtype=torch.long), ["(3,)", "(3, 9)"]),  # a label per text, not per token
    (lambda B, T: torch.zeros(B, T), ["float32", "integer"]),  # float targets
]


@pytest.mark.parametrize("make, parts", BAD_TOKEN_LABELS)
def test_bad_token_labels_raise_value_error_naming_the_value(make, parts):
    cfg = BertConfig(**CONFIGS["L1-H1-C7-V50"])
    ids, types, mask = _batch(cfg)
    with pytest.raises(ValueError) as info:
        BertForTokenClassification(cfg, num_labels=4)(ids, mask, labels=make(3, 9))
    assert all(p in str(info.value) for p in parts), str(info.value)


@pytest.mark.parametrize("labels, part", [(torch.tensor([0, 2, 1]), "2"), (torch.tensor([0.0, 1.0, 1.0]), "float32")])
def test_bad_next_sentence_labels_raise_value_error(labels, part):
    cfg = BertConfig(**CONFIGS["L1-H1-C7-V50"])
    ids, types, mask = _batch(cfg)
    with pytest.raises(ValueError, match=part):
        BertForNextSentencePrediction(cfg)(ids, mask, labels=labels)


@pytest.mark.parametrize("num_labels", [0, -2, 2.0, True, "3"])
def test_num_labels_must_be_a_positive_integer(num_labels):
    with pytest.raises(ValueError, match="num_labels"):
        BertForTokenClassification(BertConfig(**CONFIGS["L1-H1-C7-V50"]), num_labels=num_labels)
