"""`minibert finetune`: sentence or token classification from a checkpoint or from random init (hand-written).

The pieces (the heads, the labelled data and its splits, the metrics) come from chapter 12
(`minibert.finetuning`); this file is the training loop around them, the command's options and the chapter's
experiment set (`make finetune`). It imports torch only when the command runs, so `minibert` starts fast.

Only the "train" split trains and only "dev" chooses (the best epoch, early stopping, the learning rate of an
experiment); "test" is scored once, after everything is chosen. The output folder (`--out`) holds a marker file,
then config.json, model.safetensors and vocab.txt (a folder transformers' AutoModelFor...Classification
loads) and metrics.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

from . import pretrain

MARKER = ".minibert-finetune-run"
DATA = {"reviews": "sequence", "peoples-daily-ner": "token"}  # data set -> the task it is labelled for
TASKS = ("sequence", "token")


class FinetuneError(ValueError):
    """A bad argument or input: the command prints it as one line and exits with status 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="sequence (one label per text) or token (one label per token)")
    p.add_argument("--data", required=True, help="reviews (sentiment, for --task sequence) or peoples-daily-ner "
                   "(person/place/organisation BIO tags, for --task token)")
    p.add_argument("--from", dest="start", required=True, help="a checkpoint folder (ours from `minibert pretrain`, "
                   "or any transformers BERT folder with vocab.txt), or `random` (the default checkpoint's shape and "
                   "vocabulary, fresh weights)")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training examples (default: 3)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the head, the sample of examples, the order and "
                   "dropout (default: 0)")
    p.add_argument("--train-examples", type=int, help="use this many training examples, drawn with --seed "
                   "(default: all)")
    p.add_argument("--warmup", type=float, default=0.1, help="share of the steps spent warming up (default: 0.1)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default: 0.01)")
    p.add_argument("--patience", type=int, default=2, help="stop once more than this many epochs in a row bring "
                   "no better dev score (default: 2: stop at the 3rd)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per text, [CLS] and [SEP] included "
                   "(default: 128)")
    p.add_argument("--dev-examples", type=int, help="score only N dev examples each epoch, a random sample drawn "
                   "with a fixed seed (0), the same whatever --seed (default: all)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", required=True, help="a new or empty folder, or one an earlier finetune run wrote")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------------- inputs


def _positive(name: str, value, allow_zero: bool = False) -> None:
    pretrain._positive(name, value, allow_zero, error=FinetuneError)  # the same rule and message as pretraining


def check_settings(s: dict) -> None:
    if s["task"] not in TASKS:
        raise FinetuneError(f"unknown task {s['task']!r}; expected one of {', '.join(TASKS)}")
    if s["data"] not in DATA:
        raise FinetuneError(f"unknown data set {s['data']!r}; expected one of {', '.join(DATA)}")
    if DATA[s["data"]] != s["task"]:
        raise FinetuneError(f"--data {s['data']} is labelled for --task {DATA[s['data']]}, not {s['task']!r}")
    for name in ("epochs", "batch_size", "max_length"):
        _positive(name, s[name])
    _positive("patience", s["patience"], allow_zero=True)
    for name in ("train_examples", "dev_examples"):
        if s.get(name) is not None:
            _positive(name, s[name])
    if s["max_length"] < 3:
        raise FinetuneError(f"--max-length {s['max_length']} leaves no room for a token between [CLS] and [SEP]")
    if not (isinstance(s["lr"], float) and 0 < s["lr"] < math.inf):
        raise FinetuneError(f"--lr must be a positive number, got {s['lr']!r}")
    if not 0 <= s["warmup"] < 1:
        raise FinetuneError(f"--warmup is a share of the steps, in [0, 1); got {s['warmup']!r}")
    if not 0 <= s["weight_decay"] < 1:
        raise FinetuneError(f"--weight-decay must be in [0, 1), got {s['weight_decay']!r}")


def default_checkpoint() -> Path:
    return Path(__file__).resolve().parents[2] / "checkpoints" / "pretrain-zh-tiny"


