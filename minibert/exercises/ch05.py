"""Checks for chapter 05, assembling BERT."""

from __future__ import annotations

import contextlib
import sys

import torch
import torch.nn.functional as F
from torch import nn

from . import ExerciseError, expect, not_done, passed
from .ch03 import forbidding


def _close(a, b, atol=1e-5) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol)


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def _call(fn, exercise: str, hint: str, *args):
    """fn(*args); an error inside the learner's code becomes an ExerciseError that names it."""
    try:
        return fn(*args)
    except (NotImplementedError, ExerciseError):  # the stub of the student version, or a forbidden shortcut
        raise
    except Exception as exc:  # the learner's code failed: say how, and where to look
        expect(False, exercise, f"your function raised {type(exc).__name__}: {exc}", hint)


@contextlib.contextmanager
def _watching_calls(matches):
    """Whether a Python function whose code object `matches` ran inside the block (`ran[0]`, set after the block)."""
    ran = [False]
    previous = sys.getprofile()

    def profile(frame, event, arg):
        if event == "call" and matches(frame.f_code):
            ran[0] = True

    sys.setprofile(profile)
    try:
        yield ran
    finally:
        sys.setprofile(previous)


def _watching(*functions):
    """Whether any of `functions` ran inside the block, under whatever name it was reached: the package's finished
    forward passes, which an answer could call as minibert.model._layer_forward or through a class that holds
    them, out of reach of forbidding's renaming."""
    codes = {f.__code__ for f in functions}
    return _watching_calls(lambda code: code in codes)


def _watching_qualnames(*qualnames):
    """Whether a Python function with one of these qualified names ran inside the block: a class of that name in
    any module (the package's, the notebook's, transformers') under any alias."""
    names = set(qualnames)
    return _watching_calls(lambda code: code.co_qualname in names)


def _randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random and non-zero (|value| in [0.05, 0.25], LayerNorm weights 1 ± that), so that a
    forgotten bias or LayerNorm shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            value = (torch.rand(p.shape, generator=g) * 0.2 + 0.05) * (torch.randint(0, 2, p.shape, generator=g) * 2 - 1)
            p.copy_(1 + value if name.endswith("LayerNorm.weight") else value)
    return module.eval()


def _refuser(exercise: str, problem: str, hint: str):
    """A stand-in for a function the exercise forbids: calling it raises ExerciseError with problem and hint."""
    def refuse(*args, **kwargs):
        raise ExerciseError(f"Exercise {exercise}: {problem}\nHint: {hint}")
    return refuse


# 5.1 asks for indexing and arithmetic: PyTorch's ready-made lookups and layer norms, under every name an answer
# can reach them by (minibert's LayerNorm calls F.layer_norm, so it is refused too)
_LOOKUP_AND_NORM = [(F, "layer_norm"), (torch, "layer_norm"), (torch, "native_layer_norm"), (nn.LayerNorm, "forward"),
                    (F, "embedding"), (torch, "embedding"), (nn.Embedding, "forward")]
_LOOKUP_AND_NORM += [(torch.ops.aten, name) for name in ("layer_norm", "native_layer_norm", "embedding")]


def _hf_config(**kw):
    import transformers

    return transformers.BertConfig(**kw, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                   attn_implementation="eager")


