"""Chapter 11, pretraining: masking, next-sentence pairs, the loss mask, parity with transformers, and the
`minibert pretrain` command (checkpoints, resume, interruption, refusals, bad input, two processes)."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minibert import BertConfig
from minibert.pretraining import (IGNORE_INDEX, BertForPreTraining, adamw_param_groups, character_vocab,
                                  evaluate_pretraining, linear_warmup_decay, load_wordpiece, make_batch, mask_tokens,
                                  nsp_pair, pretraining_documents, pretraining_loss, split_sentences)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64)


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter random and non-zero (biases and LayerNorms included), as parity tests require."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + 0.05)


def _binomial_ok(k: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# ------------------------------------------------------------------------------------------------ masking


def test_mask_tokens_follows_the_80_10_10_rule():
    V, PAD, CLS, SEP, MASK = 1000, 0, 2, 3, 4
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (400, 250), generator=g)
    ids[:, 0], ids[:, 100] = CLS, SEP
    ids[:, 200:] = PAD  # padding at the end of every row
    before = ids.clone()
    inputs, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=V, special_ids=[PAD, CLS, SEP, MASK],
                                 generator=torch.Generator().manual_seed(1))
    assert torch.equal(ids, before)  # the input is not changed in place
    special = (ids == PAD) | (ids == CLS) | (ids == SEP)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & special).any()  # never a special token, never padding
    assert torch.equal(inputs[special], ids[special])
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original ids
    assert torch.equal(inputs[~chosen], ids[~chosen])  # unchosen positions untouched
    n = int((~special).sum())
    assert _binomial_ok(int(chosen.sum()), n, 0.15)
    c = int(chosen.sum())
    became_mask = int((inputs[chosen] == MASK).sum())
    kept = int((inputs[chosen] == ids[chosen]).sum())
    # mask: 80 %, plus a random draw that hits [MASK] (0.1 / V); kept: 10 %, plus a random draw of the same id
    assert _binomial_ok(became_mask, c, 0.8 + 0.1 / V)
    assert _binomial_ok(kept, c, 0.1 + 0.1 / V)
    assert _binomial_ok(c - became_mask - kept, c, 0.1 - 0.2 / V)


def test_mask_tokens_is_reproducible_with_a_generator_and_respects_probability():
    ids = torch.randint(5, 50, (8, 30), generator=torch.Generator().manual_seed(0))
    a = mask_tokens(ids, mask_token_id=4, vocab_size=50, special_ids=[0], generator=torch.Generator().manual_seed(3))
    b = mask_tokens(ids, mask_token_id=4, vocab_size=50, special_ids=[0], generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    none_in, none_lab = mask_tokens(ids, mask_token_id=4, vocab_size=50, special_ids=[0], mlm_probability=0.0)
    assert torch.equal(none_in, ids) and (none_lab == IGNORE_INDEX).all()
    _, every = mask_tokens(ids, mask_token_id=4, vocab_size=50, special_ids=[0], mlm_probability=1.0)
    assert torch.equal(every, ids)


@pytest.mark.parametrize("kwargs, words", [
    (dict(input_ids=torch.zeros(2, 3)), "integer tensor"),
    (dict(mask_token_id=50), "mask_token_id"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(special_ids="0"), "special_ids"),
    (dict(mlm_probability=1.5), "mlm_probability"),
    (dict(input_ids=torch.tensor([[1, 60]])), "60"),
])
def test_mask_tokens_rejects_bad_arguments(kwargs, words):
    args = dict(input_ids=torch.tensor([[1, 2, 3]]), mask_token_id=4, vocab_size=50, special_ids=[0])
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        mask_tokens(args.pop("input_ids"), **args)


# ------------------------------------------------------------------------------------------------ NSP


def test_nsp_pairs_are_half_true_next_and_half_from_another_document():
    # sentence j of document d is [1000 * d + j]: a pair says exactly where its halves came from
    docs = [[[1000 * d + j] for j in range(2 + d % 4)] for d in range(50)]
    rng = random.Random(0)
    random_count = 0
    for _ in range(2000):
        a, b, is_random = nsp_pair(docs, rng, max_tokens=6)
        assert 1 <= len(a) and 1 <= len(b) and len(a) + len(b) <= 6
        da, db = a[0] // 1000, b[0] // 1000
        assert all(t // 1000 == da for t in a) and [t % 1000 for t in a] == list(range(a[0] % 1000, a[-1] % 1000 + 1))
        if is_random:
            assert db != da
        else:
            assert db == da and b[0] % 1000 == a[-1] % 1000 + 1  # B starts right after A
        random_count += is_random
    assert _binomial_ok(random_count, 2000, 0.5)


def test_nsp_pair_needs_two_documents_and_room():
    with pytest.raises(ValueError, match="at least 2 documents"):
        nsp_pair([[[1], [2]]], random.Random(0), 10)
    with pytest.raises(ValueError, match="max_tokens"):
        nsp_pair([[[1], [2]], [[3]]], random.Random(0), 1)


def test_make_batch_layout_and_independence_of_the_split():
    docs = [[[10 + d, 20 + d, 30 + d], [40 + d, 50 + d]] for d in range(20)]
    whole = make_batch(docs, [11, 12, 13, 14], 16, 100)
    halves = [make_batch(docs, s, 16, 100) for s in ([11, 12], [13, 14])]
    for k in whole:
        assert torch.equal(whole[k], torch.cat([h[k] for h in halves]))  # each example depends on its seed only
    ids, types, mask = whole["input_ids"], whole["token_type_ids"], whole["attention_mask"]
    original = torch.where(whole["labels"] != IGNORE_INDEX, whole["labels"], ids)
    for row in range(4):
        n = int(mask[row].sum())
        seps = (original[row, :n] == 3).nonzero().flatten().tolist()
        assert original[row, 0] == 2 and len(seps) == 2 and seps[1] == n - 1
        assert types[row, :seps[0] + 1].eq(0).all() and types[row, seps[0] + 1:n].eq(1).all()
        assert types[row, n:].eq(0).all() and ids[row, n:].eq(0).all()


def test_sentences_and_corpus_splits():
    assert split_sentences("好。真的好！为什么？没有") == ["好。", "真的好！", "为什么？", "没有"]
    from minibert.corpora import split_of

    held = pretraining_documents("reviews", "held-out")
    train = pretraining_documents("reviews", "train")
    from minibert.corpora import reviews

    texts = {t for t, _ in reviews()}
    joined_train = {"".join(d) for d in train}
    assert all(split_of(t) == "train" for t in texts if "".join(split_sentences(t)) in joined_train)
    assert not joined_train & {"".join(d) for d in held}
    assert 0.01 < len(held) / (len(held) + len(train)) < 0.03


def test_character_vocab_is_deterministic_and_readable_by_bert_tokenizer(tmp_path):
    from transformers import BertTokenizer

    sentences = ["我喜欢这个手机。", "手机很好用！", "iPhone 很好", "我不喜欢"] * 3
    vocab = character_vocab(sentences, min_count=2)
    assert vocab == character_vocab(list(reversed(sentences)), min_count=2)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    reference = BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True, tokenize_chinese_chars=True)
    ours = load_wordpiece(vocab)
    for text in ("我喜欢iPhone手机！", "好用，不好用"):
        assert ours.encode(text).ids == reference(text)["input_ids"]


# ------------------------------------------------------------------------------------------------ model and loss


def _tiny_model(vocab_size=40, seed=0, **over):
    config = BertConfig(vocab_size=vocab_size, **{**TINY, **over})
    torch.manual_seed(seed)
    model = BertForPreTraining(config)
    _randomize(model, seed)
    return model.eval(), config


def _tiny_batch(vocab_size=40, seed=0):
    docs = [[[5 + (d * 3 + j) % (vocab_size - 5) for j in range(k, k + 4)] for k in range(3)] for d in range(6)]
    return make_batch(docs, range(seed, seed + 4), 16, vocab_size)


def test_bert_for_pretraining_matches_transformers():
    import transformers

    model, config = _tiny_model()
    hf_config = transformers.BertConfig(**{k: v for k, v in config.to_dict().items() if k != "attn_implementation"})
    reference = transformers.BertForPreTraining(hf_config).eval()
    missing = reference.load_state_dict(model.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    assert reference.cls.predictions.decoder.weight.data_ptr() == reference.bert.embeddings.word_embeddings.weight.data_ptr()
    b = _tiny_batch()
    ours = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], labels=b["labels"],
                 next_sentence_label=b["next_sentence_label"])
    theirs = reference(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       token_type_ids=b["token_type_ids"], labels=b["labels"],
                       next_sentence_label=b["next_sentence_label"])
    assert torch.allclose(ours.prediction_logits, theirs.prediction_logits, atol=1e-5)
    assert torch.allclose(ours.seq_relationship_logits, theirs.seq_relationship_logits, atol=1e-5)
    assert torch.allclose(ours.loss, theirs.loss, atol=1e-5)


def test_the_loss_counts_masked_positions_only():
    model, _ = _tiny_model()
    b = _tiny_batch()
    labelled = b["labels"] != IGNORE_INDEX
    assert labelled.any() and (~labelled & (b["attention_mask"] == 1)).any()
    with torch.no_grad():
        mlm, nsp = pretraining_loss(model, b)
        full = model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    V = full.prediction_logits.shape[-1]
    # independent: F.cross_entropy over every position, the unlabelled ones ignored by -100
    want_mlm = F.cross_entropy(full.prediction_logits.reshape(-1, V), b["labels"].reshape(-1), ignore_index=-100)
    want_nsp = F.cross_entropy(full.seq_relationship_logits, b["next_sentence_label"])
    assert abs(float(mlm - want_mlm)) < 1e-5 and abs(float(nsp - want_nsp)) < 1e-5
    # changing the logits at unlabelled positions leaves the model's loss as it was; at a labelled one, it does not
    def perturb(where):
        def hook(module, args, output):
            return output + 50.0 * torch.randn_like(output) * where[..., None]
        handle = model.cls.predictions.register_forward_hook(hook)
        try:
            return model(b["input_ids"], b["attention_mask"], b["token_type_ids"], labels=b["labels"],
                         next_sentence_label=b["next_sentence_label"]).loss
        finally:
            handle.remove()
    with torch.no_grad():
        base = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], labels=b["labels"],
                     next_sentence_label=b["next_sentence_label"]).loss
        unlabelled_changed, labelled_changed = perturb(~labelled), perturb(labelled)
    assert float(unlabelled_changed) == pytest.approx(float(base), abs=1e-6)
    assert abs(float(labelled_changed) - float(base)) > 1e-2


def test_evaluate_pretraining_counts_masked_positions_one_by_one():
    """Against a loop over the positions of the full model's logits; the model is left in the mode it was in."""
    model, _ = _tiny_model()
    model.train()
    b = _tiny_batch(seed=3)
    guess = int(b["labels"][b["labels"] != -100][0])  # a token that is the answer somewhere
    scores = evaluate_pretraining(model, b, unigram_id=guess)
    assert model.training
    with torch.no_grad():
        full = model.eval()(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    masked = [(i, t) for i in range(b["labels"].shape[0]) for t in range(b["labels"].shape[1])
              if int(b["labels"][i, t]) != -100]
    right = sum(int(full.prediction_logits[i, t].argmax()) == int(b["labels"][i, t]) for i, t in masked)
    unigram = sum(int(b["labels"][i, t]) == guess for i, t in masked)
    nsp = sum(int(full.seq_relationship_logits[i].argmax()) == int(b["next_sentence_label"][i]) for i in range(4))
    assert scores["masked_tokens"] == len(masked) > 0 and 0 < right < len(masked) and unigram > 0
    assert scores["masked_accuracy"] == pytest.approx(right / len(masked), abs=1e-6)
    assert scores["unigram_accuracy"] == pytest.approx(unigram / len(masked), abs=1e-6)
    assert scores["nsp_accuracy"] == pytest.approx(nsp / 4, abs=1e-6)
    assert all(isinstance(v, float) for k, v in scores.items() if k != "masked_tokens")


def test_counts_let_processes_share_one_mean():
    model, _ = _tiny_model()
    b = _tiny_batch()
    halves = [{k: v[i:i + 2] for k, v in b.items()} for i in (0, 2)]
    total = int((b["labels"] != IGNORE_INDEX).sum())
    with torch.no_grad():
        parts = [pretraining_loss(model, h, total, 4) for h in halves]
        whole = pretraining_loss(model, b)
    assert abs(float(parts[0][0] + parts[1][0] - whole[0])) < 1e-5
    assert abs(float(parts[0][1] + parts[1][1] - whole[1])) < 1e-5


def test_warmup_schedule_matches_transformers_and_param_groups():
    from transformers import get_linear_schedule_with_warmup

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=7, num_training_steps=40)
    for step in range(45):
        assert linear_warmup_decay(step, warmup_steps=7, total_steps=40) == pytest.approx(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    model, _ = _tiny_model()
    decay, no_decay = adamw_param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    for p in no_decay["params"]:
        assert names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)]
    for p in decay["params"]:
        assert p.dim() == 2 and "LayerNorm" not in names[id(p)]
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# ------------------------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small UTF-8 corpus: 120 People's Daily paragraphs (documents), sentences cut at 。！？."""
    from minibert.corpora import peoples_daily_text

    path = tmp_path_factory.mktemp("corpus") / "news.txt"
    paragraphs = [t for t in peoples_daily_text() if t.count("。") >= 2][:120]
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return path


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def _pretrain(*args, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "minibert", "pretrain", "--threads", "1", "--no-progress", *map(str, args)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _small(corpus, out, *extra):
    return ["--config", "bert-tiny", "--corpus", corpus, "--batch-size", 4, "--seq-len", 32, "--eval-examples", 8,
            "--out", out, *extra]


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_checkpoint_loads_in_transformers_with_identical_outputs(corpus, tmp_path):
    import transformers
    from safetensors.torch import load_file

    _pretrain(*_small(corpus, tmp_path / "run", "--steps", 3))
    folder = tmp_path / "run" / "checkpoint-3"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "optimizer.pt",
                                                         "rng_state_0.pth", "trainer_state.json", "vocab.txt"]
    reference, info = transformers.BertForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    config = BertConfig.from_json_file(folder / "config.json")
    ours = BertForPreTraining(config)
    result = ours.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
    assert set(result.missing_keys) == {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"))
    enc = tokenizer(["中国人民迎接新年。"], ["经济发展很快。"], return_tensors="pt")
    a = ours.eval()(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    b = reference.eval()(**enc)
    assert torch.allclose(a.prediction_logits, b.prediction_logits, atol=1e-5)
    assert torch.allclose(a.seq_relationship_logits, b.seq_relationship_logits, atol=1e-5)
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["step"] == 3 and len(state["losses"]) == 3 and state["tokens_seen"] > 0 and state["elapsed_s"] > 0
    assert state["eval"][-1]["step"] == 3


def test_resume_continues_bit_for_bit(corpus, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _pretrain(*_small(corpus, straight, "--steps", 8, "--save-every", 4))
    _pretrain(*_small(corpus, split, "--steps", 8, "--save-every", 4, "--stop-after", 4))
    assert (split / "checkpoint-4").is_dir() and not (split / "checkpoint-8").exists()
    _pretrain("--out", split, "--resume", "--threads", "1")
    a, b = _weights(straight / "checkpoint-8"), _weights(split / "checkpoint-8")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = json.loads((straight / "checkpoint-8" / "trainer_state.json").read_text())
    sb = json.loads((split / "checkpoint-8" / "trainer_state.json").read_text())
    assert sa["losses"] == sb["losses"] and sa["tokens_seen"] == sb["tokens_seen"] and len(sa["losses"]) == 8
    assert not (split / "checkpoint-4").exists()  # the older checkpoint of its own run is replaced


def test_resume_refuses_different_options(corpus, tmp_path):
    _pretrain(*_small(corpus, tmp_path / "run", "--steps", 2))
    done = _pretrain("--out", tmp_path / "run", "--resume", "--lr", "0.5", check=False)
    assert done.returncode == 2 and "--lr 0.5 differs" in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_run_leaves_the_last_checkpoint_intact(corpus, tmp_path, sig):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "minibert", "pretrain", "--threads", "1", "--no-progress",
           *map(str, _small(corpus, out, "--steps", 100000, "--save-every", 1))]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("checkpoint-*")):
            time.sleep(0.1)
        time.sleep(1.0)  # well into the next steps and saves
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted at step" in err
    # the signal can land between a save's rename and its removal of the older checkpoint: then both remain
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert 1 <= len(checkpoints) <= 2
    newest = checkpoints[-1]
    step = int(newest.name.split("-")[1])
    state = json.loads((newest / "trainer_state.json").read_text())
    assert state["step"] == step and len(state["losses"]) == step
    _weights(newest)  # complete and readable
    resumed = _pretrain("--out", out, "--resume", "--stop-after", 1)
    assert f"step {step + 1}/100000" in resumed.stderr + resumed.stdout
    assert not list(out.glob(".tmp-*"))  # a save cut short by the signal is cleared on resume
    assert [p.name for p in out.glob("checkpoint-*")] == [f"checkpoint-{step + 1}"]  # older ones cleared by the save


def test_out_must_be_new_empty_or_its_own_run(corpus, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    done = _pretrain(*_small(corpus, foreign, "--steps", 1), check=False)
    assert done.returncode == 2 and "not a minibert pretrain run" in done.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and (foreign / "notes.txt").read_text() == "keep me"
    done = _pretrain("--out", foreign, "--resume", check=False)
    assert done.returncode == 2 and "not a minibert pretrain run" in done.stderr
    _pretrain(*_small(corpus, tmp_path / "run", "--steps", 1))
    done = _pretrain(*_small(corpus, tmp_path / "run", "--steps", 1), check=False)
    assert done.returncode == 2 and "already holds a run" in done.stderr


def test_a_run_killed_before_its_first_checkpoint_starts_afresh(corpus, tmp_path):
    from minibert.book.pretrain import MARKER

    out = tmp_path / "run"  # what a run leaves when killed during its first save: the marker and an unfinished save
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"tool": "minibert pretrain", "settings": {}}) + "\n")
    (out / ".tmp-checkpoint-2").mkdir()
    (out / ".tmp-checkpoint-2" / "model.safetensors").write_bytes(b"cut short")
    done = _pretrain("--out", out, "--resume", check=False)
    assert done.returncode == 2 and "without --resume to start it afresh" in done.stderr
    _pretrain(*_small(corpus, out, "--steps", 2))
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "checkpoint-2"])
    # anything the command did not write keeps the folder refused, and untouched
    other = tmp_path / "other"
    other.mkdir()
    (other / MARKER).write_text(json.dumps({"tool": "minibert pretrain", "settings": {}}) + "\n")
    (other / "notes.txt").write_text("keep me")
    done = _pretrain(*_small(corpus, other, "--steps", 1), check=False)
    assert done.returncode == 2 and "already holds a run" in done.stderr
    assert sorted(p.name for p in other.iterdir()) == sorted([MARKER, "notes.txt"])


