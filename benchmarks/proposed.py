"""Prototype speed-ups for minibert's fast path, measured by forward.py beside the package as it is.

Nothing here is part of the package: chapters 04 and 05 own attention and the model. This file holds the
exact code proposed for their export cells, written as functions over the package's modules so that it
can be measured without touching them. Three ideas, each keeping the numbers identical on every real token:

1. Fused QKV (switch FUSE_QKV, off: no gain measured on CPU; for a GPU to try): one (C -> 3C) matmul
   instead of three (C -> C) ones. The stacked weight is cached while no gradient is needed and rebuilt
   whenever a query/key/value weight or bias changes (in-place updates such as load_state_dict or an
   optimizer step bump the tensor's version counter; `.to()` changes its storage).
2. No mask when nothing is padded (transformers does the same): on a GPU, SDPA's flash kernel takes no mask.
3. Unpadding: the dense layers (QKV, attention output, feed-forward: 97% of the FLOPs at 128 tokens) run on
   the real tokens only, packed into (N, C); attention scatters them back into (B, T, .) for the masked
   SDPA call. Padded positions of `last_hidden_state` come back as zeros (transformers returns values
   computed from padding there, which carry no meaning). Used only for right-padded batches
   (attention_mask[:, 0] all ones), so the pooler's first token is always real.

Letters: B batch, T sequence length, N real tokens in the batch, C hidden size, H heads, D = C / H.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import minibert
from minibert.attention import BertSelfAttention
from minibert.model import BertModelOutput


# ---- 1. proposed for chapter 04's BertSelfAttention -----------------------------------------------------------

def fused_qkv(self: BertSelfAttention) -> tuple[torch.Tensor, torch.Tensor]:
    """query, key and value weights stacked into one (3C, C) matrix (and biases into (3C,)), so one matmul
    projects all three. Cached while no gradient is needed; rebuilt when any of the six tensors changes."""
    params = (self.query.weight, self.key.weight, self.value.weight, self.query.bias, self.key.bias, self.value.bias)
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return torch.cat(params[:3]), torch.cat(params[3:])  # training: differentiable, rebuilt every call
    stamp = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
    if getattr(self, "_qkv_stamp", None) != stamp:
        with torch.no_grad():
            self._qkv_cache = torch.cat(params[:3]), torch.cat(params[3:])  # (3C, C), (3C,)
        self._qkv_stamp = stamp
    return self._qkv_cache


FUSE_QKV = False  # measured: on CPU the fused matmul is no faster (see README); kept for GPUs to try


def _unpack(x: torch.Tensor, token_index: torch.Tensor | None, B: int, T: int) -> torch.Tensor:
    """(N, C) packed real tokens -> (B*T, C) with zeros at the padded positions; unpacked input passes through."""
    if token_index is None:
        return x
    return x.new_zeros(B * T, x.shape[-1]).index_copy_(0, token_index, x)


def self_attention_forward(self: BertSelfAttention, hidden_states, attention_mask=None, output_attentions=False,
                           token_index: torch.Tensor | None = None, padded_shape: tuple[int, int] | None = None):
    """BertSelfAttention.forward with the fast path fused and able to take packed tokens.

    hidden_states is (B, T, C), or (N, C) packed real tokens when token_index (N,) gives their flat
    positions in the padded (B, T) = padded_shape batch. The eager path is unchanged (and refuses packing)."""
    if self.attn_implementation != "sdpa" or output_attentions:
        if token_index is not None:
            raise ValueError("packed tokens (token_index) need the sdpa path without output_attentions")
        return BertSelfAttention.forward(self, hidden_states, attention_mask, output_attentions)
    H, D = self.num_attention_heads, self.attention_head_size
    B, T = padded_shape if token_index is not None else hidden_states.shape[:2]
    if FUSE_QKV:
        qkv = F.linear(hidden_states, *fused_qkv(self))  # (B, T, 3C) or (N, 3C)
        if token_index is not None:
            qkv = qkv.new_zeros(B * T, qkv.shape[-1]).index_copy_(0, token_index, qkv)  # (B*T, 3C), padding = 0
        q, k, v = qkv.view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)  # each (B, H, T, D)
    else:
        q, k, v = (_unpack(proj(hidden_states), token_index, B, T).view(B, T, H, D).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))  # each (B, H, T, D)
    p = self.dropout.p if self.training else 0.0
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=p)  # (B, H, T, D)
    context = context.transpose(1, 2).reshape(B * T, H * D)  # merge heads: (B*T, C)
    if token_index is not None:
        return context.index_select(0, token_index), None  # (N, C)
    return context.view(B, T, H * D), None  # (B, T, C)


# ---- 2. proposed for chapter 05's BertModel.forward (after validation and the mask) ---------------------------

def model_forward(model: minibert.BertModel, input_ids, attention_mask=None, token_type_ids=None) -> BertModelOutput:
    """BertModel.forward's fast path: pack the real tokens when a right-padded batch has padding."""
    B, T = input_ids.shape
    hidden = model.embeddings(input_ids, token_type_ids)  # (B, T, C)
    keep = None if attention_mask is None else attention_mask.to(torch.bool)  # (B, T)
    if keep is not None and bool(keep.all()):
        keep = None  # no padding: no mask at all, so a GPU may pick its fastest (flash) kernel, as transformers does
    mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, T) booleans for SDPA
    pack = keep is not None and model.config.attn_implementation == "sdpa" and bool(keep[:, 0].all())
    if not pack:
        for layer in model.encoder.layer:
            hidden = _layer(layer, hidden, mask)
    else:
        token_index = keep.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of the real tokens
        x = hidden.reshape(B * T, -1).index_select(0, token_index)  # (N, C)
        for layer in model.encoder.layer:
            x = _layer(layer, x, mask, token_index, (B, T))
        hidden = x.new_zeros(B * T, x.shape[-1]).index_copy_(0, token_index, x).view(B, T, -1)  # (B, T, C)
    pooled = model.pooler(hidden) if model.pooler is not None else None
    return BertModelOutput(hidden, pooled)


def _layer(layer, x, mask, token_index=None, padded_shape=None):
    """BertLayer.forward with the two new arguments passed through (attention, then feed-forward)."""
    context, _ = self_attention_forward(layer.attention.self, x, mask, False, token_index, padded_shape)
    a = layer.attention.output(context, x)  # dense + add & norm, any leading shape
    return layer.output(layer.intermediate(a), a)
