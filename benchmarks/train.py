"""Training-step speed: minibert.BertForPreTraining against transformers.BertForPreTraining, same weights.

    .venv/bin/python benchmarks/train.py            # also run by make bench
    .venv/bin/python benchmarks/train.py --repeats 10 --threads 2 --cases tiny

One training step = forward with both pretraining losses (masked LM + next sentence), backward, AdamW step
(zero_grad included), models in train mode (dropout on), CPU float32. Per case it builds
transformers.BertForPreTraining with random weights, copies them into minibert (load_state_dict, strict=True),
checks that the losses agree (eval mode, max |diff| <= 1e-4), then times the steps interleaved: one round runs
every variant once, the order rotates between rounds, warm-up rounds are discarded. It prints the median time,
the ratio to transformers (of the medians, and "paired": the median of per-round ratios), and real tokens/s.

Variants:
  transformers        BertForPreTraining(..., labels=, next_sentence_label=).loss: vocabulary logits at every
                      position, cross-entropy with ignore_index=-100
  minibert            the same call on minibert.BertForPreTraining (same work)
  minibert fast       minibert.pretraining.pretraining_loss(model, batch): the vocabulary projection at the masked
                      positions only and, on padded batches, minibert.packed.packed_forward - the same loss
                      (checked), less work; this is what `minibert pretrain` runs

Cases: bert-tiny (2 layers, 128 wide; vocabulary 4,325 as in the chapter's run) at 32 x 128 and BERT-base
(12 layers, 768 wide, vocabulary 21,128 as bert-base-chinese) at 8 x 128, each without and with padding
(lengths uniform in [T/4, T], first sequence full).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch
import transformers

import minibert
from minibert.pretraining import IGNORE_INDEX, mask_tokens, pretraining_loss

CASES = {"tiny": ("bert-tiny", 4325, 32, 128), "base": ("bert-base-chinese", 21128, 8, 128)}


def build(preset: str, vocab: int, seed: int = 0):
    config = minibert.BertConfig.from_preset(preset, vocab_size=vocab, attn_implementation="sdpa")
    hf_config = transformers.BertConfig(**{k: v for k, v in config.to_dict().items() if k != "attn_implementation"},
                                        attn_implementation="sdpa")
    torch.manual_seed(seed)
    hf = transformers.BertForPreTraining(hf_config)
    mb = minibert.BertForPreTraining(config)
    mb.load_state_dict(hf.state_dict(), strict=True)
    return hf, mb


def batch_for(B: int, T: int, vocab: int, padded: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (B, T), generator=g)
    lengths = torch.full((B,), T)
    if padded:
        lengths = torch.randint(T // 4, T + 1, (B,), generator=g)
        lengths[0] = T
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    ids[:, 0], ids[torch.arange(B), lengths - 1] = 2, 3  # [CLS] ... [SEP]
    ids[mask == 0] = 0
    types = ((torch.arange(T)[None, :] >= lengths[:, None] // 2) & (mask == 1)).long()
    inputs, labels = mask_tokens(ids, mask_token_id=4, vocab_size=vocab, special_ids=[0, 2, 3, 4], generator=g)
    return {"input_ids": inputs, "attention_mask": mask, "token_type_ids": types, "labels": labels,
            "next_sentence_label": torch.randint(2, (B,), generator=g)}


def check_losses(hf, mb, batch) -> float:
    hf.eval(), mb.eval()
    with torch.no_grad():
        want = hf(**batch).loss
        have = mb(**batch).loss
        fast = sum(pretraining_loss(mb, batch, packed=True))
    hf.train(), mb.train()
    worst = max(abs(float(have - want)), abs(float(fast - want)))
    if not worst <= 1e-4:
        sys.exit(f"losses differ: transformers {float(want):.6f}, minibert {float(have):.6f}, fast {float(fast):.6f}")
    return float(want)


def step_fn(model, batch, fast: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-7)

    def step():
        loss = sum(pretraining_loss(model, batch, packed=True)) if fast else model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def run_case(name: str, padded: bool, repeats: int, warmup: int) -> None:
    preset, vocab, B, T = CASES[name]
    hf, mb = build(preset, vocab)
    batch = batch_for(B, T, vocab, padded)
    loss = check_losses(hf, mb, batch)
    variants = {"transformers": step_fn(hf, batch, False), "minibert": step_fn(mb, batch, False),
                "minibert fast": step_fn(mb, batch, True)}
    times = {k: [] for k in variants}
    order = list(variants)
    for r in range(warmup + repeats):
        for k in order[r % 3:] + order[:r % 3]:
            start = time.perf_counter()
            variants[k]()
            if r >= warmup:
                times[k].append(time.perf_counter() - start)
    tokens = int(batch["attention_mask"].sum())
    base = statistics.median(times["transformers"])
    masked = int((batch["labels"] != IGNORE_INDEX).sum())
    print(f"\n{name} ({preset}, V={vocab}) {B} x {T}, {'padded' if padded else 'no padding'}: {tokens} real tokens, "
          f"{masked} masked; loss {loss:.4f} equal in all three (|diff| <= 1e-4)")
    print(f"  {'variant':<14} {'median ms':>10} {'ratio':>7} {'paired':>7} {'tokens/s':>10}")
    for k, ts in times.items():
        med = statistics.median(ts)
        paired = statistics.median(a / b for a, b in zip(ts, times["transformers"]))
        print(f"  {k:<14} {med * 1e3:>10.1f} {med / base:>7.2f} {paired:>7.2f} {tokens / med:>10,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per case (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="discarded rounds per case (default: 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="which configs")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="accepted for make bench's shared BENCH_ARGS; the training benchmark runs on CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"training step, CPU float32: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}; median of {args.repeats} after {args.warmup} warm-up")
    for name in args.cases:
        for padded in (False, True):
            run_case(name, padded, args.repeats, args.warmup)


if __name__ == "__main__":
    main()