def load_splits(data: str) -> dict:
    from minibert.finetuning import ner_splits, review_splits

    return review_splits() if data == "reviews" else ner_splits()


def labels_of(data: str) -> dict[int, str]:
    from minibert.finetuning import NER_LABELS, SENTIMENT_LABELS

    return dict(SENTIMENT_LABELS) if data == "reviews" else dict(enumerate(NER_LABELS))


def tokenizer_of(folder: Path, max_length: int):
    from minibert.pretraining import load_wordpiece

    vocab_file = folder / "vocab.txt"
    if not vocab_file.is_file():
        raise FinetuneError(f"--from {str(folder)!r} holds no vocab.txt: the command needs the checkpoint's vocabulary")
    vocab = vocab_file.read_text(encoding="utf-8").splitlines()
    tokenizer = load_wordpiece(vocab)
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer, vocab


def encode(tokenizer, task: str, examples: list, label2id: dict) -> list[tuple[list[int], object]]:
    """(token ids, label) per example: the class id for a sequence task, a label id per token for a token task."""
    from minibert.finetuning import token_labels

    if task == "token":
        for text, tags in examples:
            if len(text) != len(tags):
                raise FinetuneError(f"{len(tags)} tag(s) for a text of {len(text)} characters (one tag per character "
                                    f"expected): {text[:30]!r}")
    encodings = tokenizer.encode_batch([text for text, _ in examples])
    if task == "sequence":
        return [(e.ids, label) for e, (_, label) in zip(encodings, examples)]
    return [(e.ids, token_labels(e.offsets, tags, label2id)) for e, (_, tags) in zip(encodings, examples)]


def batches(encoded: list, batch_size: int, rng: random.Random | None):
    """Padded (input_ids, attention_mask, labels) batches. Training (rng given): shuffled, then sorted by length
    within windows of 50 batches so that each batch pads little; evaluation: in order of length."""
    import torch

    order = list(range(len(encoded)))
    if rng is None:
        order.sort(key=lambda i: len(encoded[i][0]))
    else:
        rng.shuffle(order)
        window = batch_size * 50
        order = [i for w in range(0, len(order), window) for i in sorted(order[w:w + window], key=lambda i: len(encoded[i][0]))]
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(chunks)
    for chunk in chunks:
        T = max(len(encoded[i][0]) for i in chunk)
        ids = torch.zeros(len(chunk), T, dtype=torch.long)
        mask = torch.zeros(len(chunk), T, dtype=torch.long)
        token_task = isinstance(encoded[chunk[0]][1], list)
        labels = torch.full((len(chunk), T), -100, dtype=torch.long) if token_task else torch.zeros(len(chunk), dtype=torch.long)
        for row, i in enumerate(chunk):
            x, y = encoded[i]
            ids[row, :len(x)], mask[row, :len(x)] = torch.tensor(x), 1
            if token_task:
                labels[row, :len(y)] = torch.tensor(y)
            else:
                labels[row] = y
        yield chunk, ids, mask, labels


# ---------------------------------------------------------------------------------------------- model


def build_model(task: str, start: str, id2label: dict, seed: int, pooling: str = "cls"):
    """The classifier, seeded: from a checkpoint folder (its encoder; a fresh head), or `random` (the default
    checkpoint's config, every weight fresh). pooling="mean" (sequence task only): the mean-pooled variant."""
    import torch

    from minibert.config import BertConfig
    from minibert.finetuning import (BertForSequenceClassification, BertForSequenceClassificationMeanPooled,
                                     BertForTokenClassification)

    cls = BertForTokenClassification if task == "token" else (
        BertForSequenceClassificationMeanPooled if pooling == "mean" else BertForSequenceClassification)
    torch.manual_seed(seed)
    if start == "random":
        folder = default_checkpoint()
        config = BertConfig.from_json_file(folder / "config.json")
        return cls(config, num_labels=len(id2label), id2label=id2label), folder
    folder = Path(start)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise FinetuneError(f"--from {start!r} is neither `random` nor a checkpoint folder with a config.json")
    import logging

    logging.getLogger("minibert.pretrained").setLevel(logging.ERROR)  # "head initialised fresh" is the point here
    try:
        model = cls.from_pretrained(folder, num_labels=len(id2label), id2label=id2label)
    except (ValueError, FileNotFoundError) as exc:
        raise FinetuneError(f"--from {start!r}: {exc}") from None
    return model, folder


