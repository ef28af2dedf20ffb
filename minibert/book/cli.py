"""The `minibert` command (also `python -m minibert`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .project import BookError, load_book


def _cmd_sync(book, args) -> int:
    from .mirror import stray_temporaries, sync

    stray = stray_temporaries(book)
    written = sync(book, force=args.force)
    if stray:
        print(f"minibert sync: removed {', '.join(stray)}, left by an interrupted sync")
    print(f"minibert sync: wrote {', '.join(written)}" if written else "minibert sync: package is up to date")
    return 0


def _cmd_check(book, args) -> int:
    from .mirror import drifted, missing_widget_state

    problems = drifted(book)
    widgets = missing_widget_state(book)
    for message in widgets:
        print(f"minibert check: {message}", file=sys.stderr)
    if not problems:
        if widgets:
            print("minibert check: FAILED, stored widget state is missing (see above).", file=sys.stderr)
            return 1
        print(f"minibert check: the package matches the notebooks ({len(book.chapters)} chapters)")
        return 0
    for p in problems:
        print(f"minibert check: {p.path} is {p.reason}", file=sys.stderr)
        if p.diff and args.verbose:
            print(p.diff, file=sys.stderr)
    names = ", ".join(p.path for p in problems)
    print(f"minibert check: FAILED, drifted: {names}. Run `minibert sync` (a hand edit needs `--force`, "
          f"and is lost: move it into the notebook first).", file=sys.stderr)
    return 1


def _cmd_chapters(book, args) -> int:
    print(" ".join(c.notebook for c in book.chapters))
    return 0


def _edition(text: str) -> str:
    """--edition value: self-study or class."""
    from .render import check_edition

    try:
        return check_edition(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_book(book, args) -> int:
    from .render import build_book

    index = build_book(book, Path(args.out) if args.out else None, edition=args.edition)
    print(f"minibert book: wrote the {args.edition} edition, {index}")
    return 0


def _port(text: str) -> int:
    """--port value: an integer from 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535 (0: any free port), got {port}")
    return port


