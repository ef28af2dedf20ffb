"""Checks for chapter 11, pretraining.

Expected values come from independent computations: counts written out here for hand-made tensors,
`torch.nn.functional.cross_entropy` with `ignore_index`, and transformers' `get_linear_schedule_with_warmup`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import expect, not_done, passed


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_fate_shares(fn) -> None:
    not_done(fn, "11.1")
    M = 4
    # 10 chosen positions: 6 -> [MASK], 3 -> a different token, 1 kept; 6 unchosen positions (never changed)
    original = torch.tensor([[7, 8, 9, 10, 11, 12, 13, 14], [15, 16, 17, 18, 19, 20, 21, 22]])
    inputs = torch.tensor([[M, M, M, 30, 11, 12, 13, M], [M, 31, 32, 18, 19, M, 21, 22]])
    labels = torch.tensor([[7, 8, 9, 10, -100, -100, -100, 14], [15, 16, 17, 18, -100, 20, -100, -100]])
    have = fn(original, inputs, labels, M)
    expect(isinstance(have, (tuple, list)) and len(have) == 3 and all(_number(float(x)) for x in have), "11.1",
           f"expected three numbers (mask, random, kept), got {have!r}.", "return mask_share, random_share, kept_share.")
    have = tuple(float(x) for x in have)
    want = (0.6, 0.3, 0.1)
    if abs(sum(have) - 1) > 1e-6:
        expect(False, "11.1", f"the three shares add up to {sum(have):.3f}, not 1.",
               "divide each count by the number of chosen positions (labels != -100), not by all positions.")
    if abs(have[2] - 7 / 16) < 1e-6 or abs(have[0] - 6 / 16) < 1e-6:
        expect(False, "11.1", f"got {have}: positions that were not chosen were counted.",
               "look only at positions where labels != -100.")
    expect(all(abs(h - w) < 1e-6 for h, w in zip(have, want)), "11.1",
           f"got {tuple(round(h, 3) for h in have)}, expected {want} on a batch with 6 [MASK], 3 random and 1 kept "
           f"among 10 chosen positions.",
           "kept means inputs == original at a chosen position; random means neither [MASK] nor the original.")
    passed("11.1")


def check_masked_lm_loss(fn) -> None:
    not_done(fn, "11.2")
    g = torch.Generator().manual_seed(11)
    for B, T, V in ((2, 7, 11), (3, 5, 30)):
        logits = torch.randn(B, T, V, generator=g) * 3
        labels = torch.randint(V, (B, T), generator=g)
        labels[torch.rand(B, T, generator=g) < 0.6] = -100
        labels[0, 0] = 0  # label 0 is a real token id, not "ignored"
        want = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
        have = fn(logits.clone(), labels.clone())
        expect(isinstance(have, torch.Tensor) and have.numel() == 1, "11.2",
               f"expected a scalar tensor, got {type(have).__name__} {tuple(getattr(have, 'shape', ()))}.",
               "return the mean over the labelled positions: one number.")
        every = F.cross_entropy(logits.reshape(-1, V), labels.clamp(min=0).reshape(-1))
        if abs(float(have) - float(every)) < 1e-5:
            expect(False, "11.2", "the loss averages over every position: unlabelled ones were counted with label 0.",
                   "keep only the positions where labels != -100 before averaging.")
        keep = labels != -100
        total = F.cross_entropy(logits[keep], labels[keep], reduction="sum")
        if abs(float(have) - float(total)) < 1e-4:
            expect(False, "11.2", "the loss is a sum over the masked positions, not their mean.",
                   "divide by the number of labelled positions (or use .mean()).")
        expect(abs(float(have) - float(want)) < 1e-5, "11.2",
               f"got {float(have):.5f}, F.cross_entropy(..., ignore_index=-100) gives {float(want):.5f} "
               f"for (B, T, V) = {(B, T, V)}.",
               "the loss at a position is -log_softmax(logits)[label]; average it over labels != -100.")
    passed("11.2")


def check_learning_rate(fn) -> None:
    not_done(fn, "11.3")
    from transformers import get_linear_schedule_with_warmup

    for peak, warmup, total in ((1e-3, 10, 100), (5e-4, 3, 20), (2e-3, 0, 8)):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=peak)
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total)
        for step in range(total + 2):
            want = sched.get_last_lr()[0]
            have = fn(step, peak, warmup, total)
            expect(_number(have), "11.3", f"learning_rate({step}, ...) returned {have!r}, not a number.",
                   "return peak times a factor.")
            if abs(have - want) > 1e-12 * max(1.0, peak):
                if step < warmup:
                    hint = "during warm-up the rate is peak * step / warmup_steps: 0 at step 0, peak at warmup_steps."
                elif step > total:
                    hint = "after total_steps the rate stays 0 (never negative)."
                else:
                    hint = ("after warm-up it falls linearly from peak at warmup_steps to 0 at total_steps: "
                            "peak * (total_steps - step) / (total_steps - warmup_steps).")
                expect(False, "11.3", f"learning_rate({step}, {peak}, {warmup}, {total}) = {have!r}, "
                       f"transformers' linear schedule gives {want!r}.", hint)
            opt.step()
            sched.step()
    passed("11.3")