def predict(model, encoded: list, batch_size: int = 128) -> list:
    """Predicted class ids (sequence task) or lists of label ids at the labelled tokens (token task), in order."""
    import torch

    was_training = model.training
    model.eval()
    out = [None] * len(encoded)
    with torch.inference_mode():
        for chunk, ids, mask, labels in batches(encoded, batch_size, None):
            predicted = model(ids, attention_mask=mask).logits.argmax(-1)
            for row, i in enumerate(chunk):
                if labels.dim() == 1:
                    out[i] = int(predicted[row])
                else:
                    keep = labels[row] != -100
                    out[i] = predicted[row][keep].tolist()
    model.train(was_training)
    return out


def score(task: str, encoded: list, predicted: list, id2label: dict) -> dict:
    from minibert.finetuning import entity_metrics, sequence_metrics

    if task == "sequence":
        return sequence_metrics([y for _, y in encoded], predicted, len(id2label))
    tags = [[id2label[t] for t in y if t != -100] for _, y in encoded]
    return entity_metrics(tags, [[id2label[t] for t in p] for p in predicted])


def main_score(task: str, metrics: dict) -> float:
    return metrics["accuracy"] if task == "sequence" else metrics["entity_f1"]


DEV_SEED = 0  # the dev sample's own seed: the same dev examples for every run, whatever its --seed and start


def dev_sample(dev: list, n: int | None) -> list:
    """The dev examples scored each epoch: all of them (n None or at least len(dev)), else n drawn at random with
    the fixed seed DEV_SEED, in their order in dev. The splits are sorted by text, so the first n would be one
    corner of dev (for the reviews, a slice with far fewer positives than dev as a whole); a seeded sample has
    about dev's label mix, and the same one for every run and start, so their dev scores compare."""
    if n is None or n >= len(dev):
        return list(dev)
    keep = sorted(random.Random(DEV_SEED).sample(range(len(dev)), n))
    return [dev[i] for i in keep]


