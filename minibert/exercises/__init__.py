"""Checks for the chapters' exercises (hand-written, not generated).

Each check compares a learner's answer with an independent computation and, when it is wrong, raises
`ExerciseError` saying what is wrong and giving a hint. `from minibert.exercises import ch00` and so on.
"""

from __future__ import annotations


class ExerciseError(AssertionError):
    """A wrong answer to an exercise: the message says what is wrong and how to fix it."""


def expect(ok: bool, exercise: str, problem: str, hint: str) -> None:
    """Raise ExerciseError('Exercise N.M: problem. Hint: hint') unless ok."""
    if not ok:
        raise ExerciseError(f"Exercise {exercise}: {problem}\nHint: {hint}")


def not_done(value, exercise: str) -> None:
    """A friendly error when the answer is still missing (None or Ellipsis)."""
    if value is None or value is Ellipsis:
        raise ExerciseError(f"Exercise {exercise}: no answer yet (got {value!r}).\n"
                            f"Hint: fill in the exercise cell above and run it first.")


def passed(exercise: str) -> None:
    print(f"Exercise {exercise}: correct.")


def expect_shape(value, shape: tuple, exercise: str, what: str, hint: str) -> None:
    """Raise ExerciseError unless `value` (a tensor or array) has `shape`; say what it has instead."""
    have = tuple(getattr(value, "shape", ()) or ())
    expect(hasattr(value, "shape"), exercise, f"{what} should be a tensor, got {type(value).__name__}.", hint)
    expect(have == tuple(shape), exercise, f"{what} has shape {have}, expected {tuple(shape)}.", hint)


def expect_close(have, want, exercise: str, what: str, hint: str, atol: float = 1e-6) -> None:
    """Raise ExerciseError unless two tensors agree within `atol`; name the largest difference and where it is.

    `want` comes from an independent computation (torch.nn, torch.nn.functional, arithmetic), never from the
    solution itself.
    """
    import torch

    have_t, want_t = torch.as_tensor(have).detach(), torch.as_tensor(want).detach()
    expect_shape(have_t, tuple(want_t.shape), exercise, what, hint)
    diff = (have_t.to(torch.float64) - want_t.to(torch.float64)).abs()
    if diff.numel() == 0:
        return
    worst = diff.max().item()
    if not worst <= atol:  # also catches NaN
        where = tuple(int(i) for i in torch.unravel_index(torch.nan_to_num(diff, nan=float("inf")).argmax(), diff.shape))
        expect(False, exercise, f"{what} differs from the expected values by up to {worst:.3g} (tolerance {atol:g}), "
               f"largest at index {where}.", hint)
