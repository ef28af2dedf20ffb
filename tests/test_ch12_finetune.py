"""Chapter 12's data, metrics and `minibert finetune`: BIO tags and token labels against hand-written answers,
the splits against split_of, the metrics against counts written here, and the command end to end (a folder
transformers loads with the same logits, a metrics JSON, refusals that leave folders as they were)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minibert.corpora import reviews, split_of
from minibert.finetuning import (NER_LABELS, bio_tags, entity_metrics, ner_splits, review_splits, sequence_metrics,
                                 token_labels)

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def test_bio_tags_by_hand():
    pairs = [("江", "nr"), ("泽民", "nr"), ("访问", "v"), ("北京", "ns"), ("上海", "ns"), ("新华社", "nt")]
    text, tags = bio_tags(pairs)
    assert text == "江泽民访问北京上海新华社"
    assert tags == ["B-PER", "I-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "I-ORG"]


def test_token_labels_follow_the_first_character_and_skip_special_tokens():
    label2id = {t: i for i, t in enumerate(NER_LABELS)}
    offsets = [(0, 0), (0, 1), (1, 2), (2, 3), (0, 0)]  # [CLS] 江 泽 民 [SEP]
    assert token_labels(offsets, ["B-PER", "I-PER", "O"], label2id) == [-100, 1, 2, 0, -100]
    with pytest.raises(ValueError, match="'B-XYZ'"):
        token_labels([(0, 1)], ["B-XYZ"], label2id)
    with pytest.raises(ValueError, match="tags for 1 characters"):
        token_labels([(0, 1), (1, 2)], ["O"], label2id)


def test_review_splits_are_split_of_and_cover_every_review():
    splits = review_splits()
    assert sum(map(len, splits.values())) == len(reviews())
    assert all(split_of(text) == name for name, examples in splits.items() for text, _ in examples)
    assert len({t for t, _ in splits["train"]} & {t for t, _ in splits["test"] + splits["dev"]}) == 0


def test_ner_sentences_stay_in_their_lines_split():
    from minibert.corpora import peoples_daily_tagged

    splits = ner_splits()
    assert all(len(text) == len(tags) and 0 < len(text) <= 126 for ex in splits.values() for text, tags in ex)
    from minibert.pretraining import split_sentences

    want = {name: 0 for name in splits}  # characters per split, counted line by line from the corpus
    for pairs in peoples_daily_tagged():
        line = "".join(w for w, _ in pairs)
        want[split_of(line)] += len("".join(split_sentences(line)))
    assert {name: sum(len(text) for text, _ in ex) for name, ex in splits.items()} == want
    assert sum(1 for ex in splits["train"] for t in ex[1] if t.startswith("B-")) > 20000


def test_sequence_metrics_against_counts_written_here():
    m = sequence_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]  # rows true, columns predicted
    f1_neg, f1_pos = 2 * 1 / (2 * 1 + 1 + 1), 2 * 2 / (2 * 2 + 1 + 1)
    assert m["macro_f1"] == pytest.approx((f1_neg + f1_pos) / 2)


def test_entity_metrics_count_whole_entities_only():
    tags = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG"]]
    predicted = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "I-ORG"]]  # the person is cut short: wrong
    m = entity_metrics(tags, predicted)
    precision, recall = 2 / 3, 2 / 3  # 2 of the 3 predicted entities are right, 2 of the 3 true ones found
    assert m["entity_f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert m["per_type"]["PER"]["f1-score"] == 0.0 and m["per_type"]["LOC"]["f1-score"] == 1.0


def _cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "minibert", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_finetune_writes_a_folder_transformers_loads_with_the_same_logits(tmp_path):
    import transformers

    from minibert.finetuning import BertForSequenceClassification

    out = tmp_path / "run"
    r = _cli("finetune", "--task", "sequence", "--data", "reviews", "--from", "checkpoints/pretrain-zh-tiny",
             "--train-examples", "64", "--epochs", "2", "--batch-size", "16", "--dev-examples", "64",
             "--threads", "1", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["train_examples"] == 64 and len(metrics["history"]) == 2
    assert metrics["throughput"]["examples_per_s"] > 0 and 0 <= metrics["test"]["accuracy"] <= 1
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == len(review_splits()["test"])
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    ours = BertForSequenceClassification.from_pretrained(out).eval()
    assert theirs.config.id2label == {0: "negative", 1: "positive"}
    tok = transformers.BertTokenizer(str(out / "vocab.txt"))
    batch = tok(["这个手机很好用", "太差了，不推荐"], padding=True, return_tensors="pt")
    a = theirs(**batch).logits
    b = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
    assert (a - b).abs().max().item() < 1e-5
    r = _cli("finetune", "--task", "sequence", "--data", "reviews", "--from", "random", "--train-examples", "8",
             "--epochs", "1", "--dev-examples", "8", "--threads", "1", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr  # its own earlier folder: replaced
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["train_examples"] == 8


def test_finetune_token_task_writes_a_token_classifier(tmp_path):
    import transformers

    out = tmp_path / "ner"
    r = _cli("finetune", "--task", "token", "--data", "peoples-daily-ner", "--from", "random",
             "--train-examples", "16", "--epochs", "1", "--dev-examples", "16", "--threads", "1", "--no-progress",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    model = transformers.AutoModelForTokenClassification.from_pretrained(out)
    assert list(model.config.id2label.values()) == NER_LABELS
    assert "entity_f1" in json.loads((out / "metrics.json").read_text(encoding="utf-8"))["test"]


BAD = [
    (["--task", "regression", "--data", "reviews"], "unknown task 'regression'"),
    (["--task", "sequence", "--data", "imdb"], "unknown data set 'imdb'"),
    (["--task", "token", "--data", "reviews"], "labelled for --task sequence"),
    (["--task", "sequence", "--data", "reviews", "--lr", "-1"], "--lr must be a positive number, got -1.0"),
    (["--task", "sequence", "--data", "reviews", "--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["--task", "sequence", "--data", "reviews", "--warmup", "2"], "got 2.0"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_options_are_refused_naming_the_value(tmp_path, args, message):
    r = _cli("finetune", *args, "--from", "random", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()


def test_a_folder_it_did_not_write_is_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    r = _cli("finetune", "--task", "sequence", "--data", "reviews", "--from", "random", "--out", str(tmp_path))
    assert r.returncode == 2 and "non-empty folder" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    r = _cli("finetune", "--task", "sequence", "--data", "reviews", "--from", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "vocab.txt" in r.stderr


def test_fine_tune_refuses_an_unknown_task_as_a_value_error():
    from minibert.book.finetune import fine_tune

    with pytest.raises(ValueError, match="unknown task 'tagging'"):
        fine_tune("tagging", {}, "random", {0: "a", 1: "b"})


def test_encode_refuses_tags_that_do_not_match_the_text_in_length():
    """More tags than characters (the case token_labels cannot see: the text's tokens all find a tag)."""
    from minibert.book.finetune import encode
    from minibert.pretraining import load_wordpiece

    tokenizer = load_wordpiece((ROOT / "checkpoints" / "pretrain-zh-tiny" / "vocab.txt").read_text(encoding="utf-8")
                               .splitlines())
    label2id = {t: i for i, t in enumerate(NER_LABELS)}
    with pytest.raises(ValueError, match=r"3 tag\(s\) for a text of 2 characters"):
        encode(tokenizer, "token", [("北京", ["B-LOC", "I-LOC", "O"])], label2id)
    with pytest.raises(ValueError, match=r"1 tag\(s\) for a text of 2 characters"):
        encode(tokenizer, "token", [("北京", ["B-LOC"])], label2id)
    assert encode(tokenizer, "token", [("北京", ["B-LOC", "I-LOC"])], label2id)[0][1] == [-100, 3, 4, -100]


def test_finetune_starts_from_a_folder_transformers_wrote(tmp_path):
    """--from accepts any transformers BERT folder with vocab.txt: here a BertModel's (keys without "bert.")."""
    import shutil

    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=4325, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32)
    theirs = transformers.BertModel(config)
    theirs.save_pretrained(tmp_path / "hf")
    shutil.copyfile(ROOT / "checkpoints" / "pretrain-zh-tiny" / "vocab.txt", tmp_path / "hf" / "vocab.txt")
    r = _cli("finetune", "--task", "token", "--data", "peoples-daily-ner", "--from", str(tmp_path / "hf"),
             "--train-examples", "8", "--epochs", "1", "--dev-examples", "8", "--lr", "1e-12", "--threads", "1",
             "--no-progress", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    tuned = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "out")
    # the encoder came from the folder (a learning rate of 1e-12 leaves it as it was)
    assert torch.allclose(tuned.bert.embeddings.word_embeddings.weight, theirs.embeddings.word_embeddings.weight,
                          atol=1e-6)