def check_embed(fn) -> None:
    not_done(fn, "5.1")
    g = torch.Generator().manual_seed(5)
    for B, T, V, P, S, C, eps in ((1, 1, 7, 4, 1, 3, 1e-12), (2, 5, 11, 8, 2, 6, 1e-12), (3, 4, 30, 4, 3, 10, 0.1)):
        word, position, token_type = (torch.randn(n, C, generator=g) for n in (V, P, S))
        gamma, beta = torch.rand(C, generator=g) + 0.5, torch.randn(C, generator=g)
        ids = torch.randint(0, V, (B, T), generator=g)
        tt = torch.randint(0, S, (B, T), generator=g)
        # Reference: torch's own embedding lookup and layer norm.
        x = F.embedding(ids, word) + F.embedding(torch.arange(T), position)[None] + F.embedding(tt, token_type)
        want = F.layer_norm(x, (C,), gamma, beta, eps=eps)
        refuse = _refuser("5.1", "the answer calls a ready-made embedding lookup or layer norm (nn.Embedding, "
                          "F.embedding, nn.LayerNorm, F.layer_norm or minibert's LayerNorm), which the exercise "
                          "forbids.", "look rows up by indexing (word[input_ids]) and write LayerNorm with mean, "
                          "variance and sqrt(var + eps).")
        with forbidding(fn, _LOOKUP_AND_NORM, refuse):
            have = _call(fn, "5.1", "each table is indexed by its own ids: word by input_ids, position by 0..T-1 "
                         "(torch.arange(T)), token_type by token_type_ids.", ids, tt, word, position, token_type,
                         gamma, beta, eps)
        expect(isinstance(have, torch.Tensor) and tuple(have.shape) == (B, T, C), "5.1",
               f"for input_ids of shape {(B, T)} and hidden size {C} the result should have shape {(B, T, C)}, got "
               f"{_shape(have)}.",
               "index each table with its ids (word[input_ids], ...) and add the three (B, T, C) results.")
        x_no_type = F.embedding(ids, word) + F.embedding(torch.arange(T), position)[None]
        expect(not _close(have, F.layer_norm(x_no_type, (C,), gamma, beta, eps=eps)), "5.1",
               "the result does not depend on the token types.", "add token_type[token_type_ids] to the sum.")
        expect(not _close(have, x), "5.1", "the sum is returned without LayerNorm.",
               "normalise each vector: (x - mean) / sqrt(var + eps) * gamma + beta, mean and var over the last dim.")
        mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        unbiased = (x - mean) / (x.var(-1, keepdim=True) + eps).sqrt() * gamma + beta
        expect(not _close(have, unbiased, atol=1e-4), "5.1", "the variance is the unbiased one (divided by C - 1).",
               "LayerNorm divides the sum of squared deviations by C: ((x - mean) ** 2).mean(-1).")
        if eps > 1e-6:  # only a large eps tells sqrt(var + eps) from sqrt(var) + eps
            outside = (x - mean) / (var.sqrt() + eps) * gamma + beta
            expect(not _close(have, outside, atol=1e-4), "5.1",
                   f"with eps = {eps} the result equals (x - mean) / (sqrt(var) + eps): eps is outside the square "
                   f"root.",
                   "LayerNorm divides by sqrt(var + eps): add eps to the variance, then take the square root.")
        expect(_close(have, want, atol=1e-4), "5.1",
               f"the values differ from word + position + token type followed by LayerNorm "
               f"(max |diff| {float((have.float() - want).abs().max()):.3g}, eps = {eps}).",
               "positions are 0..T-1 for every row; LayerNorm uses the biased variance (mean of squared deviations) "
               "over the last dimension and sqrt(var + eps), then * gamma + beta.")
    passed("5.1")


def _layer_case(seed: int):
    """A minibert BertLayer holding the random weights of transformers' BertLayer (the reference), a (B, T, C)
    input and a (B, 1, 1, T) additive mask with a padded row."""
    from transformers.models.bert.modeling_bert import BertLayer as HFLayer

    from minibert.attention import extended_attention_mask
    from minibert.config import BertConfig
    from minibert.model import BertLayer

    kw = dict(hidden_size=12, num_attention_heads=3, intermediate_size=20, hidden_act="gelu")
    theirs = _randomized(HFLayer(_hf_config(**kw)), seed)
    ours = BertLayer(BertConfig(**kw, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 12, generator=g)  # (B, T, C)
    mask = extended_attention_mask(torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]))  # (B, 1, 1, T)
    return theirs, ours, x, mask


def check_layer_forward(fn) -> None:
    not_done(fn, "5.2")
    with torch.no_grad():
        theirs, ours, x, mask = _layer_case(seed=7)
        want = theirs(x, mask)  # transformers' BertLayer: (B, T, C)
        refuse = _refuser("5.2", "the answer calls the finished BertLayer (self(...) or BertLayer.forward), "
                          "the forward pass the exercise asks you to write.",
                          "use self.attention, self.intermediate and self.output.")
        from minibert.packed import packed_layer

        # the finished layer under any name: the package's forward, chapter 10's packed_layer (the same steps on
        # packed tokens) and transformers' BertLayer (a copy of the weights runs it)
        with _watching(type(ours).forward, packed_layer, type(theirs).forward) as ran, \
                forbidding(fn, [(type(ours), "forward")], refuse):
            have = _call(fn, "5.2", "use self.attention, self.intermediate and self.output, each called as in "
                         "chapters 03-04.", ours, x, mask)
        expect(not ran[0], "5.2", "the answer runs a finished BertLayer forward pass (minibert.model's, "
               "minibert.packed's packed_layer or transformers' BertLayer), the forward pass the exercise asks you "
               "to write.", "use self.attention, self.intermediate and self.output.")
        expect(isinstance(have, torch.Tensor), "5.2", f"the layer should return one tensor, got {type(have).__name__}.",
               "self.attention returns a pair (output, probabilities): unpack it, and return only the layer's output.")
        expect(tuple(have.shape) == tuple(x.shape), "5.2",
               f"for hidden states of shape {tuple(x.shape)} the output should have the same shape, got "
               f"{_shape(have)}.",
               "the feed-forward network ends with self.output, which maps F back to C.")
        attended = ours.attention(x, mask)[0]  # attention + add & norm, (B, T, C)
        expect(not _close(have, attended), "5.2", "the output is the attention block's output: the feed-forward "
               "half is missing.", "pass the attention output through self.intermediate, then self.output.")
        expect(not _close(have, ours.output(ours.intermediate(attended), x)), "5.2",
               "the feed-forward's residual is the layer's input.",
               "the second add & norm adds the attention output: self.output(intermediate, attention_output).")
        expect(not _close(have, ours.output(ours.intermediate(x), attended)), "5.2",
               "the feed-forward network reads the layer's input instead of the attention output.",
               "self.intermediate takes the attention output; so does the residual of self.output.")
        expect(not _close(have, theirs(x)), "5.2", "the padded positions are attended to: the mask is not used.",
               "pass attention_mask on to self.attention.")
        expect(_close(have, want), "5.2", f"the output differs from transformers' BertLayer by up to "
               f"{float((have - want).abs().max()):.3g}.",
               "keep the output of self.attention (given the mask); the feed-forward half is self.intermediate, "
               "then self.output, whose residual is that attention output.")
    passed("5.2")


