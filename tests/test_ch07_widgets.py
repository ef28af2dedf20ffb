"""The parameter calculators (minibert.widgets): set controls from Python, read the displayed numbers back."""

import re
import time

import ipywidgets as widgets
import pytest
import torch
import transformers

from minibert import BertConfig
from minibert.widgets import compare_calculator, parameter_calculator

transformers.logging.set_verbosity_error()
TOTAL = re.compile(r'<span class="minibert-total">([^<]*)</span>')


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def control(root, description):
    found = [w for w in walk(root) if getattr(w, "description", None) == description]
    assert len(found) == 1, f"expected one control described {description!r}, found {len(found)}"
    return found[0]


def shown_total(root) -> int | None:
    """The number inside the total span, as a page would read it; None when no total is shown."""
    spans = [m for w in walk(root) if isinstance(w, widgets.HTML) for m in TOTAL.findall(w.value)]
    assert len(spans) <= 1
    if not spans:
        return None
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", spans[0]), spans[0]  # thousands separators, nothing else
    return int(spans[0].replace(",", ""))


def shown_text(root) -> str:
    return " ".join(w.value for w in walk(root) if isinstance(w, widgets.HTML))


def hf_numel(**fields) -> int:
    with torch.device("meta"):
        model = transformers.BertModel(transformers.BertConfig(**fields))
    return sum(p.numel() for p in model.parameters())


def test_contract_and_initial_state():
    calc = parameter_calculator()
    assert isinstance(calc, widgets.Box)
    assert isinstance(control(calc, "Preset"), widgets.Dropdown)
    for description in ("Vocab", "Hidden", "Layers", "Heads", "Intermediate", "Positions", "Types"):
        assert isinstance(control(calc, description), (widgets.IntText, widgets.BoundedIntText, widgets.IntSlider))
    assert control(calc, "Preset").value == "bert-base-uncased"
    assert '<span class="minibert-total">109,482,240</span>' in shown_text(calc)
    assert shown_total(calc) == hf_numel()


def test_setting_controls_matches_transformers():
    calc = parameter_calculator()
    control(calc, "Layers").value = 6
    control(calc, "Hidden").value = 384
    control(calc, "Intermediate").value = 1536
    assert control(calc, "Preset").value == "all-MiniLM-L6-v2"  # the values now match a preset
    assert shown_total(calc) == hf_numel(num_hidden_layers=6, hidden_size=384, intermediate_size=1536)
    control(calc, "Vocab").value = 1000
    control(calc, "Positions").value = 128
    control(calc, "Types").value = 3
    control(calc, "Heads").value = 6
    assert control(calc, "Preset").value is None  # a custom config: no preset shown
    assert shown_total(calc) == hf_numel(num_hidden_layers=6, hidden_size=384, intermediate_size=1536,
                                         vocab_size=1000, max_position_embeddings=128, type_vocab_size=3,
                                         num_attention_heads=6)


def test_preset_sets_every_field():
    calc = parameter_calculator()
    control(calc, "Preset").value = "bert-large-uncased"
    assert control(calc, "Layers").value == 24 and control(calc, "Hidden").value == 1024
    assert control(calc, "Heads").value == 16 and control(calc, "Intermediate").value == 4096
    assert shown_total(calc) == hf_numel(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                         intermediate_size=4096)
    control(calc, "Preset").value = "bert-base-chinese"
    assert control(calc, "Vocab").value == 21128
    assert shown_total(calc) == hf_numel(vocab_size=21128)


def test_heads_and_pooler():
    calc = parameter_calculator("bert-mini")
    cfg = transformers.BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    with torch.device("meta"):
        models = {"mlm": transformers.BertForMaskedLM(cfg), "pretraining": transformers.BertForPreTraining(cfg),
                  "classification": transformers.BertForSequenceClassification(
                      transformers.BertConfig(**cfg.to_dict() | {"num_labels": 7}))}
    control(calc, "Labels").value = 7
    for head, model in models.items():
        control(calc, "Head").value = head
        assert shown_total(calc) == sum(p.numel() for p in model.parameters()), head
    control(calc, "Head").value = "none"
    control(calc, "Pooler").value = False
    with torch.device("meta"):
        no_pooler = transformers.BertModel(cfg, add_pooling_layer=False)
    assert shown_total(calc) == sum(p.numel() for p in no_pooler.parameters())


def test_invalid_heads_show_a_message_not_an_exception():
    calc = parameter_calculator()
    control(calc, "Heads").value = 10  # 768 is not divisible by 10
    assert shown_total(calc) is None
    text = shown_text(calc)
    assert "768" in text and "10" in text and "divisible" in text
    control(calc, "Heads").value = 8
    assert shown_total(calc) == hf_numel(num_attention_heads=8)


def test_memory_figures():
    calc = parameter_calculator()
    text = shown_text(calc)
    assert f"{109_482_240 * 4 / 2**20:,.1f} MiB" in text  # float32 weights
    assert f"{109_482_240 * 16 / 2**30:,.2f} GiB" in text  # Adam: weights, gradients, two moments


def test_comparison():
    cmp = compare_calculator("bert-base-uncased", "bert-base-chinese")
    assert [shown_total(cmp.left), shown_total(cmp.right)] == [hf_numel(), hf_numel(vocab_size=21128)]
    diff = re.search(r"<span class='minibert-diff'>([^<]*)</span>", cmp.difference.value).group(1)
    assert int(diff.replace(",", "")) == (21128 - 30522) * 768
    presets = [w for w in walk(cmp) if getattr(w, "description", None) == "Preset"]
    presets[1].value = "bert-large-uncased"
    diff = re.search(r"<span class='minibert-diff'>([^<]*)</span>", cmp.difference.value).group(1)
    assert int(diff.replace(",", "")) == hf_numel(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                 intermediate_size=4096) - hf_numel()