def fine_tune(task: str, splits: dict, start: str, id2label: dict, *, epochs: int = 3, lr: float = 1e-3,
              batch_size: int = 32, seed: int = 0, train_examples: int | None = None, warmup: float = 0.1,
              weight_decay: float = 0.01, patience: int = 2, max_length: int = 128, dev_examples: int | None = None,
              pooling: str = "cls", freeze_embeddings: bool = False, progress: bool = True, test: bool = True):
    """Train on (a seeded sample of) "train", score "dev" (or its fixed sample of `dev_examples`, `dev_sample`)
    after each epoch, keep the best epoch's weights, stop once more than `patience` epochs in a row bring no better dev score; then score
    "test" once. Returns (model, metrics)."""
    import torch
    from tqdm import tqdm

    from minibert.pretraining import adamw_param_groups, linear_warmup_decay

    if task not in TASKS:
        raise FinetuneError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if pooling not in ("cls", "mean") or (pooling == "mean" and task != "sequence"):
        raise FinetuneError(f"pooling must be 'cls' or (for the sequence task) 'mean', got {pooling!r}")

    model, folder = build_model(task, start, id2label, seed, pooling)
    if freeze_embeddings:  # keep the pretrained character vectors: fewer weights to fit on few labels
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    tokenizer, vocab = tokenizer_of(folder if start != "random" else default_checkpoint(), max_length)
    label2id = {name: i for i, name in id2label.items()}
    rng = random.Random(seed)
    train = splits["train"] if train_examples is None else rng.sample(splits["train"], min(train_examples, len(splits["train"])))
    encoded = {"train": encode(tokenizer, task, train, label2id),
               "dev": encode(tokenizer, task, dev_sample(splits["dev"], dev_examples), label2id)}
    steps_per_epoch = math.ceil(len(encoded["train"]) / batch_size)
    total = steps_per_epoch * epochs
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in adamw_param_groups(model, weight_decay)]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: linear_warmup_decay(
        step, warmup_steps=round(warmup * total), total_steps=total))
    history, best, best_state, waited, tokens, train_seconds = [], -1.0, None, 0, 0, 0.0
    bar = tqdm(total=total, disable=not progress, desc=f"{task} {Path(start).name} n={len(train)} seed={seed}",
               file=sys.stderr, dynamic_ncols=True)
    model.train()
    for epoch in range(1, epochs + 1):
        began, losses = time.perf_counter(), []
        for _, ids, mask, labels in batches(encoded["train"], batch_size, rng):
            loss = model(ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            tokens += int(mask.sum())
            bar.update(1)
        train_seconds += time.perf_counter() - began
        dev = score(task, encoded["dev"], predict(model, encoded["dev"]), id2label)
        history.append({"epoch": epoch, "train_loss": round(sum(losses) / len(losses), 4),
                        "dev": main_score(task, dev)})
        bar.set_postfix(dev=f"{main_score(task, dev):.3f}")
        if main_score(task, dev) > best:
            best, best_epoch, best_dev, waited = main_score(task, dev), epoch, dev, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if waited > patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    metrics = {"train_examples": len(train), "epochs_run": len(history), "best_epoch": best_epoch,
               "history": history, "dev": best_dev,
               "throughput": {"train_seconds": round(train_seconds, 2),
                              "examples_per_s": round(len(train) * len(history) / train_seconds, 1),
                              "tokens_per_s": round(tokens / train_seconds, 1)}}
    if test:
        encoded["test"] = encode(tokenizer, task, splits["test"], label2id)
        predicted = predict(model, encoded["test"])
        metrics["test"] = score(task, encoded["test"], predicted, id2label)
        metrics["test_predictions"] = predicted if task == "sequence" else None
    return model, metrics


# ---------------------------------------------------------------------------------------------- the command


def prepare_out(out: Path) -> None:
    """Refuse a path that is a file, or a non-empty folder that an earlier finetune run did not write."""
    if out.exists() and not out.is_dir():
        raise FinetuneError(f"--out {str(out)!r} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise FinetuneError(f"--out {str(out)!r} is a non-empty folder that no finetune run wrote; refusing to write "
                            f"into it (pick a new or empty folder)")


def write_out(out: Path, model, vocab_file: Path, metrics: dict) -> None:
    """Write the folder aside, then swap it in: a failed run leaves the previous contents as they were."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        (tmp / MARKER).write_text("written by `minibert finetune`; it may replace this folder\n", encoding="utf-8")
        model.save_pretrained(tmp)
        shutil.copyfile(vocab_file, tmp / "vocab.txt")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)  # the earlier run's folder (marked as ours)
    else:
        os.replace(tmp, out)


def _command() -> str:
    import shlex

    return "minibert " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _commit() -> str | None:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+uncommitted changes" if dirty.stdout.strip() else "")


def main(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except FinetuneError as exc:
        print(f"minibert finetune: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    s = {k: getattr(args, k) for k in ("task", "data", "start", "epochs", "lr", "batch_size", "seed", "train_examples",
                                       "warmup", "weight_decay", "patience", "max_length", "dev_examples")}
    check_settings(s)
    out = Path(args.out)
    prepare_out(out)
    if args.threads is not None:
        _positive("threads", args.threads)
        torch.set_num_threads(args.threads)
    id2label = labels_of(s["data"])
    folder = default_checkpoint() if s["start"] == "random" else Path(s["start"])
    tokenizer_of(folder, s["max_length"])  # a folder without vocab.txt fails before the data is read
    splits = load_splits(s["data"])
    began = time.perf_counter()
    model, metrics = fine_tune(s["task"], splits, s["start"], id2label, epochs=s["epochs"], lr=s["lr"],
                               batch_size=s["batch_size"], seed=s["seed"], train_examples=s["train_examples"],
                               warmup=s["warmup"], weight_decay=s["weight_decay"], patience=s["patience"],
                               max_length=s["max_length"], dev_examples=s["dev_examples"], progress=not args.no_progress)
    metrics.pop("test_predictions", None)
    metrics = {"command": _command(), "commit": _commit(), "settings": s, **metrics,
               "seconds": round(time.perf_counter() - began, 1), "threads": torch.get_num_threads()}
    write_out(out, model, folder / "vocab.txt", metrics)
    dev, test = main_score(s["task"], metrics["dev"]), main_score(s["task"], metrics["test"])
    name = "accuracy" if s["task"] == "sequence" else "entity F1"
    print(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}: dev {name} {dev:.4f}, test {name} {test:.4f}; "
          f"{metrics['throughput']['examples_per_s']} training examples/s; wrote {out}")
    return 0


# ---------------------------------------------------------------------------------------------- experiments

# The chapter's experiment set (`make finetune`): every number the chapter's table, figure and NER section show.
# "starts" name the weights each run begins from (a checkpoint folder, relative to the course root, or random):
# chapter 11's run (`make pretrain`, 1,500 steps at a peak learning rate of 1e-3), the same recipe for 20,000
# steps at 2e-3 (`make pretrain-20000`) and random weights, at every budget. "series" adds two more checkpoints at
# the smallest budget only, so that the length of pretraining and its rate can be told apart: 1,500 steps at 2e-3
# (`make pretrain-1500-lr2e-3`) and 8,000 steps at 2e-3 (`make pretrain-8000`).
# The learning rate is chosen on dev for each start: at each budget of lr_choice["at"], every candidate with
# lr_choice's seed, the best dev accuracy wins (the first candidate on a tie), and that start's runs use it (the
# pooler runs: its choice for mean pooling). The largest budget takes the rate chosen at 1,000 labels (its trials
# would cost most). Sentiment has 3 seeds per start and budget, 5 at 100 labels (where seeds differ most).
# Named entities use one learning rate for every start, chosen on nothing. Test scores choose nothing.
PLAN = {
    "seeds": [0, 1, 2],
    "starts": {"pretrained-1500": "checkpoints/pretrain-zh-tiny", "pretrained-20000": "checkpoints/pretrain-zh-tiny-20000",
               "random": "random"},
    "series": {"budget": 100, "starts": {"pretrained-1500-lr2e-3": "checkpoints/pretrain-zh-tiny-1500-lr2e-3",
                                         "pretrained-8000": "checkpoints/pretrain-zh-tiny-8000"}},
    "lr_choice": {"candidates": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "seed": 0, "at": {100: 100, 1000: 1000, 3000: 1000}},
    "sentiment": {"budgets": [100, 1000, 3000], "epochs": {100: 20, 1000: 6, 3000: 4}, "more_seeds": {100: [3, 4]},
                  "dev_examples": 300, "pooling": "mean"},
    "pooler_runs": {"budget": 1000, "pooling": "cls", "starts": ["pretrained-20000"]},
    "ner": {"budget": 3000, "epochs": 12, "dev_examples": 300, "lr": 1e-3},
    "batch_size": 32, "warmup": 0.1, "patience": 3, "max_length": 128,
}
QUICK = {"seeds": [0], "batch_size": 16,
         "series": {"budget": 40, "starts": {"pretrained-8000": "checkpoints/pretrain-zh-tiny-8000"}},
         "lr_choice": {"candidates": [1e-3, 3e-3], "seed": 0, "at": {40: 40, 80: 40}},
         "sentiment": {"budgets": [40, 80], "epochs": {40: 2, 80: 2}, "more_seeds": {40: [1]}, "dev_examples": 40,
                       "pooling": "mean"},
         "pooler_runs": {"budget": 40, "pooling": "cls", "starts": ["pretrained-20000", "random"]},
         "ner": {"budget": 40, "epochs": 2, "dev_examples": 40, "lr": 1e-3}}


def seeds_at(plan: dict, budget: int) -> list[int]:
    """The seeds of every sentiment start at this budget."""
    more = plan["sentiment"].get("more_seeds", {})
    return plan["seeds"] + more.get(budget, more.get(str(budget), []))


def starts_at(plan: dict, budget: int) -> list[str]:
    """The starts fine-tuned on sentiment at this budget: every main start, and the series' at its budget."""
    return list(plan["starts"]) + (list(plan["series"]["starts"]) if budget == plan["series"]["budget"] else [])


def experiments_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the results JSON to write (a new file, or one this command wrote)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default: 1)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (default: 1); the "
                   "results are the same whatever --jobs, only faster")
    p.add_argument("--quick", action="store_true", help="a smoke test: one seed, tiny budgets (not the chapter's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _summary(run: dict, task: str) -> dict:
    keep = {k: run[k] for k in ("train_examples", "epochs_run", "best_epoch", "history", "throughput")}
    return {**keep, "dev_score": main_score(task, run["dev"]), "test": run["test"]}


def experiments(args: argparse.Namespace) -> int:
    try:
        return _experiments(args)
    except FinetuneError as exc:
        print(f"minibert finetune-experiments: {exc}", file=sys.stderr)
        return 2


def _write_json(out: Path, result: dict) -> None:
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)