def test_the_dev_sample_has_devs_label_mix_not_its_first_reviews_in_text_order():
    from minibert.book.finetune import dev_sample

    dev = [(text, label) for text, label in reviews() if split_of(text) == "dev"]  # from the corpus, not the splits
    n = 300
    sample = dev_sample(review_splits()["dev"], n)
    assert len(sample) == n and len(set(sample)) == n and set(sample) <= set(dev)
    share = sum(label for _, label in dev) / len(dev)
    # a simple random sample's positive share has standard error sqrt(p(1-p)/n * (N-n)/(N-1)); allow 3 of them
    se = (share * (1 - share) / n * (len(dev) - n) / (len(dev) - 1)) ** 0.5
    assert abs(sum(label for _, label in sample) / n - share) < 3 * se
    first = dev[:n]  # the old choice: reviews sorted by text, so the first n are one corner of dev
    assert abs(sum(label for _, label in first) / n - share) > 3 * se
    assert dev_sample(dev, n) == sample and dev_sample(dev, None) == dev and dev_sample(dev, len(dev) + 5) == dev
    assert [dev.index(x) for x in sample] == sorted(dev.index(x) for x in sample)  # kept in dev's order


def test_every_seed_and_start_scores_the_same_dev_examples(monkeypatch):
    import minibert.book.finetune as ft

    seen = []

    class Stop(Exception):
        pass

    def encode(tokenizer, task, examples, label2id):
        seen.append(list(examples))
        if len(seen) % 2 == 0:  # train, then dev: stop before training
            raise Stop
        return []

    monkeypatch.setattr(ft, "encode", encode)
    splits = review_splits()
    for start in ("random", str(ft.default_checkpoint())):
        for seed in (0, 1, 7):
            with pytest.raises(Stop):
                ft.fine_tune("sequence", splits, start, ft.labels_of("reviews"), seed=seed, train_examples=50,
                             dev_examples=100, progress=False)
    trains, devs = seen[0::2], seen[1::2]
    assert len(devs) == 6 and all(d == devs[0] for d in devs) and len(devs[0]) == 100
    assert devs[0] != splits["dev"][:100]
    assert trains[0] != trains[1]  # the seed still draws the training sample


