"""`minibert params`: the exact counts on the command line, and clean errors (exit 2, no traceback)."""

import json
import os
import subprocess
import sys

import pytest
import torch
import transformers

transformers.logging.set_verbosity_error()


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "minibert", "params", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def hf_numel(model_class=transformers.BertModel, **fields) -> int:
    with torch.device("meta"):
        model = model_class(transformers.BertConfig(**fields))
    return sum(p.numel() for p in model.parameters())


def test_table_for_a_preset():
    out = run("bert-base-uncased")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    lines = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines() if len(line.split()) >= 2}
    assert lines["total"] == f"{hf_numel():,}" == "109,482,240"
    assert lines["pooler.dense"] == f"{768 * 768 + 768:,}"
    assert lines["embeddings.word_embeddings"] == f"{30522 * 768:,}"
    # the sizes in the course's letters (chapter 00): C hidden, H heads, F feed-forward, S token types
    assert "V=30522 C=768 L=12 H=12 F=3072 P=512 S=2" in out.stdout


def test_json_for_every_head():
    cases = [([], transformers.BertModel, {}),
             (["--head", "mlm"], transformers.BertForMaskedLM, {}),
             (["--head", "pretraining"], transformers.BertForPreTraining, {}),
             (["--head", "classification:4"], transformers.BertForSequenceClassification, {"num_labels": 4})]
    for extra, model_class, fields in cases:
        out = run("bert-mini", "--json", *extra)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        want = hf_numel(model_class, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, **fields)
        assert data["total"] == want == sum(data["breakdown"].values()), extra


def test_no_pooler_and_config_file(tmp_path):
    cfg = {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 1000, "hidden_size": 48,
           "num_hidden_layers": 3, "num_attention_heads": 6, "intermediate_size": 100,
           "max_position_embeddings": 64, "type_vocab_size": 3}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    fields = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}
    with torch.device("meta"):
        no_pooler = transformers.BertModel(transformers.BertConfig(**fields), add_pooling_layer=False)
    for arg in (str(tmp_path / "config.json"), str(tmp_path)):  # the file, or the checkpoint folder
        out = run(arg, "--json", "--no-pooler", cwd=tmp_path)  # works outside the course repository too
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["total"] == sum(p.numel() for p in no_pooler.parameters())
        assert "pooler.dense" not in json.loads(out.stdout)["breakdown"]


def test_unknown_preset_lists_the_known_ones():
    out = run("bert-huge")
    assert out.returncode == 2 and out.stdout == ""
    assert "bert-huge" in out.stderr and "bert-base-uncased" in out.stderr and "bert-large-cased" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("content, words", [
    ("{not json", ["not a valid JSON"]),
    ('{"hidden_size": -4}', ["hidden_size", "-4"]),
    ('{"hidden_size": 768, "num_attention_heads": 10}', ["hidden_size", "num_attention_heads", "10"]),
    ('{"vocab_size": "many"}', ["vocab_size", "many"]),
    ('[1, 2]', ["JSON object"]),
    ('{"model_type": "gpt2"}', ["model_type", "gpt2"]),
])
def test_invalid_config_names_the_file_and_the_key(tmp_path, content, words):
    path = tmp_path / "config.json"
    path.write_text(content)
    out = run(str(path))
    assert out.returncode == 2, out.stdout
    assert str(path) in out.stderr
    for word in words:
        assert word in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_file_and_bad_options(tmp_path):
    out = run(str(tmp_path / "nowhere.json"))
    assert out.returncode == 2 and "nowhere.json" in out.stderr and "not found" in out.stderr
    for bad in (["--head", "classification:0"], ["--head", "nsp"], ["--no-pooler", "--head", "pretraining"]):
        out = run("bert-tiny", *bad)
        assert out.returncode == 2, bad
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize("make, words", [
    (lambda d: "/dev/zero", ["/dev/zero", "not a regular file"]),
    (lambda d: (os.mkfifo(d / "fifo"), str(d / "fifo"))[1], ["fifo", "not a regular file"]),
    (lambda d: str(d), ["config.json", "not found"]),  # a folder without a config.json
    (lambda d: ((d / "sub").mkdir(), (d / "sub" / "config.json").mkdir(), str(d / "sub" / "config.json"))[2],
     ["config.json/config.json", "not found"]),  # a folder named config.json is a checkpoint folder
    (lambda d: ((d / "big.json").write_text("{" + " " * 2_000_000 + "}"), str(d / "big.json"))[1],
     ["big.json", "2,000,002 bytes", "1,000,000"]),
    (lambda d: ((d / "deep.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000), str(d / "deep.json"))[1],
     ["deep.json", "nested 100000 levels"]),
    (lambda d: ((d / "bin.json").write_bytes(b"\xff\xfe{}"), str(d / "bin.json"))[1], ["bin.json", "not UTF-8"]),
])
def test_unreadable_configs_exit_2_with_one_line_and_never_hang(tmp_path, make, words):
    """/dev/zero would be read until memory runs out and a FIFO would block: both are refused before reading."""
    out = run(make(tmp_path))  # run() times out after 60 s: a hang fails the test
    assert out.returncode == 2 and out.stdout == "", out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("minibert params: error: ")
    for word in words:
        assert word in out.stderr, (word, out.stderr)


@pytest.mark.parametrize("port, words", [
    ("-1", ["0 to 65535", "-1"]), ("70000", ["0 to 65535", "70000"]), ("65536", ["65536"]), ("abc", ["'abc'"]),
    ("1.5", ["'1.5'"]), ("", ["''"]),
])
def test_app_port_out_of_range_or_not_a_number_exits_2_with_one_line(port, words):
    out = subprocess.run([sys.executable, "-m", "minibert", "app", "--port", port], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("minibert app: error: argument --port: expected")
    for word in words:
        assert word in out.stderr


def test_parser_errors_are_one_line():
    for args in (["params"], ["no-such-command"], [], ["params", "bert-tiny", "--head", "nsp"]):
        out = subprocess.run([sys.executable, "-m", "minibert", *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "error:" in out.stderr, (args, out.stderr)