_DATA: dict = {}  # per process: the splits, read once


def _data(name: str, quick: bool) -> tuple[dict, dict]:
    if name not in _DATA:
        splits = load_splits(name)
        if quick:
            splits["test"] = splits["test"][:50]
        _DATA[name] = splits, labels_of(name)
    return _DATA[name]


def run_spec(spec: dict) -> dict:
    """One run of the set, described by a plain dict (so that a worker process can take it): fine-tune, score,
    return the entry the results file records. Seeded by spec["seed"] alone, so the same spec gives the same
    numbers in any process, in any order."""
    import torch

    torch.set_num_threads(spec["threads"])
    task = "token" if spec["task"] == "ner" else "sequence"
    splits, labels = _data("peoples-daily-ner" if task == "token" else "reviews", spec["quick"])
    _, run = fine_tune(task, splits, spec["from"], labels, epochs=spec["epochs"], lr=spec["lr"], seed=spec["seed"],
                       train_examples=spec["budget"], dev_examples=spec["dev_examples"],
                       pooling=spec.get("pooling", "cls"), batch_size=spec["batch_size"], warmup=spec["warmup"],
                       patience=spec["patience"], max_length=spec["max_length"], progress=spec["progress"])
    predictions = run.pop("test_predictions")
    entry = {k: spec[k] for k in ("task", "start", "budget", "seed", "lr") + (("pooling",) if task == "sequence" else ())}
    entry.update(_summary(run, task))
    if spec.get("keep_predictions"):
        entry["test_predictions"] = predictions  # for the chapter's close reading of errors
    return entry