def test_eval_examples_is_a_run_option_checked_on_resume(corpus, tmp_path):
    out = tmp_path / "run"
    _pretrain(*_small(corpus, out, "--steps", 2, "--save-every", 1, "--stop-after", 1))
    done = _pretrain("--out", out, "--resume", "--eval-examples", 16, check=False)
    assert done.returncode == 2 and "--eval-examples 16 differs from the resumed run's 8" in done.stderr
    _pretrain("--out", out, "--resume")
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["settings"]["eval_examples"] == 8 and [e["step"] for e in state["eval"]] == [1, 2]


def _bad_inputs(tmp_path, corpus):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n", encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9. na\xefve.\n".encode("latin-1"))
    one = tmp_path / "one.txt"
    one.write_text("只有一句话。\n", encoding="utf-8")
    base = ["--config", "bert-tiny", "--steps", "1", "--batch-size", "2", "--seq-len", "16"]
    return [
        (["--corpus", str(tmp_path / "missing.txt")], "no such file"),
        (["--corpus", str(empty)], "holds no text"),
        (["--corpus", str(latin1)], "is not UTF-8"),
        (["--corpus", str(one)], "need at least 2 documents"),
        (["--corpus", str(tmp_path)], "is a folder"),
        (["--corpus", str(corpus), "--config", "bert-huge"], "unknown preset 'bert-huge'"),
        (["--corpus", str(corpus), "--seq-len", "600"], "--seq-len 600 exceeds the config's max_position_embeddings=512"),
        (["--corpus", str(corpus), "--seq-len", "4"], "--seq-len 4 cannot fit"),
        (["--corpus", str(corpus), "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
        (["--corpus", str(corpus), "--steps", "-3"], "--steps must be a positive integer, got -3"),
        (["--corpus", str(corpus), "--lr", "0"], "--lr must be a positive number, got 0.0"),
        (["--corpus", str(corpus), "--config", str(tmp_path / "nope.json")], "config file not found"),
    ], base


def test_bad_input_exits_2_with_one_line(corpus, tmp_path, capsys):
    from minibert.book.cli import main

    cases, base = _bad_inputs(tmp_path, corpus)
    for i, (args, words) in enumerate(cases):
        out = tmp_path / f"out{i}"
        code = main(["pretrain", "--no-progress", *base, *args, "--out", str(out)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0], (args, lines)
        assert lines[0].startswith("minibert pretrain: error: ")
        assert not out.exists()  # nothing written


def test_the_minibert_command_starts_without_torch():
    code = "import sys, minibert.book.cli as c; c.build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_on_the_same_global_batch(corpus, tmp_path):
    config = BertConfig.from_preset("bert-tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                    max_position_embeddings=64)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    common = ["--config", tmp_path / "config.json", "--corpus", corpus, "--batch-size", 8, "--seq-len", 32,
              "--steps", 3, "--eval-examples", 0, "--threads", 1, "--no-progress"]
    _pretrain(*common, "--out", tmp_path / "one")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "minibert", "pretrain",
           *map(str, common), "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = _weights(tmp_path / "one" / "checkpoint-3"), _weights(tmp_path / "two" / "checkpoint-3")
    torch.manual_seed(0)  # the command seeds the initial weights with --seed (0)
    start = BertForPreTraining(BertConfig.from_json_file(tmp_path / "one" / "checkpoint-3" / "config.json"))
    moved = 0
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-5, rtol=1e-4), k
        moved += not torch.equal(one[k], start.state_dict()[k])  # training changed it (not a trivial equality)
    assert moved > 10
    s1 = json.loads((tmp_path / "one" / "checkpoint-3" / "trainer_state.json").read_text())
    s2 = json.loads((tmp_path / "two" / "checkpoint-3" / "trainer_state.json").read_text())
    assert s2["world_size"] == 2 and s1["tokens_seen"] == s2["tokens_seen"]
    assert s1["losses"] == pytest.approx(s2["losses"], abs=1e-4)


def test_the_shipped_checkpoint_is_the_make_pretrain_run_and_loads_in_transformers():
    import shlex

    import transformers

    folder = ROOT / "checkpoints" / "pretrain-zh-tiny"
    state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    recipe = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "-m minibert pretrain" in line)
    words = shlex.split(recipe.split("-m minibert pretrain", 1)[1])
    options = {w[2:].replace("-", "_"): v for w, v in zip(words, words[1:]) if w.startswith("--")}
    for name in ("config", "corpus", "steps", "batch_size", "seq_len", "lr", "seed", "save_every"):
        assert str(state["settings"][name]) == options[name] or float(state["settings"][name]) == float(options[name]), name
    assert state["step"] == state["settings"]["steps"] == len(state["losses"])
    last = state["eval"][-1]
    assert last["masked_accuracy"] > 2.5 * last["unigram_accuracy"]
    model, info = transformers.BertForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"))
    assert tokenizer.tokenize("这个手机很好用") == list("这个手机很好用")