# ---------------------------------------------------------------------------------------------- the experiment set


def test_the_learning_rate_is_chosen_on_dev_never_on_test():
    from minibert.book.finetune import choose_lr

    entries = [{"lr": 3e-4, "dev_score": 0.70, "test": {"accuracy": 0.90}},
               {"lr": 1e-3, "dev_score": 0.74, "test": {"accuracy": 0.60}},
               {"lr": 3e-3, "dev_score": 0.72, "test": {"accuracy": 0.95}}]
    assert choose_lr(entries, [3e-4, 1e-3, 3e-3]) == 1e-3  # best dev, though its test score is the worst
    tie = [{"lr": 3e-3, "dev_score": 0.7}, {"lr": 1e-3, "dev_score": 0.7}]
    assert choose_lr(tie, [1e-3, 3e-3]) == 1e-3 and choose_lr(tie, [3e-3, 1e-3]) == 3e-3  # the first listed


@pytest.fixture(scope="module")
def quick_sets(tmp_path_factory):
    """The smoke-test set twice: one run at a time, and two worker processes."""
    folder = tmp_path_factory.mktemp("sets")
    out = {}
    for jobs in (1, 2):
        r = _cli("finetune-experiments", "--quick", "--no-progress", "--jobs", str(jobs), "--out", str(folder / f"{jobs}.json"))
        assert r.returncode == 0, r.stderr
        out[jobs] = json.loads((folder / f"{jobs}.json").read_text(encoding="utf-8"))
    return out


def test_the_set_gives_the_same_numbers_whatever_jobs(quick_sets):
    without_speed = lambda runs: [{k: v for k, v in r.items() if k != "throughput"} for r in runs]  # noqa: E731
    one, two = quick_sets[1], quick_sets[2]
    assert one["complete"] and two["complete"] and two["jobs"] == 2
    assert without_speed(one["runs"]) == without_speed(two["runs"])
    assert without_speed(one["lr_trials"]) == without_speed(two["lr_trials"])
    assert one["lr_choice"] == two["lr_choice"]


