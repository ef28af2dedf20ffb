"""`minibert pretrain`: masked-LM + next-sentence pretraining on one process or many (hand-written).

The pieces (masking, next-sentence pairs, the model, the loss, the schedule) come from chapter 11
(`minibert.pretraining`); this file is the training loop around them: data, checkpoints, resuming and
`torch.distributed`. It imports torch only when the command runs, so `minibert` starts fast.

A run folder (`--out`) holds a marker file, then one `checkpoint-N/` per saved step (the newest only):
config.json, model.safetensors (transformers `BertForPreTraining` keys), vocab.txt, trainer_state.json,
optimizer.pt and rng_state_R.pth. A checkpoint is written into `.tmp-checkpoint-N/` and renamed into place, so
a run killed at any moment leaves the last complete checkpoint as it was.

Under `torchrun --nproc_per_node=N` (one machine) or `torchrun --nnodes=M ...` (many) the same command trains
with DistributedDataParallel: gloo on CPU, nccl on CUDA (with bf16 autocast). The global batch is the same for
any number of processes: example i of step s is drawn from its own seed, and rank r builds examples
[r*b, (r+1)*b) of it, b = batch_size / world_size. Losses are divided by the global counts, so the parameters
after k steps do not depend on the number of processes (up to float rounding).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

MARKER = ".minibert-pretrain-run"
CORPORA = ("zh", "reviews", "peoples-daily")
# The options that define a run: a resumed run must be given the same values (or none).
RUN_OPTIONS = ("config", "corpus", "steps", "batch_size", "seq_len", "lr", "warmup", "weight_decay",
               "max_grad_norm", "seed", "save_every", "mlm_probability", "vocab", "min_count", "eval_examples")
DEFAULTS = {"config": "bert-mini", "corpus": "zh", "steps": 1000, "batch_size": 32, "seq_len": 128, "lr": 1e-3,
            "warmup": None, "weight_decay": 0.01, "max_grad_norm": 1.0, "seed": 0, "save_every": 200,
            "mlm_probability": 0.15, "vocab": None, "min_count": 3, "eval_examples": 256}


class PretrainError(Exception):
    """A bad argument or input: the command prints it as one line and exits with status 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a preset (bert-tiny, bert-mini, bert-small, bert-base-chinese, ...) or a "
                   "config.json; vocab_size is set to the vocabulary's size (default: bert-mini)")
    p.add_argument("--corpus", help="zh (reviews + People's Daily), reviews, peoples-daily, or a UTF-8 text file: "
                   "one sentence or paragraph per line, documents separated by blank lines (default: zh)")
    p.add_argument("--steps", type=int, help="optimizer steps in the whole run (default: 1000)")
    p.add_argument("--batch-size", type=int, help="sequences per step, over all processes (default: 32)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence, [CLS] and [SEP]s included (default: 128)")
    p.add_argument("--lr", type=float, help="peak learning rate of the linear warm-up and decay (default: 1e-3)")
    p.add_argument("--warmup", type=int, help="warm-up steps (default: 10%% of --steps)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay, not on biases and LayerNorm (default: 0.01)")
    p.add_argument("--max-grad-norm", type=float, help="gradient clipping norm (default: 1.0)")
    p.add_argument("--mlm-probability", type=float, help="share of tokens masked (default: 0.15)")
    p.add_argument("--seed", type=int, help="seed of the weights, the examples and dropout (default: 0)")
    p.add_argument("--save-every", type=int, help="steps between checkpoints (default: 200; the last step always)")
    p.add_argument("--vocab", help="a vocab.txt to use instead of building a character vocabulary from the corpus")
    p.add_argument("--min-count", type=int, help="characters seen fewer times become [UNK] (default: 3)")
    p.add_argument("--out", required=True, help="the run folder: new, empty, or (with --resume) an earlier run")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps of this "
                   "invocation; --resume continues")
    p.add_argument("--eval-examples", type=int,
                   help="held-out sequences scored at each checkpoint (default: 256; 0: none)")
    p.add_argument("--threads", type=int, help="torch CPU threads per process (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------------- inputs


def _positive(name: str, value, allow_zero: bool = False, error: type[ValueError] | None = None) -> None:
    """A command-line integer setting that must be >= 1 (>= 0 with allow_zero); `error` is the command's own error
    class (PretrainError by default)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value >= 1)
    if not ok:
        raise (error or PretrainError)(f"--{name.replace('_', '-')} must be a {'non-negative' if allow_zero else 'positive'} "
                            f"integer, got {value!r}")


def resolve_settings(args: argparse.Namespace, saved: dict | None) -> dict:
    """The run's settings: the saved ones on --resume (explicit options must agree), else options + defaults."""
    given = {k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k) is not None}
    if saved is not None:
        if "eval_examples" not in saved:  # a run saved before --eval-examples was a run option: take today's value
            saved = {**saved, "eval_examples": given.get("eval_examples", DEFAULTS["eval_examples"])}
        differ = {k: (v, saved.get(k)) for k, v in given.items() if v != saved.get(k)}
        if differ:
            k, (v, s) = next(iter(differ.items()))
            raise PretrainError(f"--{k.replace('_', '-')} {v!r} differs from the resumed run's {s!r}; "
                                f"resume with the same options (or leave them out)")
        return dict(saved)
    s = {**DEFAULTS, **given}
    for name in ("steps", "batch_size", "seq_len", "save_every", "min_count"):
        _positive(name, s[name])
    _positive("eval_examples", s["eval_examples"], allow_zero=True)
    if s["warmup"] is None:
        s["warmup"] = s["steps"] // 10
    _positive("warmup", s["warmup"], allow_zero=True)
    if s["seq_len"] < 5:
        raise PretrainError(f"--seq-len {s['seq_len']} cannot fit [CLS] A [SEP] B [SEP]; use at least 5")
    for name in ("lr", "max_grad_norm"):
        if not s[name] > 0 or s[name] != s[name] or s[name] == float("inf"):
            raise PretrainError(f"--{name.replace('_', '-')} must be a positive number, got {s[name]!r}")
    if not 0 <= s["weight_decay"] < 1:
        raise PretrainError(f"--weight-decay must be in [0, 1), got {s['weight_decay']!r}")
    if not 0 < s["mlm_probability"] <= 1:
        raise PretrainError(f"--mlm-probability must be in (0, 1], got {s['mlm_probability']!r}")
    return s