def run_specs(specs: list[dict], jobs: int, progress: bool, on_done) -> list[dict]:
    """Every spec's entry, in the specs' order; on_done(entry) is called in that order as they finish. jobs > 1: a
    pool of worker processes (spawned: a forked torch can hang), each run on its own seed and threads."""
    from tqdm import tqdm

    bar = tqdm(total=len(specs), disable=not progress or jobs == 1, desc="runs", file=sys.stderr, dynamic_ncols=True)
    entries = []
    if jobs == 1:
        results = map(run_spec, specs)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(run_spec, [{**s, "progress": False} for s in specs])
    try:
        for entry in results:
            entries.append(entry)
            on_done(entry)
            bar.update(1)
    finally:
        if jobs > 1:
            pool.shutdown(cancel_futures=True)
        bar.close()
    return entries


def check_plan(plan: dict) -> None:
    """The plan's names and seeds may not overlap (a run would be made twice), and every budget's learning rate must
    be chosen at a budget that has trials."""
    S, C = plan["sentiment"], plan["lr_choice"]
    both = set(plan["starts"]) & set(plan["series"]["starts"])
    if both:
        raise FinetuneError(f"the series repeats the start(s) {sorted(both)}: a start is either fine-tuned at every "
                            f"budget or in the series, not both")
    for budget, more in S.get("more_seeds", {}).items():
        if set(more) & set(plan["seeds"]) or len(set(more)) != len(more):
            raise FinetuneError(f"more_seeds at {budget} labels {more} repeat a seed of {plan['seeds']}")
    for budget in S["budgets"]:
        if C["at"].get(budget) not in S["budgets"]:
            raise FinetuneError(f"the learning rate at {budget} labels is chosen at {C['at'].get(budget)!r}, which is "
                                f"not a budget of the set {S['budgets']}")
    if plan["series"]["budget"] not in S["budgets"]:
        raise FinetuneError(f"the series' budget {plan['series']['budget']} is not a budget of the set {S['budgets']}")