def test_each_start_runs_at_the_learning_rate_its_dev_trials_chose(quick_sets):
    result = quick_sets[1]
    plan, trials = result["plan"], result["lr_trials"]
    S, C = plan["sentiment"], plan["lr_choice"]
    candidates, at = C["candidates"], {int(b): chooser for b, chooser in C["at"].items()}
    main, series = list(plan["starts"]), list(plan["series"]["starts"])
    small = plan["series"]["budget"]
    assert small == S["budgets"][0] and at[S["budgets"][-1]] == small  # the quick set reuses a choice too
    starts_at = lambda b: main + (series if b == small else [])  # noqa: E731
    seeds_at = lambda b: plan["seeds"] + S["more_seeds"].get(str(b), [])  # noqa: E731
    # Trials: every candidate once, with one seed, for every start at each budget that chooses (and no other).
    assert sorted((t["start"], t["budget"], t["lr"]) for t in trials) == sorted(
        (s, b, lr) for b in sorted(set(at.values())) for s in starts_at(b) for lr in candidates)
    assert {t["seed"] for t in trials} == {C["seed"]}
    for start, by_budget in result["lr_choice"].items():
        for budget, choice in by_budget.items():
            mine = {t["lr"]: t["dev_score"] for t in trials if t["start"] == start and t["budget"] == at[int(budget)]}
            assert choice["chosen"] == max(candidates, key=lambda lr: (mine[lr], -candidates.index(lr)))
            assert {r["lr"] for r in result["runs"] if r["task"] == "sentiment" and r["start"] == start
                    and r["budget"] == int(budget)} == {choice["chosen"]}
    assert {r["lr"] for r in result["runs"] if r["task"] == "ner"} == {plan["ner"]["lr"]}
    # Every planned run once, in plan order: sentiment budgets x starts x seeds (more seeds and the series' starts
    # at the smallest budget), the pooler runs, then NER.
    expected = [("sentiment", s, b, seed, S["pooling"]) for b in S["budgets"] for s in starts_at(b) for seed in seeds_at(b)]
    expected += [("sentiment", s, plan["pooler_runs"]["budget"], seed, plan["pooler_runs"]["pooling"])
                 for s in plan["pooler_runs"]["starts"] for seed in plan["seeds"]]
    expected += [("ner", s, plan["ner"]["budget"], seed, None) for s in main for seed in plan["seeds"]]
    assert [(r["task"], r["start"], r["budget"], r["seed"], r.get("pooling")) for r in result["runs"]] == expected
    assert len(seeds_at(small)) > len(plan["seeds"]) and series
    kept = [r for r in result["runs"] if "test_predictions" in r]
    assert [(r["budget"], r["seed"]) for r in kept] == [(S["budgets"][-1], plan["seeds"][0])] * len(main)


def _args(tmp_path):
    import argparse

    return argparse.Namespace(out=str(tmp_path / "r.json"), threads=1, jobs=1, quick=False, no_progress=True)


def test_a_missing_or_unfinished_start_names_the_make_target_that_writes_it(tmp_path, monkeypatch):
    import minibert.book.finetune as ft

    ours = ROOT / "checkpoints" / "pretrain-zh-tiny"  # a finished 1,500-step run
    for name, where, message in (
            ("pretrained-99", str(tmp_path / "no-such-run"), r"no-such-run holds no checkpoint \(`make pretrain-99` "),
            ("pretrained-20000", str(ours), r"holds step 1500, not 20000 \(`make pretrain-20000` writes the finished")):
        plan = {**ft.PLAN, "starts": {"random": "random", name: where}, "series": {"budget": 100, "starts": {}},
                "pooler_runs": {**ft.PLAN["pooler_runs"], "starts": ["random"]}}
        monkeypatch.setattr(ft, "PLAN", plan)
        with pytest.raises(ft.FinetuneError, match=rf"start '{name}': .*{message}"):
            ft._experiments(_args(tmp_path))
        assert not (tmp_path / "r.json").exists()


def test_every_start_of_the_plan_has_its_make_target():
    import re

    import minibert.book.finetune as ft

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w.-]+):", makefile, flags=re.M))
    for name, where in {**ft.PLAN["starts"], **ft.PLAN["series"]["starts"]}.items():
        if where == "random":
            continue
        target = ft.make_target(name)
        assert target in targets, f"{name}: no `make {target}`"
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0].split("\n", 2)[1]  # its command line
        assert f"--out _build/{Path(where).name} " in recipe + " ", (name, recipe)  # it writes that checkpoint's run
        assert f"--steps {ft.checkpoint_state(name, ROOT / where)['step']} " in recipe, (name, recipe)


@pytest.mark.parametrize("change, message", [
    (lambda p: p["series"]["starts"].update({"random": "random"}), "the series repeats the start(s) ['random']"),
    (lambda p: p["sentiment"]["more_seeds"].update({100: [1, 3]}), "more_seeds at 100 labels [1, 3] repeat a seed"),
    (lambda p: p["lr_choice"]["at"].update({3000: 300}), "chosen at 300, which is not a budget of the set"),
    (lambda p: p["series"].update({"budget": 50}), "the series' budget 50 is not a budget of the set")])
