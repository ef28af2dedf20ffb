# minibert: every target sets up .venv/ itself (only when missing or when dependencies changed).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV_PY := .venv/bin/python
# Tests run on up to 4 processes (pytest-xdist); --dist loadfile keeps each notebook's cells in one kernel.
# PYTEST_WORKERS= (empty) runs everything in one process. -rs names every skipped test and why (what to install).
PYTEST_WORKERS ?= --numprocesses=auto --maxprocesses=4 --dist loadfile
# The notebooks nbval runs, in book.toml order.
NOTEBOOKS = $(shell $(VENV_PY) -m minibert chapters)

.PHONY: setup test lab book sync check clean

# Creates or refreshes .venv/ (pip -c constraints.txt: the pinned versions the stored outputs were made with)
# and node_modules/ (npm ci), only when something changed; see scripts/setup_env.py.
setup:
	@$(PYTHON) scripts/setup_env.py

test: setup
	@$(VENV_PY) -m minibert check
	$(VENV_PY) -m pytest tests $(NOTEBOOKS) --nbval --nbval-current-env -rs \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(PYTEST_WORKERS) $(PYTEST_ARGS)

lab: setup
	$(VENV_PY) -m jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# The self-study edition (each solution folded under its exercise) in _build/book/; book-class: the class
# edition (no solution and no solution output anywhere) in _build/book-class/.
book: setup
	$(VENV_PY) -m minibert book

.PHONY: book-class
book-class: setup
	$(VENV_PY) -m minibert book --edition class --out _build/book-class

# The parameter calculator (chapter 07) as a web page for the classroom projector; prints its address.
# APP_ARGS="--ip 0.0.0.0" serves it to the classroom network too (it warns: anyone there can open it).
.PHONY: app
app: setup
	$(VENV_PY) -m minibert app $(APP_ARGS)

sync: setup
	$(VENV_PY) -m minibert sync

check: setup
	$(VENV_PY) -m minibert check

clean:
	rm -rf _build .pytest_cache

# The classroom kit: the student bundle (notebooks with the solutions taken out by nbgrader, the course package,
# its checkpoints, requirements.txt and a README) and offline slide decks.
.PHONY: student slides classroom
student: setup
	$(VENV_PY) -m minibert student --out _build/student

slides: setup
	$(VENV_PY) -m minibert slides --out _build/slides

# Autograde handed-in notebooks (SUBMISSIONS/<student>/<notebook>.ipynb) with nbgrader, offline, into
# _build/grades/grades.csv and _build/grades/feedback/<student>/<notebook>.html (docs/teaching.md).
.PHONY: grade
SUBMISSIONS ?= submissions
grade: setup
	$(VENV_PY) -m minibert grade $(SUBMISSIONS) --out _build/grades $(GRADE_ARGS)

# One folder for a class: the student notebooks with their README in student/, the decks in slides/. (Each
# builder owns its own folder: it writes only into a folder it created, so the two do not share one.)
classroom: setup
	$(VENV_PY) -m minibert student --out _build/classroom/student
	$(VENV_PY) -m minibert slides --out _build/classroom/slides

# Forward-pass speed of minibert against transformers (CPU; the GPU cases run when CUDA is present), then
# tokenizer speed, minibert against tokenizers.
.PHONY: bench
bench: setup
	$(VENV_PY) benchmarks/forward.py $(BENCH_ARGS)
	$(VENV_PY) benchmarks/tokenizer.py $(TOKENIZER_BENCH_ARGS)
	$(VENV_PY) benchmarks/train.py $(BENCH_ARGS)

# Pretraining (chapter 11): the run the chapter loads (checkpoints/pretrain-zh-tiny/ holds its model files).
# One thread: the shipped run used it (same sums, same weights), and on the shared 2-core machine it spent
# 0.32 CPU-seconds a step against 0.8 with two threads (which wait for each other when the cores are busy).
.PHONY: pretrain
PRETRAIN_THREADS ?= 1
pretrain: setup
	$(VENV_PY) -m minibert pretrain --config bert-tiny --corpus zh --steps 1500 --batch-size 32 --seq-len 128 --lr 1e-3 --seed 0 --save-every 250 --eval-examples 1024 --threads $(PRETRAIN_THREADS) --out _build/pretrain-zh-tiny $(PRETRAIN_ARGS)

# Chapter 12's other pretraining runs: chapter 11's recipe (bert-tiny, the zh corpus, 32 x 128 tokens a step,
# seed 0) for longer and at a peak learning rate of 2e-3; checkpoints/pretrain-zh-tiny-<name>/ holds the model
# files of each. 20,000 steps is the start chapter 12 fine-tunes at every budget; 8,000 steps and 1,500 steps at
# 2e-3 tell the length of pretraining from its rate. One thread: about 0.2 s a step on an idle core
# (the shipped runs' times are in their trainer_state.json).
PRETRAIN_RECIPE = $(VENV_PY) -m minibert pretrain --config bert-tiny --corpus zh --batch-size 32 --seq-len 128 --seed 0 --eval-examples 1024 --threads $(PRETRAIN_THREADS)
.PHONY: pretrain-20000 pretrain-8000 pretrain-1500-lr2e-3
pretrain-20000: setup
	$(PRETRAIN_RECIPE) --steps 20000 --lr 2e-3 --save-every 1000 --out _build/pretrain-zh-tiny-20000 $(PRETRAIN_ARGS)
pretrain-8000: setup
	$(PRETRAIN_RECIPE) --steps 8000 --lr 2e-3 --save-every 1000 --out _build/pretrain-zh-tiny-8000 $(PRETRAIN_ARGS)
pretrain-1500-lr2e-3: setup
	$(PRETRAIN_RECIPE) --steps 1500 --lr 2e-3 --save-every 250 --out _build/pretrain-zh-tiny-1500-lr2e-3 $(PRETRAIN_ARGS)

# Fine-tuning (chapter 12): the experiment set the chapter loads (results/finetune-zh-tiny.json): chapter 11's and
# the 20,000-step checkpoint against random init at 100, 1,000 and 3,000 labelled reviews (5 seeds at 100, 3 at the
# others), the two other checkpoints at 100, each start's learning rate chosen on dev, the pooler against mean
# pooling, and named entities. Two runs at once, one thread each
# (FINETUNE_JOBS=1 for one at a time: the same numbers, slower).
.PHONY: finetune
FINETUNE_JOBS ?= 2
finetune: setup
	$(VENV_PY) -m minibert finetune-experiments --jobs $(FINETUNE_JOBS) --threads 1 --out results/finetune-zh-tiny.json $(FINETUNE_ARGS)
