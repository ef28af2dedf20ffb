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