def make_target(start: str) -> str:
    """The make target that writes a start's checkpoint: `pretrain` for chapter 11's, else pretrain-<the rest>."""
    return "pretrain" if start == "pretrained-1500" else start.replace("pretrained-", "pretrain-", 1)


def checkpoint_state(start: str, folder: Path) -> dict:
    """The step and command of a start's checkpoint (from its trainer_state.json); a missing checkpoint, or one
    whose step is not the one the start's name promises (pretrained-<steps>...), is refused."""
    import re

    state_file = folder / "trainer_state.json"
    if not (folder / "config.json").is_file() or not state_file.is_file():
        raise FinetuneError(f"start {start!r}: {folder} holds no checkpoint (`make {make_target(start)}` writes it)")
    state = json.loads(state_file.read_text(encoding="utf-8"))
    promised = re.match(r"pretrained-(\d+)", start)
    if promised and state.get("step") != int(promised.group(1)):
        raise FinetuneError(f"start {start!r}: {folder} holds step {state.get('step')!r}, not {promised.group(1)} "
                            f"(`make {make_target(start)}` writes the finished run)")
    return {"folder": folder.name, "step": state.get("step"), "lr": state.get("settings", {}).get("lr"),
            "command": state.get("command")}


def longest_first(specs: list[dict]) -> list[dict]:
    """The specs in the order to start them: the longest first (examples x epochs), so that with several jobs the
    set does not end on one long run while the other workers idle. Runs are recorded in plan order whatever this."""
    return sorted(specs, key=lambda s: -s["budget"] * s["epochs"])  # stable: ties keep their order


def choose_lr(entries: list[dict], candidates: list[float]) -> float:
    """The candidate whose run scored best on dev; the first one listed on a tie."""
    best = max(entries, key=lambda e: (e["dev_score"], -candidates.index(e["lr"])))
    return best["lr"]


