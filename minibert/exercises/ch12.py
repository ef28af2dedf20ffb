"""Checks for chapter 12, fine-tuning.

Expected values are written out by hand for each case below (and, for 12.2, also compared with seqeval's own
reading of the tags in strict IOB2 mode, computed before the answer runs, then hidden while it runs).
"""

from __future__ import annotations

from . import ExerciseError, expect, not_done, passed
from .ch03 import forbidding

# (text, spans [start, end) with a type) -> BIO tags, written by hand
_SPAN_CASES = (
    ("江泽民访问北京", [(0, 3, "PER"), (5, 7, "LOC")], ["B-PER", "I-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]),
    ("北京上海", [(0, 2, "LOC"), (2, 4, "LOC")], ["B-LOC", "I-LOC", "B-LOC", "I-LOC"]),  # two entities side by side
    ("在京", [(1, 2, "LOC")], ["O", "B-LOC"]),  # a one-character entity at the end
    ("今天", [], ["O", "O"]),
    ("北京到北京", [(3, 5, "LOC")], ["O", "O", "O", "B-LOC", "I-LOC"]),  # the span, not the first place its text occurs
)


def _tags(text: str, spans: list) -> list:
    """The tags of spans, clipped to the text (the shape of a wrong answer, for the diagnosis only)."""
    tags = ["O"] * len(text)
    for start, end, kind in spans:
        for i in range(max(start, 0), min(end, len(text))):
            tags[i] = ("B-" if i == start else "I-") + kind
    return tags


def check_bio_from_spans(fn) -> None:
    not_done(fn, "12.1")
    for text, spans, want in _SPAN_CASES:
        given = list(spans)
        have = fn(text, given)
        expect(given == spans, "12.1", f"bio_from_spans changed the list of spans it was given: {spans} became {given}.",
               "read the spans without changing them (no pop, sort or append on the list passed in).")
        expect(isinstance(have, list) and len(have) == len(text), "12.1",
               f"for {text!r} expected a list of {len(text)} tags (one per character), got {have!r}.",
               "start from ['O'] * len(text).")
        if have != want:
            if any(have == _tags(text, [(a + d, b + d, k) for a, b, k in spans]) for d in (-1, 1)):
                problem = "every entity sits one character off: start is the 0-based index of its first character"
            elif any(t.startswith("I-") and w.startswith("B-") for t, w in zip(have, want)):
                problem = "an entity's first character must be tagged B-, not I-"
            elif any(t.startswith("B-") and w.startswith("I-") for t, w in zip(have, want)):
                problem = "only an entity's first character is B-; the others are I-"
            elif sum(t != "O" for t in have) != sum(w != "O" for w in want):
                problem = "the entities cover the wrong number of characters (end is exclusive: [start, end))"
            else:
                problem = "the tags differ"
            expect(False, "12.1", f"for {text!r} with spans {spans} got {have}, expected {want}: {problem}.",
                   "for each span: B- on its first character, I- on the others up to end (exclusive); O everywhere else.")
    passed("12.1")


# tags -> entities (type, start, end exclusive), strict IOB2, written by hand
_TAG_CASES = (
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
    (["B-LOC", "B-LOC", "I-LOC"], [("LOC", 0, 1), ("LOC", 1, 3)]),  # B after B starts a new entity
    (["O", "I-PER", "I-PER", "O"], []),  # I- without a B-: no entity in strict IOB2
    (["B-PER", "I-LOC", "O"], [("PER", 0, 1)]),  # an I- of another type ends the entity and starts none
    (["B-ORG", "I-ORG", "I-ORG"], [("ORG", 0, 3)]),  # an entity that runs to the end
    (["I-LOC", "I-LOC", "O"], []),  # a stray I- at the very start opens nothing either
    (["B-PER", "O", "I-PER"], [("PER", 0, 1)]),  # an O closes the name: a later I-PER does not reopen it
)


def _no_seqeval(*args, **kwargs):
    raise ExerciseError("Exercise 12.2: the answer called seqeval's own entity reader, which this exercise asks you "
                        "to write yourself.\nHint: walk the tags once: B-X opens an entity of type X, I-X extends an "
                        "open X, anything else closes it.")


def check_entity_spans(fn) -> None:
    not_done(fn, "12.2")
    from seqeval.scheme import IOB2, Entities  # the library's strict reading, computed before the answer runs

    import seqeval.metrics.sequence_labeling as labeling
    import seqeval.scheme as scheme

    library = [(scheme, "Entities"), (scheme, "Tokens"), (labeling, "get_entities")]
    for tags, want in _TAG_CASES:
        assert [(e.tag, e.start, e.end) for e in Entities([list(tags)], IOB2).entities[0]] == want
        given = list(tags)
        with forbidding(fn, library, _no_seqeval):
            have = fn(given)
        expect(given == list(tags), "12.2", f"entity_spans changed the list of tags it was given: {list(tags)} became "
               f"{given} (a second call on the same list would see other tags).",
               "walk over tags + ['O'] (a new list) instead of appending to tags.")
        expect(isinstance(have, list), "12.2", f"expected a list of (type, start, end) tuples, got {have!r}.",
               "collect the entities in a list.")
        have = [tuple(e) for e in have]
        if have == want:
            continue
        if [(t, s, e - 1) for t, s, e in want] == have:
            problem = "end must be exclusive (one past the last character), as Python slices"
        elif sorted(sorted(map(str, e)) for e in have) == sorted(sorted(map(str, e)) for e in want):
            problem = "each entity is (type, start, end), in that order"
        elif len(have) > len(want) and any(len(e) == 3 and isinstance(e[1], int) and 0 <= e[1] < len(tags)
                                           and tags[e[1]].startswith("I-") for e in have):
            problem = "an I- tag that does not continue a B-/I- of its type starts no entity in strict IOB2"
        elif want and have == want[:-1] and want[-1][2] == len(tags):
            problem = "an entity that runs to the last tag was never closed: close what is still open after the walk"
        elif any(len(e) == 3 and isinstance(e[1], int) and isinstance(e[2], int) and any(
                t.startswith("I-") and t[2:] != e[0] for t in tags[e[1] + 1:e[2]]) for e in have):
            problem = "an I- tag of another type does not continue an entity: I-X extends only an open X"
        elif len(have) < len(want):
            problem = "a B- tag always starts a new entity, even right after another entity of its type"
        else:
            problem = "the entities differ"
        expect(False, "12.2", f"for {tags} got {have}, expected {want}: {problem}.",
               "walk the tags: B-X opens an entity of type X, I-X extends an open X, anything else closes it.")
    passed("12.2")


# (logits (B, T, L), labels (B, T) with -100, the expected share), written by hand
_ACCURACY_CASES = (
    # Tells the mask mistakes apart (first, so that each gets its own message). predictions [[0, 1, 3, 0],
    # [2, 2, 0, 1]]; labelled: ok, wrong, ok, - | ok, -, wrong, - -> 3 of 5 = 0.6. Unmasked: 3 of 8; only labels
    # > 0 kept: 2 of 3; -100 read as 0: 4 of 8; the mean of the texts' accuracies: (2/3 + 1/2) / 2; the share wrong: 0.4.
    ([[[3.0, 0.5, 0.0, 0.2], [0.3, 3.0, 0.1, 0.0], [0.0, 0.4, 0.0, 3.0], [3.0, 0.2, 0.6, 0.0]],
      [[0.1, 0.0, 3.0, 0.5], [0.7, 0.0, 3.0, 0.2], [3.0, 0.3, 0.0, 0.9], [0.0, 3.0, 0.4, 0.0]]],
     [[0, 0, 3, -100], [2, -100, 1, -100]], 3 / 5),
    # T = L = 4, so the wrong axis runs too. predictions (argmax over the labels) [[0, 1, 3, 1]]; labelled: ok, -,
    # ok, wrong -> 2 of 3. Over the positions instead (argmax(1), or a softmax over dim 1): every labelled token
    # "right" (3 of 3); argmin: 0 of 3
    ([[[3.0, 2.0, 0.0, 2.0], [0.0, 2.0, 1.0, 1.0], [0.0, 2.0, 1.0, 3.0], [0.0, 3.0, 2.0, 2.0]]],
     [[0, -100, 3, 2]], 2 / 3),
    # predictions [[0, 1, 2, 0], [1, 2, 0, 1]]; labelled: ok, wrong, wrong | ok -> 2 of 4
    ([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]],
      [[0.0, 1.0, 0.0], [0.0, 0.0, 4.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]],
     [[-100, 1, 0, 1], [1, -100, -100, -100]], 2 / 4),
    # predictions [[1, 1, 0, 0]]; labelled: ok, -, ok, wrong -> 2 of 3 (1 - share, argmin and an unmasked
    # comparison with -100 read as label 0 all give something else here)
    ([[[0.0, 1.0], [0.0, 3.0], [2.0, 0.0], [1.0, 0.0]]], [[1, -100, 0, 1]], 2 / 3),
)


_TOKEN_ACCURACY_HINT = ("for each token take the label with the highest score (over the last dimension, the labels); "
                        "count the right ones among the tokens whose label is not -100, over all texts, and divide by "
                        "how many such tokens there are.")


def check_token_accuracy(fn) -> None:
    """Cases written by hand: logits (B, T, L), labels (B, T) with -100, and the expected share."""
    import torch

    not_done(fn, "12.3")
    for logits, labels, want in _ACCURACY_CASES:
        logits, labels = torch.tensor(logits), torch.tensor(labels)
        given_logits, given_labels = logits.clone(), labels.clone()
        have = fn(given_logits, given_labels)
        expect(torch.equal(given_logits, logits) and torch.equal(given_labels, labels), "12.3",
               "token_accuracy changed the logits or labels it was given (in place): the caller's tensors are no "
               "longer what they were.", "compute a mask (labels != -100) and compare; do not assign into the inputs.")
        have = float(have) if isinstance(have, (int, float, torch.Tensor)) and not isinstance(have, bool) else have
        expect(isinstance(have, float), "12.3", f"expected a number, got {have!r}.", "return a float (or a 0-d tensor).")
        keep = labels != -100
        labelled = int(keep.sum())

        def share(predicted, kept):  # right predictions among the kept positions
            return float(((predicted == labels) & kept).sum()) / max(1, int(kept.sum()))

        predicted = logits.argmax(-1)
        per_text = [share(predicted[b], keep[b]) for b in range(labels.shape[0])]
        square = logits.shape[1] == logits.shape[2]  # only then does the wrong axis run at all
        diagnoses = [  # (what the typical wrong answer returns here, what is wrong, how to fix it)
            (want * labelled / labels.numel(), "positions labelled -100 were counted",
             "keep only the positions where labels != -100, then compare."),
            (sum(per_text) / len(per_text) if labels.shape[0] > 1 else None,
             "the mean of per-text accuracies weighs a short text like a long one",
             "count right tokens over all texts, divide by all labelled tokens."),
            (share(predicted, labels > 0) if bool((labels > 0).any()) else None,
             "positions labelled 0 were left out too, but 0 is a label like any other; only -100 is left out",
             "leave out only the positions labelled -100, not those labelled 0."),
            (share(logits.argmax(1), keep) if square else None,
             "the highest score was taken over the positions (dim 1), not over the labels",
             "take the highest score over the last dimension (the labels): one label per token."),
            (share(logits.softmax(1).argmax(-1), keep) if square else None,
             "the softmax ran over the positions (dim 1), not over the labels",
             "no softmax is needed (it keeps the order of the scores); take the highest score over the last dimension."),
            (share(predicted, torch.ones_like(keep)) + float(((predicted == 0) & ~keep).sum()) / labels.numel()
             if bool((~keep).any()) else None,
             "the positions labelled -100 were scored as if their label were 0",
             "leave the -100 positions out instead of giving them a label."),
            (1 - want if abs(want - 0.5) > 1e-6 else None, "that is the share of WRONG labelled tokens",
             "count the tokens whose predicted label equals the true one."),
        ]
        found = [(problem, hint) for value, problem, hint in diagnoses
                 if value is not None and abs(have - value) < 1e-6 and abs(value - want) > 1e-6]
        if found:
            expect(False, "12.3", f"got {have:.3f}, expected {want:.3f}: " + "; or ".join(p for p, _ in found) + ".",
                   " / ".join(dict.fromkeys(h for _, h in found)))
        expect(abs(have - want) < 1e-6, "12.3", f"got {have:.3f}, expected {want:.3f} for labels {labels.tolist()}.",
               _TOKEN_ACCURACY_HINT)
    passed("12.3")