def test_config_argument():
    cfg = BertConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=100)
    calc = parameter_calculator(cfg)
    assert control(calc, "Preset").value is None
    assert shown_total(calc) == hf_numel(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                                         intermediate_size=100)


def test_update_is_fast():
    calc = parameter_calculator()
    layers = control(calc, "Layers")
    times = []
    for value in range(1, 41):
        start = time.perf_counter()
        layers.value = value
        times.append(time.perf_counter() - start)
    times.sort()
    assert times[len(times) // 2] < 0.050, f"median update {times[len(times) // 2] * 1000:.1f} ms"


def test_untied_masked_lm_is_transformers_count():
    calc = parameter_calculator()
    control(calc, "Head").value = "mlm"
    control(calc, "Tied MLM decoder").value = False
    assert "V·C + V" in control(calc, "Tied MLM decoder").tooltip  # the control says what untying adds
    assert "V·C + V = 30,522·768 + 30,522" in shown_text(calc)  # and so does the decoder's row
    with torch.device("meta"):
        model = transformers.BertForMaskedLM(transformers.BertConfig(tie_word_embeddings=False))
    assert shown_total(calc) == sum(p.numel() for p in model.parameters()) == 132_985_716
    control(calc, "Head").value = "pretraining"
    with torch.device("meta"):
        model = transformers.BertForPreTraining(transformers.BertConfig(tie_word_embeddings=False))
    assert shown_total(calc) == sum(p.numel() for p in model.parameters())


def test_controls_that_cannot_change_the_count_are_disabled():
    calc = parameter_calculator()
    live = {}
    for head in ("none", "mlm", "pretraining", "classification"):
        control(calc, "Head").value = head
        live[head] = {d for d in ("Pooler", "Tied MLM decoder", "Labels") if not control(calc, d).disabled}
        # and a disabled control really changes nothing
        for d in {"Pooler", "Tied MLM decoder", "Labels"} - live[head]:
            before, w = shown_total(calc), control(calc, d)
            old = w.value
            w.value = (not old) if isinstance(old, bool) else 50
            assert shown_total(calc) == before, (head, d)
            w.value = old
    assert live == {"none": {"Pooler"}, "mlm": {"Tied MLM decoder"}, "pretraining": {"Tied MLM decoder"},
                    "classification": {"Labels"}}


def test_back_to_no_head_restores_the_chosen_pooler():
    calc = parameter_calculator()
    control(calc, "Pooler").value = False
    control(calc, "Head").value = "classification"
    assert control(calc, "Pooler").value is True  # the classifier reads the pooler
    control(calc, "Head").value = "none"
    assert control(calc, "Pooler").value is False
    with torch.device("meta"):
        model = transformers.BertModel(transformers.BertConfig(), add_pooling_layer=False)
    assert shown_total(calc) == sum(p.numel() for p in model.parameters())


def test_sliders_and_boxes_update_while_dragging_or_typing():
    calc = parameter_calculator()
    for description in ("Layers", "Hidden", "Heads", "Intermediate"):
        assert isinstance(control(calc, description), widgets.IntSlider), description
    for w in (*calc.fields.values(), control(calc, "Labels")):
        assert w.continuous_update, w.description
    # boxes do not clamp: an impossible size shows the config's own message
    control(calc, "Vocab").value = 0
    assert shown_total(calc) is None and "vocab_size must be a positive integer, got 0" in shown_text(calc)
    control(calc, "Vocab").value = 20_000_000
    assert shown_total(calc) == hf_numel(vocab_size=20_000_000)


def test_a_config_beyond_the_slider_range_widens_it():
    calc = parameter_calculator(BertConfig(num_hidden_layers=100))
    assert control(calc, "Layers").value == 100
    assert shown_total(calc) == hf_numel(num_hidden_layers=100)


def _evaluate(expression: str) -> int:
    """'12·3·(768² + 768)' -> 21,261,312, by Python arithmetic on the text the page shows."""
    python = expression.replace(",", "").replace("·", "*").replace("²", "**2")
    assert re.fullmatch(r"[0-9*+() ]+", python), expression
    return eval(python)


@pytest.mark.parametrize("head", ["none", "mlm", "pretraining", "classification"])
def test_each_row_shows_its_formula_with_the_numbers_that_give_its_count(head):
    calc = parameter_calculator("bert-mini")
    control(calc, "Head").value = head
    control(calc, "Labels").value = 7
    if head != "none":
        control(calc, "Tied MLM decoder").value = False
    rows = re.findall(r"<code>([^<]*)</code></span><span>([0-9,]+) \([^)]*\)</span>"
                      r"<span class='minibert-formula'>([^<]*)</span>", calc.breakdown.value)
    assert len(rows) == len(calc.count.breakdown)
    for key, shown, formula in rows:
        letters, numbers = formula.split(" = ")
        assert _evaluate(numbers) == int(shown.replace(",", "")) == calc.count.breakdown[html_unescape(key)], key
    layer = re.search(r"one layer = [^=]+ = ([^=]+) = ([0-9,]+)", calc.layer.value)
    assert _evaluate(layer.group(1)) == int(layer.group(2).replace(",", "")) == 256 * 256 * 4 + 2 * 256 * 1024 \
        + 9 * 256 + 1024


def html_unescape(text: str) -> str:
    import html
    return html.unescape(text)
