"""Checks for chapter 11, pretraining.

Expected values come from independent computations: counts written out here for hand-made tensors,
`torch.nn.functional.cross_entropy` with `ignore_index` (computed before the answer runs, then forbidden
while it runs), and transformers' `get_cosine_schedule_with_warmup`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import ExerciseError, expect, not_done, passed
from .ch03 import forbidding


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# (original, inputs, labels, mask id, (mask, random, kept)): counts written out by hand
_FATE_CASES = (
    # 10 chosen positions: 6 -> [MASK] (id 4), 3 -> a different token, 1 kept; 6 unchosen positions
    (torch.tensor([[7, 8, 9, 10, 11, 12, 13, 14], [15, 16, 17, 18, 19, 20, 21, 22]]),
     torch.tensor([[4, 4, 4, 30, 11, 12, 13, 4], [4, 31, 32, 18, 19, 4, 21, 22]]),
     torch.tensor([[7, 8, 9, 10, -100, -100, -100, 14], [15, 16, 17, 18, -100, 20, -100, -100]]),
     4, (0.6, 0.3, 0.1)),
    # 5 chosen positions: 2 -> [MASK] (id 9 here), 2 -> a different token, 1 kept; id 4 is an ordinary token
    (torch.tensor([[4, 5, 6, 7, 8, 10, 11]]),
     torch.tensor([[4, 9, 9, 40, 41, 10, 4]]),
     torch.tensor([[-100, 5, 6, 7, 8, 10, -100]]),
     9, (0.4, 0.4, 0.2)),
)


def check_fate_shares(fn) -> None:
    not_done(fn, "11.1")
    for original, inputs, labels, M, want in _FATE_CASES:
        have = fn(original.clone(), inputs.clone(), labels.clone(), M)
        expect(isinstance(have, (tuple, list)) and len(have) == 3 and all(_number(float(x)) for x in have), "11.1",
               f"expected three numbers (mask, random, kept), got {have!r}.", "return mask_share, random_share, kept_share.")
        have = tuple(float(x) for x in have)
        if abs(sum(have) - 1) > 1e-6:
            expect(False, "11.1", f"the three shares add up to {sum(have):.3f}, not 1.",
                   "divide each count by the number of chosen positions (labels != -100), not by all positions.")
        chosen = labels != -100
        every = (float((inputs[chosen] == M).sum()) / labels.numel(), float((inputs == original).float().mean()))
        if abs(have[0] - every[0]) < 1e-6 or abs(have[2] - every[1]) < 1e-6:
            expect(False, "11.1", f"got {have}: positions that were not chosen were counted.",
                   "look only at positions where labels != -100.")
        expect(all(abs(h - w) < 1e-6 for h, w in zip(have, want)), "11.1",
               f"got {tuple(round(h, 3) for h in have)}, expected {want} on a batch with mask id {M} and "
               f"{int(chosen.sum())} chosen positions.",
               "use the mask_token_id argument (not a fixed id) and count on this batch (nothing hard-coded); kept "
               "means inputs == original at a chosen position, random means neither the mask id nor the original.")
    passed("11.1")


def _no_library_loss(*args, **kwargs):
    raise ExerciseError("Exercise 11.2: the answer called a ready-made loss (F.cross_entropy, F.nll_loss, "
                        "nn.CrossEntropyLoss or nn.NLLLoss), which this exercise asks you to write yourself.\n"
                        "Hint: torch.log_softmax(logits, dim=-1), then pick each labelled position's log-probability "
                        "of its label (indexing or .gather), negate and average.")


def check_masked_lm_loss(fn) -> None:
    not_done(fn, "11.2")
    g = torch.Generator().manual_seed(11)
    library_losses = [(F, "cross_entropy"), (F, "nll_loss"), (torch.nn, "CrossEntropyLoss"), (torch.nn, "NLLLoss")]
    for B, T, V in ((2, 7, 11), (3, 5, 30)):
        logits = torch.randn(B, T, V, generator=g) * 3
        labels = torch.randint(V, (B, T), generator=g)
        labels[torch.rand(B, T, generator=g) < 0.6] = -100
        labels[0, 0] = 0  # label 0 is a real token id, not "ignored"
        want = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
        every = F.cross_entropy(logits.reshape(-1, V), labels.clamp(min=0).reshape(-1))
        keep = labels != -100
        total = F.cross_entropy(logits[keep], labels[keep], reduction="sum")
        with forbidding(fn, library_losses, _no_library_loss):
            have = fn(logits.clone(), labels.clone())
        expect(isinstance(have, torch.Tensor) and have.numel() == 1, "11.2",
               f"expected a scalar tensor, got {type(have).__name__} {tuple(getattr(have, 'shape', ()))}.",
               "return the mean over the labelled positions: one number.")
        if abs(float(have) - float(every)) < 1e-5:
            expect(False, "11.2", "the loss averages over every position: unlabelled ones were counted with label 0.",
                   "keep only the positions where labels != -100 before averaging.")
        if abs(float(have) - float(total)) < 1e-4:
            expect(False, "11.2", "the loss is a sum over the masked positions, not their mean.",
                   "divide by the number of labelled positions (or use .mean()).")
        expect(abs(float(have) - float(want)) < 1e-5, "11.2",
               f"got {float(have):.5f}, F.cross_entropy(..., ignore_index=-100) gives {float(want):.5f} "
               f"for (B, T, V) = {(B, T, V)}.",
               "the loss at a position is -log_softmax(logits)[label]; average it over labels != -100.")
    passed("11.2")


def _no_library_schedule(*args, **kwargs):
    raise ExerciseError("Exercise 11.3: the answer called a ready-made schedule (transformers' "
                        "get_cosine_schedule_with_warmup or another of its cosine schedules, torch's CosineAnnealingLR or "
                        "linear_warmup_decay).\n"
                        "Hint: write the two pieces yourself with math.cos: a linear rise, then half a cosine.")


def check_cosine_learning_rate(fn) -> None:
    not_done(fn, "11.3")
    import transformers
    import transformers.optimization as optimization
    from transformers import get_cosine_schedule_with_warmup

    # every cosine schedule transformers has (its private per-step functions too: a hard-restarts or min-lr
    # variant with the default arguments is this schedule) and torch's
    cosine = [name for name in dir(optimization) if "cosine" in name.lower() and callable(getattr(optimization, name))]
    schedules = [(optimization, name) for name in cosine]
    schedules += [(transformers, name) for name in cosine if not name.startswith("_") and hasattr(transformers, name)]
    schedules += [(torch.optim.lr_scheduler, name) for name in ("CosineAnnealingLR", "CosineAnnealingWarmRestarts",
                                                                 "LambdaLR")]
    for peak, warmup, total in ((1e-3, 10, 100), (5e-4, 3, 20), (2e-3, 0, 8)):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=peak)
        sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total)
        wants = []
        for _ in range(total + 1):  # steps 0 .. total
            wants.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        for step, want in enumerate(wants):
            with forbidding(fn, schedules, _no_library_schedule, named=("linear_warmup_decay",)):
                have = fn(step, peak, warmup, total)
            expect(_number(have), "11.3", f"cosine_learning_rate({step}, ...) returned {have!r}, not a number.",
                   "return peak times a factor.")
            if abs(have - want) > 1e-12 * max(1.0, peak):
                linear = peak * (step / max(1, warmup) if step < warmup else (total - step) / max(1, total - warmup))
                if step < warmup:
                    hint = "during warm-up the rate is peak * step / warmup_steps: 0 at step 0, peak at warmup_steps."
                elif abs(have - linear) < 1e-12 * max(1.0, peak):
                    hint = "that is the linear decay; after warm-up the rate follows half a cosine, not a straight line."
                else:
                    hint = ("after warm-up, with progress = (step - warmup_steps) / (total_steps - warmup_steps) "
                            "going from 0 to 1, the rate is peak * 0.5 * (1 + cos(pi * progress)): peak, then 0.")
                expect(False, "11.3", f"cosine_learning_rate({step}, {peak}, {warmup}, {total}) = {have!r}, "
                       f"transformers' cosine schedule with warm-up gives {want!r}.", hint)
    passed("11.3")