def check_encoder_forward(fn) -> None:
    not_done(fn, "5.3")
    from transformers.models.bert.modeling_bert import BertEncoder as HFEncoder

    from minibert.attention import extended_attention_mask

    with torch.no_grad():
        # transformers' encoder is the reference; its layers (each returns a (B, T, C) tensor) are the ones looped
        encoder = _randomized(HFEncoder(_hf_config(hidden_size=12, num_attention_heads=3, intermediate_size=20,
                                                   num_hidden_layers=3)), seed=8)
        x = torch.randn(2, 6, 12, generator=torch.Generator().manual_seed(8))  # (B, T, C)
        mask = extended_attention_mask(torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]))  # (B, 1, 1, T)
        want = encoder(x, mask).last_hidden_state
        refuse = _refuser("5.3", "the answer calls the encoder itself (self(...) or its forward), the loop the "
                          "exercise asks you to write.", "loop over self.layer yourself.")
        from minibert.model import BertEncoder
        from minibert.packed import packed_forward, packed_layer

        with _watching(BertEncoder.forward, packed_forward, packed_layer) as ran, \
                forbidding(fn, [(type(encoder), "forward")], refuse):
            have = _call(fn, "5.3", "loop over self.layer; each layer takes (hidden_states, attention_mask).",
                         encoder, x, mask)
        expect(not ran[0], "5.3", "the answer runs the package's finished BertEncoder forward pass "
               "(minibert.model), the loop the exercise asks you to write.", "loop over self.layer yourself.")
        expect(isinstance(have, torch.Tensor) and tuple(have.shape) == tuple(x.shape), "5.3",
               f"the encoder should return the last layer's output of shape {tuple(x.shape)}, got {_shape(have)}.",
               "return the hidden states after the loop.")
        layers = list(encoder.layer)
        wrong = {"only the first layer ran": layers[0](x, mask),
                 "each layer read the encoder's input, not the previous layer's output": layers[-1](x, mask)}
        h = x
        for layer in reversed(layers):
            h = layer(h, mask)
        wrong["the layers ran in reverse order"] = h
        h = x
        for layer in layers:
            h = layer(h)
        wrong["the mask was not passed to the layers"] = h
        for problem, value in wrong.items():
            expect(not _close(have, value), "5.3", f"{problem}.",
                   "each layer of self.layer, in order, takes the previous layer's output (the first takes "
                   "hidden_states) and the same attention_mask.")
        expect(_close(have, want), "5.3", f"the output differs from transformers' BertEncoder by up to "
               f"{float((have - want).abs().max()):.3g}.",
               "feed each layer's output to the next, in order, every layer with the same mask.")
    passed("5.3")