def _experiments(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and (not out.is_file() or '"minibert finetune-experiments' not in out.read_text(
            encoding="utf-8", errors="replace")[:4000]):
        raise FinetuneError(f"--out {str(out)!r} exists and is not a results file this command wrote; pick a new path")
    _positive("threads", args.threads)
    _positive("jobs", args.jobs)
    plan = copy.deepcopy(PLAN)
    if args.quick:
        plan.update(copy.deepcopy(QUICK))
    root = Path(__file__).resolve().parents[2]
    check_plan(plan)
    every = {**plan["starts"], **plan["series"]["starts"]}
    starts = {name: where if where == "random" else str(root / where) for name, where in every.items()}
    checkpoints = {name: checkpoint_state(name, Path(where)) for name, where in starts.items() if where != "random"}
    out.parent.mkdir(parents=True, exist_ok=True)
    began, trials, runs = time.perf_counter(), [], []
    result = {"command": "minibert finetune-experiments " + " ".join(sys.argv[2:]), "commit": _commit(),
              "threads": args.threads, "jobs": args.jobs, "plan": plan, "complete": False, "seconds": 0.0,
              "checkpoints": checkpoints, "lr_choice": {}, "lr_trials": trials, "runs": runs}
    common = dict(batch_size=plan["batch_size"], warmup=plan["warmup"], patience=plan["patience"],
                  max_length=plan["max_length"], threads=args.threads, quick=args.quick,
                  progress=not args.no_progress)
    S, N, C = plan["sentiment"], plan["ner"], plan["lr_choice"]

    def key(spec: dict) -> str:
        return json.dumps({k: v for k, v in spec.items() if k not in ("progress", "keep_predictions")}, sort_keys=True)

    def recorder(into: list):
        def record(entry: dict) -> None:
            into.append(entry)
            result["seconds"] = round(time.perf_counter() - began, 1)
            _write_json(out, result)  # after every run: an interrupted set keeps what it finished
        return record

    def sentiment(start, budget, seed, lr, pooling):
        return {"task": "sentiment", "start": start, "from": starts[start], "budget": budget, "seed": seed, "lr": lr,
                "pooling": pooling, "epochs": S["epochs"][budget], "dev_examples": S["dev_examples"],
                "keep_predictions": budget == S["budgets"][-1] and seed == plan["seeds"][0], **common}

    # 1. The learning rate of each start, on dev: every candidate with one seed, at each budget that chooses for a
    # budget the start runs at.
    choosing = sorted({(C["at"][budget], start) for budget in S["budgets"] for start in starts_at(plan, budget)},
                      key=lambda bs: (bs[0], list(starts).index(bs[1])))
    tried = [sentiment(start, budget, C["seed"], lr, S["pooling"]) for budget, start in choosing for lr in C["candidates"]]
    ordered = longest_first(tried)
    done = dict(zip(map(key, ordered), run_specs(ordered, args.jobs, not args.no_progress, recorder(trials))))
    trials[:] = [done[key(spec)] for spec in tried]  # in plan order
    for budget in S["budgets"]:
        for start in starts_at(plan, budget):
            mine = [e for e in trials if e["start"] == start and e["budget"] == C["at"][budget]]
            result["lr_choice"].setdefault(start, {})[str(budget)] = {
                "chosen": choose_lr(mine, C["candidates"]), "chosen_at": C["at"][budget],
                "dev": {str(e["lr"]): e["dev_score"] for e in mine}}
    # 2. The set, each start at its learning rate; a run the choice already made is reused, not run again.
    lr_of = lambda start, budget: result["lr_choice"][start][str(budget)]["chosen"]  # noqa: E731
    specs = [sentiment(start, budget, seed, lr_of(start, budget), S["pooling"])
             for budget in S["budgets"] for start in starts_at(plan, budget) for seed in seeds_at(plan, budget)]
    P = plan["pooler_runs"]
    specs += [sentiment(start, P["budget"], seed, lr_of(start, P["budget"]), P["pooling"])
              for start in P["starts"] for seed in plan["seeds"]]
    specs += [{"task": "ner", "start": start, "from": starts[start], "budget": N["budget"], "seed": seed,
               "lr": N["lr"], "epochs": N["epochs"], "dev_examples": N["dev_examples"], **common}
              for start in plan["starts"] for seed in plan["seeds"]]
    todo = longest_first([s for s in specs if key(s) not in done])
    done.update(zip(map(key, todo), run_specs(todo, args.jobs, not args.no_progress, recorder(runs))))
    def planned(spec: dict) -> dict:  # a reused trial keeps its test predictions only where the plan keeps them
        entry = done[key(spec)]
        return entry if spec.get("keep_predictions") else {k: v for k, v in entry.items() if k != "test_predictions"}

    runs[:] = [planned(s) for s in specs]  # in plan order
    result["complete"] = True
    result["seconds"] = round(time.perf_counter() - began, 1)
    _write_json(out, result)
    print(f"{len(runs)} runs in {result['seconds']:.0f} s; wrote {out}")
    return 0