def read_text_corpus(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(train, held-out) documents of a UTF-8 text file: documents separated by blank lines, sentences cut at
    。！？!? inside each line. 1 document in 50 (by a hash of its text) is held out."""
    from minibert.pretraining import _held_out, split_sentences

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PretrainError(f"--corpus {str(path)!r}: no such file, and not a corpus name "
                            f"({', '.join(CORPORA)})") from None
    except IsADirectoryError:
        raise PretrainError(f"--corpus {str(path)!r} is a folder; expected a UTF-8 text file or "
                            f"one of {', '.join(CORPORA)}") from None
    except OSError as exc:
        raise PretrainError(f"--corpus {str(path)!r}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PretrainError(f"--corpus {str(path)!r} is not UTF-8 text (byte {exc.start}: "
                            f"{raw[exc.start:exc.start + 1]!r})") from None
    documents = [[s for line in block.splitlines() for s in split_sentences(line)]
                 for block in re.split(r"\n\s*\n", text)]
    documents = [d for d in documents if d]
    if not documents:
        raise PretrainError(f"--corpus {str(path)!r} holds no text")
    keys = ["\n".join(d) for d in documents]
    return ([d for d, k in zip(documents, keys) if not _held_out(k)],
            [d for d, k in zip(documents, keys) if _held_out(k)])


def load_corpus(corpus: str) -> tuple[list[list[str]], list[list[str]]]:
    from minibert.pretraining import pretraining_documents

    if corpus in CORPORA:
        try:
            return pretraining_documents(corpus, "train"), pretraining_documents(corpus, "held-out")
        except (FileNotFoundError, ValueError) as exc:
            raise PretrainError(f"--corpus {corpus}: {exc}") from None
    return read_text_corpus(Path(corpus))


def load_config(name: str, vocab_size: int, seq_len: int):
    from minibert.config import BertConfig

    try:
        path = Path(name)
        if path.is_dir():
            path = path / "config.json"
        if name.endswith(".json") or path.exists() or "/" in name:
            config = BertConfig.from_json_file(path)
        else:
            config = BertConfig.from_preset(name)
        config = BertConfig.from_dict({**config.to_dict(), "vocab_size": vocab_size, "pad_token_id": 0})
    except ValueError as exc:
        raise PretrainError(f"--config: {exc}") from None
    if seq_len > config.max_position_embeddings:
        raise PretrainError(f"--seq-len {seq_len} exceeds the config's max_position_embeddings="
                            f"{config.max_position_embeddings}")
    return config


def read_vocab(path: Path) -> list[str]:
    try:
        vocab = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PretrainError(f"--vocab {str(path)!r}: cannot read it as UTF-8 text ({exc})") from None
    from minibert.pretraining import VOCAB_SPECIAL_TOKENS

    if vocab[:len(VOCAB_SPECIAL_TOKENS)] != VOCAB_SPECIAL_TOKENS:
        raise PretrainError(f"--vocab {str(path)!r} must start with {' '.join(VOCAB_SPECIAL_TOKENS)} (ids 0-4), "
                            f"starts with {' '.join(vocab[:len(VOCAB_SPECIAL_TOKENS)])}")
    return vocab


def encode_documents(tokenizer, documents: list[list[str]]) -> list[list[list[int]]]:
    """Each sentence as token ids (no special tokens); sentences that come out empty are dropped."""
    flat = [s for d in documents for s in d]
    ids = iter([e.ids for e in tokenizer.encode_batch(flat, add_special_tokens=False)])
    encoded = [[x for x in (next(ids) for _ in d) if x] for d in documents]
    return [d for d in encoded if d]


def example_seeds(seed: int, step: int, count: int, offset: int = 0) -> list[int]:
    """Seeds of examples offset..offset+count-1 of a step: a hash, so every process can draw any example."""
    return [int.from_bytes(hashlib.blake2b(f"{seed}:{step}:{i}".encode(), digest_size=8).digest(), "big")
            for i in range(offset, offset + count)]


# ---------------------------------------------------------------------------------------------- run folder


def prepare_out(out: Path, resume: bool) -> Path | None:
    """Refuse a folder that is not ours; return the checkpoint to resume from (None for a new run)."""
    if out.exists() and not out.is_dir():
        raise PretrainError(f"--out {str(out)!r} exists and is not a folder")
    ours = (out / MARKER).is_file()
    if resume:
        if not ours:
            raise PretrainError(f"--resume: {str(out)!r} is not a minibert pretrain run (no {MARKER} in it)")
        last = latest_checkpoint(out)
        for stale in out.glob(".tmp-checkpoint-*"):  # a save of this run that an interruption cut short
            if stale.is_dir() and os.environ.get("RANK", "0") == "0":
                shutil.rmtree(stale)
        if last is None:
            raise PretrainError(f"--resume: {str(out)!r} holds no complete checkpoint yet (the run stopped before its "
                                f"first save); run the same command without --resume to start it afresh there")
        return last
    if ours and _only_a_run_start(out):  # killed before its first checkpoint: nothing to resume, start afresh
        if os.environ.get("RANK", "0") == "0":
            for stale in out.glob(".tmp-checkpoint-*"):
                shutil.rmtree(stale)
        return None
    if ours:
        raise PretrainError(f"--out {str(out)!r} already holds a run; add --resume to continue it, or pick a new folder")
    if out.exists() and any(out.iterdir()):
        raise PretrainError(f"--out {str(out)!r} is a non-empty folder that is not a minibert pretrain run; "
                            f"refusing to write into it (pick a new or empty folder)")
    return None


def _only_a_run_start(out: Path) -> bool:
    """True if `out` holds nothing but what a run writes before its first checkpoint: the marker and
    unfinished `.tmp-checkpoint-N/` folders (a save cut short)."""
    return all(p.name == MARKER or (p.is_dir() and not p.is_symlink() and re.fullmatch(r"\.tmp-checkpoint-\d+", p.name))
               for p in out.iterdir())


def latest_checkpoint(out: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir()
             and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def hf_config(config) -> dict:
    d = config.to_dict()
    d.pop("attn_implementation", None)
    return {"architectures": ["BertForPreTraining"], **d, "position_embedding_type": "absolute"}


def save_checkpoint(out: Path, step: int, model, optimizer, scheduler, vocab: list[str], state: dict,
                    rank: int, world: int, dist) -> Path:
    """Write checkpoint-<step>/ aside and rename it into place; then drop older checkpoints of this run."""
    import torch
    from safetensors.torch import save_file

    tmp, final = out / f".tmp-checkpoint-{step}", out / f"checkpoint-{step}"
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)  # a leftover of an interrupted save of this run
        tmp.mkdir()
    if world > 1:
        dist.barrier()
    torch.save(_rng_state(), tmp / f"rng_state_{rank}.pth")
    if rank == 0:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()
                   if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}  # tied copies
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config(model.config), indent=2) + "\n", encoding="utf-8")
        (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    if world > 1:
        dist.barrier()
    if rank == 0:
        for f in tmp.iterdir():  # flush the files before the rename makes them the checkpoint
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
        for old in out.iterdir():
            m = re.fullmatch(r"checkpoint-(\d+)", old.name)
            if m and int(m.group(1)) < step and old.is_dir():
                shutil.rmtree(old)  # an older checkpoint of this run (the folder is marked as ours)
    if world > 1:
        dist.barrier()
    return final


def _rng_state() -> dict:
    import random

    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def load_checkpoint(path: Path, model, optimizer, scheduler, rank: int, device) -> dict:
    import random

    import torch
    from safetensors.torch import load_file

    weights = load_file(path / "model.safetensors", device=str(device))
    result = model.load_state_dict(weights, strict=False)
    if result.unexpected_keys or set(result.missing_keys) - {"cls.predictions.decoder.weight",
                                                               "cls.predictions.decoder.bias"}:
        raise PretrainError(f"{path}: the weights do not fit the model (missing {result.missing_keys}, "
                            f"unexpected {result.unexpected_keys})")
    saved = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng_file = path / f"rng_state_{rank}.pth"
    if rng_file.is_file():
        rng = torch.load(rng_file, weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- training


class _Loss:
    """Wraps the model so DistributedDataParallel sees one forward call per step (it syncs gradients then)."""

    @staticmethod
    def module(model):
        import torch

        from minibert.pretraining import pretraining_loss

        class LossModule(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, batch, mlm_count, nsp_count):
                return pretraining_loss(self.model, batch, mlm_count, nsp_count)

        return LossModule()


def evaluate(model, batch: dict, unigram_id: int) -> dict:
    """Masked-token accuracy on held-out examples, the unigram baseline's (always the most frequent token) and
    next-sentence accuracy (the package's evaluate_pretraining, chapter 11), the shares rounded to 4 digits."""
    from minibert.pretraining import evaluate_pretraining

    scores = evaluate_pretraining(model, batch, unigram_id)
    return {k: v if k == "masked_tokens" else round(float(v), 4) for k, v in scores.items()}


def _command() -> str:
    """This invocation as `minibert <arguments>` (no interpreter or file paths)."""
    import shlex

    return "minibert " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def train(args: argparse.Namespace) -> int:
    import random

    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    from minibert.pretraining import (BertForPreTraining, adamw_param_groups, character_vocab, linear_warmup_decay,
                                      load_wordpiece, make_batch)

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    out = Path(args.out)
    if args.threads is not None:
        _positive("threads", args.threads)
        torch.set_num_threads(args.threads)
    if args.stop_after is not None:
        _positive("stop_after", args.stop_after)
    resume_from = prepare_out(out, args.resume)
    saved = json.loads((resume_from / "trainer_state.json").read_text(encoding="utf-8")) if resume_from else None
    s = resolve_settings(args, saved["settings"] if saved else None)
    if s["batch_size"] % world:
        raise PretrainError(f"--batch-size {s['batch_size']} must be divisible by the number of processes ({world})")
    load_config(s["config"], 5, s["seq_len"])  # a bad config or length fails now, before the corpus is read
    # -- data and vocabulary (every process builds the same, deterministically)
    train_docs, held_docs = load_corpus(s["corpus"])
    if resume_from is not None:
        vocab = read_vocab(resume_from / "vocab.txt")
    elif s["vocab"] is not None:
        vocab = read_vocab(Path(s["vocab"]))
    else:
        vocab = character_vocab([x for d in train_docs for x in d], min_count=s["min_count"])
    tokenizer = load_wordpiece(vocab)
    train_ids, held_ids = encode_documents(tokenizer, train_docs), encode_documents(tokenizer, held_docs)
    if len(train_ids) < 2 or not any(len(d) >= 2 for d in train_ids):
        raise PretrainError(f"--corpus {s['corpus']!r}: next-sentence pairs need at least 2 documents, one of them "
                            f"with 2+ sentences; it has {len(train_ids)} documents, "
                            f"{sum(len(d) >= 2 for d in train_ids)} with 2+ sentences")
    config = load_config(s["config"], len(vocab), s["seq_len"])
    counts = torch.bincount(torch.tensor([t for d in train_ids for x in d for t in x]), minlength=len(vocab))
    unigram_id = int(counts.argmax())
    # -- processes
    if world > 1:
        cuda = torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(s["seed"])  # the same initial weights in every process
    model = BertForPreTraining(config).to(device)
    model.train()
    optimizer = torch.optim.AdamW(adamw_param_groups(model, s["weight_decay"]), lr=s["lr"], betas=(0.9, 0.999),
                                  eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: linear_warmup_decay(step, warmup_steps=s["warmup"], total_steps=s["steps"]))
    state = {"settings": s, "step": 0, "tokens_seen": 0, "elapsed_s": 0.0, "losses": [], "mlm_losses": [],
             "nsp_losses": [], "eval": [], "world_size": world, "command": _command()}
    if resume_from is not None:
        state = {**load_checkpoint(resume_from, model, optimizer, scheduler, rank, device),
                 "command_resumed": _command()}
    else:
        torch.manual_seed(s["seed"] + rank)  # dropout differs between processes, as it would on one big batch
        random.seed(s["seed"] + rank)
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / MARKER).write_text(json.dumps({"tool": "minibert pretrain", "settings": s}) + "\n",
                                      encoding="utf-8")
    loss_module = _Loss.module(model)
    if world > 1:
        loss_module = torch.nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[local_rank] if device.type == "cuda" else None)
    local = s["batch_size"] // world
    held_batch = None
    if s["eval_examples"] and held_ids and len(held_ids) >= 2 and any(len(d) >= 2 for d in held_ids):
        held_batch = make_batch(held_ids, example_seeds(s["seed"] + 1, -1, s["eval_examples"]), s["seq_len"],
                                len(vocab), mlm_probability=s["mlm_probability"])
        held_batch = {k: v.to(device) for k, v in held_batch.items()}
    first, last = state["step"], s["steps"]
    if args.stop_after is not None:
        last = min(last, first + args.stop_after)
    bar = tqdm(total=s["steps"], initial=first, disable=rank != 0 or args.no_progress, desc="pretrain",
               unit="step", dynamic_ncols=True)
    started, window_tokens, window_start = time.perf_counter(), 0, time.perf_counter()
    elapsed_before = state["elapsed_s"]
    try:
        for step in range(first, last):
            batch = make_batch(train_ids, example_seeds(s["seed"], step, local, rank * local), s["seq_len"],
                               len(vocab), mlm_probability=s["mlm_probability"])
            batch = {k: v.to(device) for k, v in batch.items()}
            counts_here = torch.stack([(batch["labels"] != -100).sum(), batch["attention_mask"].sum()]).to(device)
            if world > 1:
                dist.all_reduce(counts_here)
            mlm_count, tokens = counts_here[0].clamp(min=1), int(counts_here[1])
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                mlm, nsp = loss_module(batch, mlm_count, s["batch_size"])
            (world * (mlm + nsp)).backward()  # DDP averages the gradients over the processes: undo the 1/world
            torch.nn.utils.clip_grad_norm_(model.parameters(), s["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            logged = torch.stack([mlm.detach(), nsp.detach()]).float()
            if world > 1:
                dist.all_reduce(logged)
            state["step"], state["tokens_seen"] = step + 1, state["tokens_seen"] + tokens
            state["mlm_losses"].append(float(logged[0]))
            state["nsp_losses"].append(float(logged[1]))
            state["losses"].append(float(logged[0] + logged[1]))
            window_tokens += tokens
            if rank == 0 and not args.no_progress:
                now = time.perf_counter()
                bar.set_postfix(loss=f"{state['losses'][-1]:.3f}", tok_s=f"{window_tokens / max(now - window_start, 1e-9):,.0f}")
                if now - window_start > 5:
                    window_tokens, window_start = 0, now
            bar.update(1)
            if state["step"] % s["save_every"] == 0 or state["step"] == last:
                state["elapsed_s"] = round(elapsed_before + time.perf_counter() - started, 3)
                if held_batch is not None:
                    state["eval"].append({"step": state["step"], **evaluate(model, held_batch, unigram_id)})
                save_checkpoint(out, state["step"], model, optimizer, scheduler, vocab, state, rank, world, dist)
    except KeyboardInterrupt:
        bar.close()
        if rank == 0:
            done = latest_checkpoint(out) if out.is_dir() else None
            print(f"minibert pretrain: interrupted at step {state['step']}; the last checkpoint is "
                  f"{done if done else 'none yet'} (continue with --resume)", file=sys.stderr)
        return 130
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    bar.close()
    if rank == 0:
        final = latest_checkpoint(out)
        summary = state["eval"][-1] if state["eval"] else {}
        print(f"minibert pretrain: step {state['step']}/{s['steps']}, loss {state['losses'][-1]:.3f}, "
              f"{state['tokens_seen']:,} tokens in {state['elapsed_s']:.0f}s"
              + (f", held-out masked accuracy {summary['masked_accuracy']:.3f} (unigram baseline "
                 f"{summary['unigram_accuracy']:.3f})" if summary else "") + f"; wrote {final}")
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        return train(args)
    except PretrainError as exc:
        print(f"minibert pretrain: error: {exc}", file=sys.stderr)
        return 2