def _ip(text: str) -> str:
    from .app import check_host

    try:
        return check_host(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _cull_idle(text: str) -> int:
    from .app import MIN_CULL_IDLE, check_cull_idle

    try:
        return check_cull_idle(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, at least {MIN_CULL_IDLE}, got "
                                         f"{text!r}") from None


def _cmd_app(book, args) -> int:
    from .app import serve

    return serve(book, port=args.port, notebook=args.notebook, open_browser=args.open, host=args.ip,
                 cull_idle=args.cull_idle)


def _cmd_run(book, args) -> int:
    from .execute import execute_notebooks
    from .mirror import sync

    chosen = [c for c in book.chapters if not args.chapters or any(
        c.notebook.endswith(a) or c.stem.startswith(a) or Path(a).name == Path(c.notebook).name for a in args.chapters)]
    if args.chapters and not chosen:
        raise BookError(f"no chapter matches {args.chapters}; chapters: {[c.stem for c in book.chapters]}")
    sync(book)  # earlier chapters' code must be importable by later ones
    execute_notebooks(book, chosen)
    written = sync(book)
    if written:
        print(f"minibert run: re-synced {', '.join(written)}")
    return 0


def _select(book, names: list[str]):
    """Chapters matching numbers or notebook names (all when none are given)."""
    chosen = [c for c in book.chapters if not names or any(
        c.notebook.endswith(a) or c.stem.startswith(a) or Path(a).name == Path(c.notebook).name for a in names)]
    if names and not chosen:
        raise BookError(f"no chapter matches {names}; chapters: {[c.stem for c in book.chapters]}")
    return chosen


def _cmd_student(book, args) -> int:
    from .student import build_student

    written = build_student(book, Path(args.out))
    count = sum(1 for p in written if p.suffix == ".ipynb")
    print(f"minibert student: wrote {count} student notebooks, README.md, requirements.txt and the course package to {args.out}")
    return 0


def _cmd_grade(book, args) -> int:
    from .grade import CSV_NAME, grade

    jobs = grade(book, Path(args.submissions), Path(args.out), timeout=args.timeout, cell_timeout=args.cell_timeout,
                 jobs=args.jobs, progress=lambda line: print(f"minibert grade: {line}", flush=True))
    got, top = sum(r.points for j in jobs for r in j.rows), sum(r.max for j in jobs for r in j.rows)
    students = len({j.student for j in jobs})
    print(f"minibert grade: {students} students, {len(jobs)} notebooks, {got:g}/{top:g} points; wrote "
          f"{Path(args.out) / CSV_NAME} and {Path(args.out) / 'feedback'}/<student>/<notebook>.html")
    held = [j for j in jobs if j.review]
    if held:
        print(f"minibert grade: {len(held)} notebook(s) held for review with 0 points (their code could fake a "
              f"check; read them, see {Path(args.out) / 'notes.txt'}): "
              + ", ".join(f"{j.student}/{j.notebook}" for j in held), flush=True)
    return 0


def _cmd_slides(book, args) -> int:
    from .slides import build_slides

    decks = build_slides(book, _select(book, args.chapters), Path(args.out) if args.out else None)
    for deck in decks:
        print(f"minibert slides: wrote {deck}")
    return 0


def _params_head(text: str):
    """--head value: none, mlm, pretraining or classification:N."""
    if text in ("none", "mlm", "pretraining"):
        return None if text == "none" else text
    kind, _, n = text.partition(":")
    if kind == "classification" and n.isdigit() and int(n) > 0:
        return ("classification", int(n))
    raise argparse.ArgumentTypeError(f"expected none, mlm, pretraining or classification:N (N >= 1), got {text!r}")


def _cmd_params(book, args) -> int:
    # Analytic: imports minibert.config and minibert.params only (no torch), so it answers at once.
    import json

    from minibert.config import BertConfig
    from minibert.params import count_parameters

    source = args.config
    path = Path(source)
    try:
        if path.is_dir():
            path = path / "config.json"  # a checkpoint folder
        if path.suffix == ".json" or path.exists() or "/" in source or "\\" in source:
            from minibert.safeio import read_json_file

            try:
                # Bounded first (a regular file under 1 MB, nesting limited): /dev/zero, a FIFO, a folder or
                # a huge file is refused here, before BertConfig reads it.
                read_json_file(path, what="JSON config")
                config = BertConfig.from_json_file(path)
            except FileNotFoundError:
                raise ValueError(f"{path}: not found; expected a config.json or a preset name") from None
            except OSError as exc:
                raise ValueError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
        else:
            config = BertConfig.from_preset(source)
        count = count_parameters(config, pooler=False if args.no_pooler else None, head=args.head)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise BookError(str(exc)) from None
    if args.json:
        head = args.head if not isinstance(args.head, tuple) else f"classification:{args.head[1]}"
        print(json.dumps({"source": source, "head": head or "none", "pooler": "pooler.dense" in count.breakdown,
                          "total": count.total, "non_embedding": count.non_embedding, "per_layer": count.per_layer,
                          "breakdown": count.breakdown,
                          "bytes": {dt: count.bytes(dt) for dt in ("float32", "float16", "int8")}}, indent=2))
        return 0
    head = args.head
    model = {None: "BertModel", "mlm": "BertForMaskedLM (decoder tied to the word embeddings)",
             "pretraining": "BertForPreTraining (MLM + next sentence)"}.get(
        head, f"BertForSequenceClassification, {head[1] if isinstance(head, tuple) else ''} labels")
    pooler = "with" if "pooler.dense" in count.breakdown else "without"
    width = max(len(k) for k in count.breakdown) + 2
    lines = [f"{source}: {model}, {pooler} pooler",
             f"  V={config.vocab_size} C={config.hidden_size} L={config.num_hidden_layers} "
             f"H={config.num_attention_heads} F={config.intermediate_size} P={config.max_position_embeddings} "
             f"S={config.type_vocab_size}", "",
             f"{'component':{width}} {'parameters':>15} {'share':>7}"]
    lines += [f"{k:{width}} {v:>15,} {v / count.total:>7.1%}" for k, v in count.breakdown.items()]
    lines += [f"{'total':{width}} {count.total:>15,}", f"{'non-embedding':{width}} {count.non_embedding:>15,}",
              f"{'one encoder layer':{width}} {count.per_layer:>15,}", ""]

    def size(n: int) -> str:
        return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"

    lines.append("weights: " + ", ".join(f"{dt} {size(count.bytes(dt))}" for dt in ("float32", "float16", "int8"))
                 + f"; training with Adam (float32 weights, gradients, 2 moments): {size(4 * count.bytes('float32'))}")
    print("\n".join(lines))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `minibert app: error: ... (see minibert app --help)`, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _cmd_pretrain(book, args) -> int:
    from .pretrain import main  # imports torch only now

    return main(args)


def _cmd_finetune(book, args) -> int:
    from .finetune import main  # imports torch only now

    return main(args)


def _cmd_finetune_experiments(book, args) -> int:
    from .finetune import experiments

    return experiments(args)


def _add_finetune(sub) -> None:
    from .finetune import add_arguments, experiments_arguments  # argparse only: no torch at start-up

    p = sub.add_parser("finetune", help="fine-tune a sentence or token classifier (chapter 12)")
    add_arguments(p)
    p.set_defaults(func=_cmd_finetune, needs_book=False)
    p = sub.add_parser("finetune-experiments", help="chapter 12's experiment set: pretrained against random init")
    experiments_arguments(p)
    p.set_defaults(func=_cmd_finetune_experiments, needs_book=False)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minibert", description="Tools for the minibert course.")
    parser.add_argument("--root", help="the course repository (default: the folder holding book.toml)")
    # Subcommands: one add_parser block each; set_defaults(func=...) names the function that runs it (and
    # needs_book=False when it works outside the course repository).
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("sync", help="regenerate the package from the notebooks' #| export cells")
    p.add_argument("--force", action="store_true", help="overwrite generated modules even if edited by hand")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("check", help="exit 1 and name every module that differs from the notebooks")
    p.add_argument("-v", "--verbose", action="store_true", help="show the start of each difference")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("chapters", help="print the chapter notebooks in book order")
    p.set_defaults(func=_cmd_chapters)

    p = sub.add_parser("book", help="render the course to HTML in _build/book/")
    p.add_argument("--edition", type=_edition, default="self-study", metavar="self-study|class",
                   help="self-study (default): each solution folded under its exercise; class: no solutions at all")
    p.add_argument("--out", help="output folder (default: _build/book, or _build/book-class for --edition class)")
    p.set_defaults(func=_cmd_book)

    p = sub.add_parser("app", help="serve chapter 07's parameter calculator with Voila (localhost unless --ip)")
    p.add_argument("--ip", type=_ip, default="127.0.0.1", metavar="ADDRESS",
                   help="address to listen on (default: 127.0.0.1, this computer only); an address of a classroom "
                        "network, or 0.0.0.0 for every network, lets anyone there open the page (it warns)")
    p.add_argument("--port", type=_port, default=8866, help="port (default: 8866; 0: any free port)")
    p.add_argument("--cull-idle", type=_cull_idle, default=600, metavar="SECONDS",
                   help="shut down a kernel that no page is connected to after this many idle seconds "
                        "(default: 600; a closed tab frees its kernel at once)")
    p.add_argument("--notebook", help="the notebook to serve (default: app/calculator.ipynb)")
    p.add_argument("--open", action="store_true", help="also open the page in the default web browser")
    p.set_defaults(func=_cmd_app)

    p = sub.add_parser("run", help="execute notebooks top to bottom in place, saving outputs, then sync")
    p.add_argument("chapters", nargs="*", help="chapter numbers or notebook names (default: all)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("student", help="write student notebooks (solutions replaced by NotImplementedError) and a README")
    p.add_argument("--out", required=True, help="output folder, e.g. _build/student (never notebooks/)")
    p.set_defaults(func=_cmd_student)

    p = sub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<notebook>.ipynb with nbgrader into a CSV "
                                     "gradebook and per-student feedback HTML")
    p.add_argument("submissions", metavar="SUBMISSIONS", help="folder of student folders (only read)")
    p.add_argument("--out", required=True, help="output folder, e.g. _build/grades (new, empty or an earlier one)")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds one notebook may run in all before it is stopped and scores 0 (default: 600)")
    p.add_argument("--cell-timeout", type=float, default=120,
                   help="seconds one cell may run before it is interrupted and fails (default: 120)")
    p.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time (default: 1)")
    p.set_defaults(func=_cmd_grade)

    p = sub.add_parser("slides", help="render chapters as offline reveal.js slide decks in _build/slides/")
    p.add_argument("chapters", nargs="*", help="chapter numbers or notebook names (default: all)")
    p.add_argument("--out", help="output folder (default: _build/slides)")
    p.set_defaults(func=_cmd_slides)
    p = sub.add_parser("params", help="exact parameter count of a preset or a config.json (chapter 07)")
    p.add_argument("config", metavar="NAME_OR_CONFIG_JSON", help="a preset (bert-base-uncased, ...) or a config.json")
    p.add_argument("--json", action="store_true", help="print a JSON object with total and breakdown")
    p.add_argument("--no-pooler", action="store_true", help="leave out the pooler")
    p.add_argument("--head", type=_params_head, default=None, metavar="mlm|pretraining|classification:N",
                   help="count a head too")
    p.set_defaults(func=_cmd_params, needs_book=False)

    p = sub.add_parser("pretrain", help="masked-LM + next-sentence pretraining (chapter 11); works under torchrun")
    from .pretrain import add_arguments  # argparse only: no torch at start-up

    add_arguments(p)
    p.set_defaults(func=_cmd_pretrain, needs_book=False)
    _add_finetune(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        book = load_book(Path(args.root) if args.root else None) if getattr(args, "needs_book", True) else None
        return args.func(book, args)
    except (BookError, ValueError) as exc:
        print(f"minibert {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"minibert {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