def check_pool(fn) -> None:
    not_done(fn, "5.4")
    g = torch.Generator().manual_seed(6)
    for B, T, C in ((1, 1, 4), (3, 5, 8), (2, 7, 5)):
        h = torch.randn(B, T, C, generator=g)
        w, b = torch.randn(C, C, generator=g), torch.randn(C, generator=g)
        want = torch.tanh(F.linear(h[:, 0], w, b))  # nn.Linear's rule: x W^T + b
        with _watching_qualnames("BertPooler.forward") as ran:
            have = _call(fn, "5.4", "hidden_states[:, 0] is (B, C); weight is (C, C).", h, w, b)
        # the finished pooler (the package's, the notebook's right after the exercise, transformers') is no answer
        expect(not ran[0], "5.4", "the answer runs a finished BertPooler (the package's, the notebook's or "
               "transformers'), the computation the exercise asks you to write.",
               "write it with tensor operations on hidden_states, weight and bias.")
        expect(isinstance(have, torch.Tensor) and tuple(have.shape) == (B, C), "5.4",
               f"for hidden states of shape {(B, T, C)} the pooled output should have shape {(B, C)}, got "
               f"{_shape(have)}.", "take only the first token: hidden_states[:, 0].")
        expect(not _close(have, torch.tanh(h[:, 0] @ w + b)) or torch.allclose(w, w.T), "5.4",
               "the weight is used untransposed.", "nn.Linear computes x @ weight.T + bias.")
        expect(not _close(have, F.linear(h[:, 0], w, b)), "5.4", "tanh is missing.", "apply torch.tanh last.")
        if T > 1:  # with one token, first = last = mean
            expect(not _close(have, torch.tanh(F.linear(h.mean(1), w, b))), "5.4", "the tokens are averaged.",
                   "BERT's pooler reads only the first token, [CLS]: hidden_states[:, 0].")
            expect(not _close(have, torch.tanh(F.linear(h[:, -1], w, b))), "5.4", "the last token is pooled.",
                   "BERT's pooler reads the first token, [CLS]: hidden_states[:, 0].")
        expect(_close(have, want), "5.4", "the values differ from tanh(dense(first token)).",
               "pool the first token (index 0), compute x @ weight.T + bias, then tanh.")
    passed("5.4")


def check_left_padded_positions(fn) -> None:
    not_done(fn, "5.5")
    masks = [[[1, 1, 1]], [[0, 0, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]],
             [[0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]]
    for rows in masks:
        mask = torch.tensor(rows)
        want = []
        for row in rows:  # by hand: count real tokens seen so far
            seen, out = 0, []
            for m in row:
                out.append(seen if m else 0)
                seen += m
            want.append(out)
        have = _call(fn, "5.5", "work on the (B, T) mask with tensor operations such as cumsum.", mask)
        expect(mask.tolist() == rows, "5.5", "your function changed attention_mask in place; the model needs the "
               "mask as it was.", "compute the positions into a new tensor (cumsum, *, - return new tensors; "
               "methods ending in _ such as mul_ change their tensor).")
        expect(isinstance(have, torch.Tensor) and have.shape == mask.shape, "5.5",
               f"for a mask of shape {tuple(mask.shape)} the positions should have the same shape, got "
               f"{_shape(have)}.", "return one position per token, a (B, T) tensor.")
        expect(not have.dtype.is_floating_point, "5.5", f"positions must be integers, got dtype {have.dtype}.",
               "finish with .long().")
        expect(have.tolist() == want, "5.5", f"for the mask {rows} expected {want}, got {have.tolist()}.",
               "a running count of real tokens (cumsum along the sequence) minus 1 gives the position of each real "
               "token; set every padding position to 0, wherever it stands (left or right).")
    _show_left_padding(fn)
    passed("5.5")


def _show_left_padding(fn) -> None:
    """Run one model on a sentence without padding and left-padded with the learner's positions: the real tokens
    match, the pooler does not, because it reads position 0, a [PAD] here; pooling the [CLS] vector would match."""
    from minibert.config import BertConfig
    from minibert.model import BertModel

    config = BertConfig(vocab_size=20, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                        intermediate_size=20, max_position_embeddings=8, attn_implementation="eager")
    model = _randomized(BertModel(config), seed=9)
    ids = torch.tensor([[1, 5, 6, 7, 2]])  # [CLS] w w w [SEP]
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), ids], dim=1)  # [PAD] [PAD] [CLS] w w w [SEP]
    mask = (padded != 0).long()
    with torch.no_grad():
        alone = model(ids)
        left = model(padded, mask, position_ids=fn(mask.clone()))
        dense = model.pooler.dense  # the pooler's weights, applied by hand: tanh(h W^T + b)
        pooled_at = {i: torch.tanh(F.linear(left.last_hidden_state[:, i], dense.weight, dense.bias)) for i in (0, 2)}
    same_tokens = _close(left.last_hidden_state[:, 2:], alone.last_hidden_state)
    expect(same_tokens, "5.5", "with these positions the real tokens of a left-padded sentence do not get the "
           "vectors they get without padding.", "[CLS] must be at position 0, the next token at 1, ...")
    print(f"left padding with your positions: real tokens as without padding: {same_tokens}; "
          f"pooler_output as without padding: {_close(left.pooler_output, alone.pooler_output)}")
    print(f"pooler_output is tanh(dense(vector at position 0, a [PAD])): {_close(left.pooler_output, pooled_at[0])}; "
          f"tanh(dense([CLS] vector at position 2)) is the unpadded pooler_output: "
          f"{_close(pooled_at[2], alone.pooler_output)}")
