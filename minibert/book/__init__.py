"""Hand-written tooling for the course: book.toml, notebook ↔ package mirroring, the book.

Nothing here imports torch, so the `minibert` command works even while a chapter is broken.
"""
