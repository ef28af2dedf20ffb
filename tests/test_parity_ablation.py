"""The parity tests can see every bias and every LayerNorm parameter: leaving any one of them out of minibert's
forward pass (as a bug would: a bias not added, a LayerNorm not scaled) makes the parity comparison with
transformers fail, for the model and every head, including the masked-LM decoder's bias and the classifier's."""

import pytest
import torch
import transformers

import minibert
from parity import max_diff, neutral_parameters, randomize_, without
from test_dropin import CLASSES, batch, hf_config, our_config, pair

torch.set_num_threads(1)
TOLERANCE = 1e-5  # what the parity tests allow


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("name", [cls.__name__ for cls in CLASSES])
def test_leaving_out_any_bias_or_layernorm_weight_fails_the_parity_check(name, impl):
    theirs, ours = pair(name, impl)
    b = batch()
    with torch.no_grad():
        want = theirs(**b)
        assert max_diff(ours(**b), want) < TOLERANCE  # everything in place: parity holds
        left_out = neutral_parameters(ours)
        names = [n for n, _ in left_out]
        assert len(names) == len(set(names)) and len(names) >= 14
        if name == "BertForMaskedLM":
            assert "cls.predictions.bias" in names  # the decoder's bias (one tensor with cls.predictions.decoder.bias)
        if name == "BertForSequenceClassification":
            assert "classifier.bias" in names
        seen = {}
        for param, neutral in left_out:
            with without(ours, param, neutral):
                seen[param] = max_diff(ours(**b), want)
        assert max_diff(ours(**b), want) < TOLERANCE  # every parameter restored
    for param, diff in seen.items():
        if param.endswith("attention.self.key.bias"):
            # q . (k + b) = q . k + q . b adds the same number to every score of a query, and softmax ignores that:
            # the key bias cannot change BERT's output, so no test can see it (transformers' outputs agree).
            assert diff < TOLERANCE, param
        else:
            assert diff > 100 * TOLERANCE, f"leaving out {param} goes unseen (max |diff| {diff:.2e})"


@pytest.mark.parametrize("name, param", [("BertForMaskedLM", "cls.predictions.bias"),
                                         ("BertForSequenceClassification", "classifier.bias"),
                                         ("BertModel", "encoder.layer.1.output.LayerNorm.weight")])
def test_fresh_models_would_hide_the_bug(name, param):
    """Why the helper exists: with transformers' fresh initialisation (zero biases, identity LayerNorms) the
    same bug passes the comparison."""
    theirs = getattr(transformers, name)(hf_config()).eval()
    ours = getattr(minibert, name)(our_config()).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    b = batch()
    neutral = 1.0 if param.endswith("LayerNorm.weight") else 0.0
    with torch.no_grad(), without(ours, param, neutral):
        assert max_diff(ours(**b), theirs(**b)) < TOLERANCE  # unseen
    randomize_(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    with torch.no_grad(), without(ours, param, neutral):
        assert max_diff(ours(**b), theirs(**b)) > 100 * TOLERANCE  # seen