def test_a_plan_that_would_run_something_twice_or_choose_nowhere_is_refused(change, message):
    import copy

    import minibert.book.finetune as ft

    plan = copy.deepcopy(ft.PLAN)
    ft.check_plan(plan)
    change(plan)
    with pytest.raises(ft.FinetuneError) as info:
        ft.check_plan(plan)
    assert message in str(info.value)


def test_the_full_plan_runs_each_spec_once_and_reuses_each_chosen_trial(tmp_path, monkeypatch):
    """The chapter's plan with made-up scores (no training): every run the plan lists is made exactly once, the
    winning trial of each (start, choosing budget) stands in for that start's seed-0 run at those budgets, and the
    counts follow from the plan's own numbers."""
    import zlib

    import minibert.book.finetune as ft

    made = []

    def fake_run_specs(specs, jobs, progress, on_done):
        entries = []
        for spec in specs:
            made.append(spec)
            score = zlib.crc32(f"{spec['start']} {spec['lr']} {spec['budget']}".encode()) / 2**32  # made up, fixed
            entry = {k: spec[k] for k in ("task", "start", "budget", "seed", "lr")} | {"dev_score": score,
                                                                                     "test": {"accuracy": 0.5}}
            if spec["task"] == "sentiment":
                entry["pooling"] = spec["pooling"]
            entries.append(entry)
            on_done(entry)
        return entries

    monkeypatch.setattr(ft, "run_specs", fake_run_specs)
    assert ft._experiments(_args(tmp_path)) == 0
    plan, made_keys = ft.PLAN, [json.dumps({k: v for k, v in s.items() if k not in ("progress", "keep_predictions")},
                                           sort_keys=True) for s in made]
    assert len(made_keys) == len(set(made_keys))  # nothing made twice
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    S, C = plan["sentiment"], plan["lr_choice"]
    main, series = list(plan["starts"]), list(plan["series"]["starts"])
    small = plan["series"]["budget"]
    n_trials = len(C["candidates"]) * (len(main) * len(set(C["at"].values())) + len(series))
    seeds = {b: len(plan["seeds"]) + len(S["more_seeds"].get(b, [])) for b in S["budgets"]}
    sentiment_runs = sum(seeds[b] * (len(main) + (len(series) if b == small else 0)) for b in S["budgets"])
    pooler_runs = len(plan["pooler_runs"]["starts"]) * len(plan["seeds"])
    ner_runs = len(main) * len(plan["seeds"])
    reused = len(main) * len(set(C["at"].values())) + len(series)  # one seed-0 run per (start, choosing budget)
    assert len(result["lr_trials"]) == n_trials
    assert len(result["runs"]) == sentiment_runs + pooler_runs + ner_runs
    assert len(made) == n_trials + len(result["runs"]) - reused
    for r in result["runs"]:  # each run is the one planned at its place: a reused trial too
        if r["task"] == "sentiment" and r["pooling"] == S["pooling"]:
            assert r["lr"] == result["lr_choice"][r["start"]][str(r["budget"])]["chosen"], r
    per_budget = {b: [(r["start"], r["seed"]) for r in result["runs"] if r["task"] == "sentiment" and r["budget"] == b
                      and r["pooling"] == S["pooling"]] for b in S["budgets"]}
    assert all(len(v) == len(set(v)) == seeds[b] * (len(main) + (len(series) if b == small else 0))
               for b, v in per_budget.items())
    assert set(result["checkpoints"]) == {name for name, where in {**plan["starts"], **plan["series"]["starts"]}.items()
                                          if where != "random"}


@pytest.mark.parametrize("args, message", [(["--jobs", "0"], "--jobs must be a positive integer, got 0"),
                                           (["--threads", "-2"], "--threads must be a positive integer, got -2")])
def test_the_set_refuses_bad_jobs_and_threads(tmp_path, args, message):
    r = _cli("finetune-experiments", "--quick", *args, "--out", str(tmp_path / "r.json"))
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "r.json").exists()


def test_the_set_never_overwrites_a_file_it_did_not_write(tmp_path):
    mine = tmp_path / "results.json"
    mine.write_text('{"notes": "mine"}', encoding="utf-8")
    r = _cli("finetune-experiments", "--quick", "--out", str(mine))
    assert r.returncode == 2 and "not a results file this command wrote" in r.stderr
    assert mine.read_text(encoding="utf-8") == '{"notes": "mine"}'
