#!/usr/bin/env python3
"""Golden reference data for lowbit's decoder families (numpy only).

An implementation of the transformers float32 eager forward pass written from
/work/notes/arch_spec.md (the research note on transformers' modeling files), independent of
lowbit's TypeScript: it reads the checkpoints it writes by their Hugging Face tensor names and
the config.json keys as transformers does (with each configuration class's defaults), and keeps
transformers' float32 order of operations (float32 inv_freq chain, `1.0 / t` as
`t.reciprocal() * 1.0` as torch's `__rtruediv__` does, float32 cos/sin, scores scaled after q·kᵀ,
Gemma 2's soft-cap before the mask, softmax in float32, OPT's q scaled after q_proj + bias, ...).
The same code also runs in float64, to measure how far float32 rounding alone moves the logits.

For every case it writes, under testing/golden/<case>/:
  config.json, tokenizer.json, tokenizer_config.json  (as transformers / tokenizers write them)
  model.safetensors (or model-0000k-of-00002.safetensors + model.safetensors.index.json)
  expected.json        token ids, text, logits shape, float32-vs-float64 gap, feature "bite" checks
  expected_logits.f32  float32 logits [T][vocab], little-endian
  expected_logits_f64.f64  the same forward in float64
and for the RTN cases (4-bit; per channel and groups of 32; asymmetric and symmetric),
rtn_<variant>_logits.f32 (logits with every q/k/v/o/gate/up/down fake-quantized, experts and
shared expert included; not embeddings, norms, routers, the shared-expert gate or lm_head),
rtn_<variant>_<site>.f32 (one dequantized weight, raw), the sha256 of every dequantized linear in
expected.json, and the same computed in exact arithmetic (rtn_<variant>_exact_logits.f32).

RTN follows METHODS.md §3.0 / core/quantizer.ts: asymmetric min-max with zero forced into the
range, scale = (xmax − xmin)/(2^b − 1), zero = round(−xmin/scale) (half to even),
q = clamp(round(w/scale) + zero, 0, 2^b − 1), ŵ = scale·(q − zero); symmetric is the absmax
convention lowbit documents, scale = max|w|/(2^(b−1) − 1), zero = 2^(b−1) (GPTQ's own `sym`
differs: scale = 2·max|w|/(2^b − 1), zero = (2^b − 1 + 1)/2). Groups are contiguous input
columns, the last one shorter when the group size does not divide the width. "float32" computes
every step in float32 as GPTQ's `Quantizer` does on float32 tensors; "exact" takes the exact
difference xmax − xmin and exact quotients, rounding only the scale to float32.

Deterministic (fixed seed; no time or environment in the output). Rerun from the repository root:

    python3 testing/golden/generate.py          # rewrites testing/golden/<case>/
    python3 testing/golden/generate.py --check  # regenerates in memory, fails if a file differs

then `deno test --allow-read --allow-write models/families_test.ts`.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
SEED = 20250626  # chosen so every MoE top-k choice has a margin ≥ 1e-3 (MIN_ROUTER_GAP)
T = 16  # tokens per golden sequence: long enough for every sliding window to bite
# Smallest allowed gap between the k-th and (k+1)-th router probability of any token: far above
# float32 rounding, so an implementation computing the routing in another precision (or order)
# chooses the same experts.
MIN_ROUTER_GAP = 1e-3

# --------------------------------------------------------------------------------------------
# Storage formats
# --------------------------------------------------------------------------------------------


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even) -> float32."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    return (r.astype(np.uint32) << 16).view(np.float32)


def stored(x: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 values a tensor has after a round trip through `dtype`."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "F32":
        return x
    if dtype == "BF16":
        return bf16_round(x)
    if dtype == "F16":
        return x.astype(np.float16).astype(np.float32)
    raise ValueError(dtype)


def tensor_bytes(x: np.ndarray, dtype: str) -> bytes:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "F32":
        return x.astype("<f4").tobytes()
    if dtype == "F16":
        return x.astype("<f2").tobytes()
    if dtype == "BF16":
        bits = (bf16_round(x).view(np.uint32) >> 16).astype("<u2")
        return bits.tobytes()
    raise ValueError(dtype)


def safetensors_file(tensors: dict[str, np.ndarray], dtype: str) -> bytes:
    """A safetensors file: u64 LE header length, JSON header (space-padded to 8), data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        data = tensor_bytes(tensors[name], dtype)
        header[name] = {
            "dtype": dtype,
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Forward pass (transformers eager semantics), in dtype F (np.float32 or np.float64)
# --------------------------------------------------------------------------------------------


def rms_norm(F, x, w, eps):
    """Llama-style RMSNorm: w * (x * rsqrt(mean(x²) + eps))."""
    var = np.mean(x * x, axis=-1, keepdims=True)
    return w * (x * (F(1) / np.sqrt(var + F(eps))))


def gemma_rms_norm(F, x, w, eps):
    """Gemma RMSNorm: (x * rsqrt(mean(x²) + eps)) * (1 + w), the (1 + w) in float."""
    var = np.mean(x * x, axis=-1, keepdims=True)
    return (x * (F(1) / np.sqrt(var + F(eps)))) * (F(1) + w)


def layer_norm(F, x, w, b, eps):
    """torch.nn.LayerNorm: biased variance."""
    mu = np.mean(x, axis=-1, keepdims=True)
    d = x - mu
    var = np.mean(d * d, axis=-1, keepdims=True)
    return (d * (F(1) / np.sqrt(var + F(eps)))) * w + b


def act_fn(F, name):
    if name in ("silu", "swish"):
        return lambda x: x / (F(1) + np.exp(-x))
    if name in ("gelu_pytorch_tanh", "gelu_new"):
        beta = F(math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5)
        return lambda x: F(0.5) * x * (F(1) + np.tanh(beta * (x + F(0.044715) * (x * x * x))))
    if name == "relu":
        return lambda x: np.maximum(x, F(0))
    raise ValueError(f"activation {name}")


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def reciprocal(F, x):
    return F(1) / x


def rope_inv_freq(F, cfg, family, head_dim):
    """inv_freq and attention_scaling (transformers ROPE_INIT_FUNCTIONS, float32 chain)."""
    base = cfg.get("rope_theta", {"mixtral": 1e6}.get(family, 10000.0))
    prf = cfg.get("partial_rotary_factor", 1.0)
    dim = int(head_dim * prf)
    exps = np.arange(0, dim, 2, dtype=np.int64).astype(F) / F(dim)
    rs = cfg.get("rope_scaling")
    rtype = None if rs is None else rs.get("rope_type", rs.get("type"))
    if rtype in (None, "default"):
        return reciprocal(F, F(base) ** exps), 1.0, dim
    if rtype == "llama3":
        inv = reciprocal(F, F(base) ** exps)
        factor = rs["factor"]
        low = rs["low_freq_factor"]
        high = rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wl = old / low
        high_wl = old / high
        wavelen = reciprocal(F, inv) * F(2 * math.pi)  # 2π / inv_freq  (reciprocal · scalar)
        inv_l = np.where(wavelen > F(low_wl), inv / F(factor), inv)
        smooth = (reciprocal(F, wavelen) * F(old) - F(low)) / F(high - low)
        smoothed = (F(1) - smooth) * inv_l / F(factor) + smooth * inv_l
        medium = ~(wavelen < F(high_wl)) & ~(wavelen > F(low_wl))
        return np.where(medium, smoothed, inv_l).astype(F), 1.0, dim
    if rtype in ("longrope", "su"):
        max_pos = cfg["max_position_embeddings"]
        # transformers tests hasattr(config, "original_max_position_embeddings"): always true for
        # Phi3Config, whose default is 4096.
        if family == "phi3" or "original_max_position_embeddings" in cfg:
            orig = cfg.get("original_max_position_embeddings", 4096)
            factor = max_pos / orig
        else:
            orig = max_pos
            factor = rs.get("factor")
        attn = rs.get("attention_factor")
        if attn is None:
            attn = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        # Our sequences are shorter than `orig`: transformers uses the short factors.
        assert T <= orig
        ext = np.asarray(rs["short_factor"], dtype=np.float32).astype(F)
        return reciprocal(F, ext * (F(base) ** exps)), attn, dim
    raise ValueError(f"rope type {rtype}")


def rope_cos_sin(F, inv, attention_scaling, positions):
    freqs = inv[None, :] * positions.astype(F)[:, None]  # [S, dim/2]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb) * F(attention_scaling), np.sin(emb) * F(attention_scaling)


def apply_rope(x, cos, sin):
    """x [heads, S, hd]; rotates the first cos.shape[-1] dims with rotate_half (partial rotary)."""
    rot = cos.shape[-1]
    xr, xp = x[..., :rot], x[..., rot:]
    half = rot // 2
    rh = np.concatenate([-xr[..., half:], xr[..., :half]], axis=-1)
    return np.concatenate([(xr * cos) + (rh * sin), xp], axis=-1)


def eager_attention(F, q, k, v, scaling, window=None, softcap=None):
    """q [nh,S,hd], k/v [nkv,S,hd] -> [S, nh*hd]; transformers eager_attention_forward."""
    nh, S, hd = q.shape
    rep = nh // k.shape[0]
    k = np.repeat(k, rep, axis=0)  # repeat_kv: head j reads kv head j // rep
    v = np.repeat(v, rep, axis=0)
    w = (q @ k.transpose(0, 2, 1)) * F(scaling)
    if softcap is not None:
        w = w / F(softcap)
        w = np.tanh(w)
        w = w * F(softcap)
    qi = np.arange(S)[:, None]
    ki = np.arange(S)[None, :]
    visible = ki <= qi
    if window is not None:
        visible &= qi - ki < window  # sliding_window_overlay: kv > q - W
    w = w + np.where(visible, F(0), np.finfo(F).min).astype(F)
    w = w - np.max(w, axis=-1, keepdims=True)
    e = np.exp(w)
    p = e / np.sum(e, axis=-1, keepdims=True)
    o = p @ v
    return o.transpose(1, 0, 2).reshape(S, nh * hd)


def heads(x, n, hd):
    """[S, n*hd] -> [n, S, hd]"""
    return x.reshape(x.shape[0], n, hd).transpose(1, 0, 2)


class Routing:
    """Smallest gap between the k-th and (k+1)-th router probability seen (robustness)."""

    min_gap = math.inf


def moe_block(F, h, router_w, experts, top_k, norm_topk):
    """Softmax routing in float32, top-k, optional renormalisation, index_add by expert."""
    logits = h @ router_w.T
    z = logits - np.max(logits, axis=-1, keepdims=True)
    e = np.exp(z)
    probs = e / np.sum(e, axis=-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, axis=-1)
    if top_k < probs.shape[-1]:
        gap = float(np.min(sorted_p[:, top_k - 1] - sorted_p[:, top_k]))
        Routing.min_gap = min(Routing.min_gap, gap)
    sel = order[:, :top_k]
    wts = sorted_p[:, :top_k]
    if norm_topk:
        wts = wts / np.sum(wts, axis=-1, keepdims=True)
    out = np.zeros_like(h)
    for ex in range(len(experts)):
        tok, slot = np.nonzero(sel == ex)
        if tok.size == 0:
            continue
        y = experts[ex](h[tok]) * wts[tok, slot][:, None]
        np.add.at(out, tok, y)
    return out


def swiglu(act, gate_w, up_w, down_w, gate_b=None, up_b=None, down_b=None):
    return lambda x: linear(act(linear(x, gate_w, gate_b)) * linear(x, up_w, up_b), down_w, down_b)


def window_of(cfg, family, layer):
    """The sliding window of a layer (None: full causal attention), per family."""
    if family == "mistral":
        return cfg["sliding_window"] if "sliding_window" in cfg else 4096  # MistralConfig default
    if family in ("phi3", "mixtral"):
        return cfg.get("sliding_window")
    if family in ("qwen2", "qwen3", "qwen2_moe"):
        if not cfg.get("use_sliding_window", False):
            return None
        sw = cfg.get("sliding_window", 4096)
        types = cfg.get("layer_types")
        if types is None:
            types = [
                "sliding_attention" if sw is not None and i >= cfg.get("max_window_layers", 28)
                else "full_attention"
                for i in range(cfg["num_hidden_layers"])
            ]
        return sw if types[layer] == "sliding_attention" else None
    if family == "qwen3_moe":
        return cfg.get("sliding_window", 4096) if cfg.get("use_sliding_window", False) else None
    if family == "gemma2":
        return cfg.get("sliding_window", 4096) if layer % 2 == 0 else None
    return None


def forward(family, cfg, W, ids, F):
    """Logits [S, vocab] of `ids` in dtype F. W: HF tensor name -> float32 array."""
    W = {k: v.astype(F) for k, v in W.items()}
    ids = np.asarray(ids)
    S = len(ids)
    pos = np.arange(S)
    if family == "opt":
        return forward_opt(cfg, W, ids, F)
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    default_hd = {"qwen3": 128, "gemma2": 256}.get(family)
    hd = cfg.get("head_dim") or default_hd or H // nh
    eps = cfg.get("rms_norm_eps", {"phi3": 1e-5, "mixtral": 1e-5, "olmoe": 1e-5}.get(family, 1e-6))
    if family == "gemma2":
        act_name = cfg.get("hidden_activation", "gelu_pytorch_tanh")
    else:
        act_name = cfg.get("hidden_act", "silu")
    act = act_fn(F, act_name)
    gemma = family == "gemma2"
    def norm(x, w):
        return gemma_rms_norm(F, x, w, eps) if gemma else rms_norm(F, x, w, eps)

    inv, attn_scaling, _ = rope_inv_freq(F, cfg, family, hd)
    cos, sin = rope_cos_sin(F, inv, attn_scaling, pos)

    # Which projections carry biases (config flags, else hard-coded by the modeling file).
    qkv_bias = o_bias = mlp_bias = False
    if family in ("llama", "qwen3", "qwen3_moe", "olmoe", "gemma2"):
        qkv_bias = o_bias = cfg.get("attention_bias", False)
    if family in ("qwen2", "qwen2_moe"):
        qkv_bias = cfg.get("qkv_bias", True)
    if family == "llama":
        mlp_bias = cfg.get("mlp_bias", False)
    tied = cfg.get("tie_word_embeddings", family == "gemma2")

    x = W["model.embed_tokens.weight"][ids]
    if gemma:
        x = x * F(math.sqrt(H))  # torch.tensor(H**0.5, dtype=hidden.dtype)
    if family == "gemma2":
        scaling = cfg.get("query_pre_attn_scalar", 256) ** -0.5
        attn_cap = cfg.get("attn_logit_softcapping", 50.0)
    else:
        scaling = hd ** -0.5
        attn_cap = None
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        residual = x
        h = norm(x, W[p + "input_layernorm.weight"])
        if family == "phi3":
            qkv = linear(h, W[a + "qkv_proj.weight"])
            q = qkv[:, : nh * hd]
            k = qkv[:, nh * hd : nh * hd + nkv * hd]
            v = qkv[:, nh * hd + nkv * hd :]
        else:
            q = linear(h, W[a + "q_proj.weight"], W[a + "q_proj.bias"] if qkv_bias else None)
            k = linear(h, W[a + "k_proj.weight"], W[a + "k_proj.bias"] if qkv_bias else None)
            v = linear(h, W[a + "v_proj.weight"], W[a + "v_proj.bias"] if qkv_bias else None)
        if family == "olmoe":  # RMSNorm over the whole projection, then clip_qkv
            q = rms_norm(F, q, W[a + "q_norm.weight"], eps)
            k = rms_norm(F, k, W[a + "k_norm.weight"], eps)
            c = cfg.get("clip_qkv")
            if c is not None:
                q, k, v = (np.clip(t, F(-c), F(c)) for t in (q, k, v))
        q, k, v = heads(q, nh, hd), heads(k, nkv, hd), heads(v, nkv, hd)
        if family in ("qwen3", "qwen3_moe"):  # per-head RMSNorm over head_dim, before RoPE
            q = rms_norm(F, q, W[a + "q_norm.weight"], eps)
            k = rms_norm(F, k, W[a + "k_norm.weight"], eps)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        o = eager_attention(F, q, k, v, scaling, window_of(cfg, family, i), attn_cap)
        o = linear(o, W[a + "o_proj.weight"], W[a + "o_proj.bias"] if o_bias else None)
        if gemma:
            o = norm(o, W[p + "post_attention_layernorm.weight"])
        x = residual + o
        residual = x
        if gemma:
            h = norm(x, W[p + "pre_feedforward_layernorm.weight"])
        else:
            h = norm(x, W[p + "post_attention_layernorm.weight"])
        m = p + "mlp."
        if family == "phi3":
            gu = linear(h, W[m + "gate_up_proj.weight"])
            inter = gu.shape[-1] // 2
            gate, up = gu[:, :inter], gu[:, inter:]
            y = linear(up * act(gate), W[m + "down_proj.weight"])
        elif family == "mixtral":
            bm = p + "block_sparse_moe."
            experts = [
                swiglu(act, *(W[f"{bm}experts.{e}.{n}.weight"] for n in ("w1", "w3", "w2")))
                for e in range(cfg.get("num_local_experts", 8))
            ]
            k = cfg.get("num_experts_per_tok", 2)
            y = moe_block(F, h, W[bm + "gate.weight"], experts, k, True)  # always renormalised
        elif family in ("qwen2_moe", "qwen3_moe", "olmoe") and is_sparse(cfg, family, i):
            experts = [
                swiglu(act, *(W[f"{m}experts.{e}.{n}_proj.weight"] for n in ("gate", "up", "down")))
                for e in range(cfg["num_experts"])
            ]
            k = cfg["num_experts_per_tok"]
            y = moe_block(F, h, W[m + "gate.weight"], experts, k, cfg.get("norm_topk_prob", False))
            if family == "qwen2_moe":
                s = m + "shared_expert."
                shared = swiglu(act, *(W[f"{s}{n}_proj.weight"] for n in ("gate", "up", "down")))(h)
                g = linear(h, W[m + "shared_expert_gate.weight"])
                y = y + (F(1) / (F(1) + np.exp(-g))) * shared
        else:
            y = swiglu(
                act,
                W[m + "gate_proj.weight"],
                W[m + "up_proj.weight"],
                W[m + "down_proj.weight"],
                W[m + "gate_proj.bias"] if mlp_bias else None,
                W[m + "up_proj.bias"] if mlp_bias else None,
                W[m + "down_proj.bias"] if mlp_bias else None,
            )(h)
        if gemma:
            y = norm(y, W[p + "post_feedforward_layernorm.weight"])
        x = residual + y
    x = norm(x, W["model.norm.weight"])
    head = W["model.embed_tokens.weight"] if tied else W["lm_head.weight"]
    logits = x @ head.T
    if gemma:
        cap = cfg.get("final_logit_softcapping", 30.0)
        if cap is not None:
            logits = logits / F(cap)
            logits = np.tanh(logits)
            logits = logits * F(cap)
    return logits


def is_sparse(cfg, family, layer):
    if family == "olmoe":
        return True
    mlp_only = cfg.get("mlp_only_layers") or []
    step = cfg.get("decoder_sparse_step", 1)
    return layer not in mlp_only and cfg["num_experts"] > 0 and (layer + 1) % step == 0


def forward_opt(cfg, W, ids, F):
    """OPTForCausalLM, pre-LayerNorm (do_layer_norm_before), learned positions at offset 2."""
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    hd = H // nh
    eps = 1e-5  # nn.LayerNorm default
    act = act_fn(F, cfg.get("activation_function", "relu"))
    d = "model.decoder."
    S = len(ids)
    attention_mask = np.ones(S, dtype=np.int64)
    position_ids = np.cumsum(attention_mask) * attention_mask - 1
    x = W[d + "embed_tokens.weight"][ids] + W[d + "embed_positions.weight"][position_ids + 2]
    for i in range(cfg["num_hidden_layers"]):
        p = f"{d}layers.{i}."
        a = p + "self_attn."
        residual = x
        n = p + "self_attn_layer_norm."
        h = layer_norm(F, x, W[n + "weight"], W[n + "bias"], eps)
        q = linear(h, W[a + "q_proj.weight"], W[a + "q_proj.bias"]) * F(hd ** -0.5)
        k = linear(h, W[a + "k_proj.weight"], W[a + "k_proj.bias"])
        v = linear(h, W[a + "v_proj.weight"], W[a + "v_proj.bias"])
        o = eager_attention(F, heads(q, nh, hd), heads(k, nh, hd), heads(v, nh, hd), 1.0)
        x = residual + linear(o, W[a + "out_proj.weight"], W[a + "out_proj.bias"])
        residual = x
        h = layer_norm(F, x, W[p + "final_layer_norm.weight"], W[p + "final_layer_norm.bias"], eps)
        h = act(linear(h, W[p + "fc1.weight"], W[p + "fc1.bias"]))
        x = residual + linear(h, W[p + "fc2.weight"], W[p + "fc2.bias"])
    x = layer_norm(F, x, W[d + "final_layer_norm.weight"], W[d + "final_layer_norm.bias"], eps)
    return x @ W[d + "embed_tokens.weight"].T  # tie_word_embeddings (PretrainedConfig default)


# --------------------------------------------------------------------------------------------
# RTN (GPTQ-convention asymmetric; lowbit's documented absmax symmetric), float32 arithmetic
# --------------------------------------------------------------------------------------------


def rtn(w: np.ndarray, bits: int, group: int | None, symmetric: bool, exact=False) -> np.ndarray:
    """Dequantized RTN weights.

    Default: float32 arithmetic throughout, as GPTQ's `Quantizer` on a float32 tensor
    (`scale = (xmax - xmin) / maxq` with xmax - xmin rounded to float32 first,
    `round(w / scale)` of the float32 quotient). `exact=True`: the same formulas with exact
    differences and quotients (float64), the scale rounded once to float32 — the arithmetic
    lowbit's core/quantizer.ts uses; the two differ by one ulp of some scales and by one code
    where the float32 quotient is an exact .5 tie.
    """
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    gs = cols if group is None else group
    A = np.float64 if exact else np.float32
    maxq = A(2**bits - 1)
    out = np.empty_like(w)
    for g0 in range(0, cols, gs):
        x = w[:, g0 : g0 + gs].astype(A)
        xmin = np.minimum(x.min(axis=1), A(0))
        xmax = np.maximum(x.max(axis=1), A(0))
        if symmetric:
            m = np.maximum(-xmin, xmax)
            scale = (m / A(2 ** (bits - 1) - 1)).astype(np.float32).astype(A)
            scale = np.where(scale == 0, A(1), scale).astype(A)
            zero = np.full_like(scale, A(2 ** (bits - 1)))
        else:
            both = (xmin == 0) & (xmax == 0)
            xmin = np.where(both, A(-1), xmin).astype(A)
            xmax = np.where(both, A(1), xmax).astype(A)
            scale = ((xmax - xmin) / maxq).astype(np.float32).astype(A)
            zero = np.round(-xmin / scale)
        q = np.clip(np.round(x / scale[:, None]) + zero[:, None], A(0), maxq)
        out[:, g0 : g0 + gs] = (scale[:, None] * (q - zero[:, None])).astype(np.float32)
        assert exact or (scale.dtype == np.float32 and q.dtype == np.float32)
    return out


QUANTIZED = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "w1", "w2", "w3",
)


def is_quantized_linear(name: str) -> bool:
    """q/k/v/o/gate/up/down weights, experts and shared experts too; not routers or gates."""
    parts = name.split(".")
    return parts[-1] == "weight" and parts[-2] in QUANTIZED


RTN_VARIANTS = {
    "channel_asym": (None, False),
    "g32_asym": (32, False),
    "channel_sym": (None, True),
    "g32_sym": (32, True),
}

# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


def common_llama(**kw):
    base = {
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "use_cache": True,
    }
    base.update(kw)
    return base


CASES: list[dict] = [
    {
        "name": "llama_bias",
        "family": "llama",
        "dtype": "F32",
        "special": ["<unk>", "<s>", "</s>"],
        "bos": "<s>", "eos": "</s>", "unk": "<unk>",
        "rtn": "layers.0.down",
        "config": common_llama(
            architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=80, hidden_size=48,
            intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=12, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling=None, attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
            pretraining_tp=1, bos_token_id=1, eos_token_id=2, torch_dtype="float32",
        ),
        "bites": {"biases": {"attention_bias": False, "mlp_bias": False}},
    },
    {
        "name": "llama3",
        "family": "llama",
        "dtype": "BF16",
        "special": ["<|begin_of_text|>", "<|end_of_text|>"],
        "bos": "<|begin_of_text|>", "eos": "<|end_of_text|>",
        "config": common_llama(
            architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=72, hidden_size=32,
            intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling={
                "factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                "original_max_position_embeddings": 64, "rope_type": "llama3",
            },
            attention_bias=False, mlp_bias=False, tie_word_embeddings=True, pretraining_tp=1,
            bos_token_id=0, eos_token_id=1, torch_dtype="bfloat16",
        ),
        "bites": {"llama3 rope_scaling": {"rope_scaling": None}},
    },
    {
        "name": "mistral",
        "family": "mistral",
        "dtype": "BF16",
        "special": ["<unk>", "<s>", "</s>"],
        "bos": "<s>", "eos": "</s>", "unk": "<unk>",
        "config": common_llama(
            architectures=["MistralForCausalLM"], model_type="mistral", vocab_size=72,
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=128, rms_norm_eps=1e-5,
            rope_theta=10000.0, sliding_window=5, tie_word_embeddings=False, bos_token_id=1,
            eos_token_id=2, torch_dtype="bfloat16",
        ),
        "bites": {"sliding_window": {"sliding_window": None}},
    },
    {
        "name": "qwen2",
        "family": "qwen2",
        "dtype": "F32",
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "special_at_end": True,
        "bos": "<|endoftext|>", "eos": "<|endoftext|>",
        "config": common_llama(
            architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=72, hidden_size=32,
            intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
            rope_scaling=None, use_sliding_window=True, sliding_window=6, max_window_layers=1,
            tie_word_embeddings=False, bos_token_id=69, eos_token_id=69, torch_dtype="float32",
        ),
        "bites": {"sliding_window (layer 1)": {"use_sliding_window": False}},
    },
    {
        "name": "qwen3",
        "family": "qwen3",
        "dtype": "BF16",
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "special_at_end": True,
        "bos": "<|endoftext|>", "eos": "<|endoftext|>",
        "config": common_llama(
            architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=72, hidden_size=32,
            intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
            rope_scaling=None, attention_bias=False, use_sliding_window=False, sliding_window=None,
            max_window_layers=2, tie_word_embeddings=True, bos_token_id=69, eos_token_id=69,
            torch_dtype="bfloat16",
        ),
        "bites": {},
    },
    {
        "name": "phi3",
        "family": "phi3",
        "dtype": "BF16",
        "special": ["<unk>", "<s>", "</s>"],
        "bos": "<s>", "eos": "</s>", "unk": "<unk>",
        "config": common_llama(
            architectures=["Phi3ForCausalLM"], model_type="phi3", vocab_size=72, hidden_size=64,
            intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128, original_max_position_embeddings=32,
            partial_rotary_factor=0.5, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling={
                "type": "longrope",
                "short_factor": [1.0, 1.25, 2.5, 4.0],
                "long_factor": [1.5, 3.0, 6.0, 12.0],
            },
            sliding_window=7, embd_pdrop=0.0, resid_pdrop=0.0, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=2, torch_dtype="bfloat16",
        ),
        "bites": {
            "sliding_window": {"sliding_window": None},
            "longrope (short factors, attention factor)": {"rope_scaling": None},
        },
    },
    {
        "name": "gemma2",
        "family": "gemma2",
        "dtype": "F32",
        "special": ["<pad>", "<eos>", "<bos>", "<unk>"],
        "bos": "<bos>", "eos": "<eos>", "unk": "<unk>", "pad": "<pad>",
        "config": {
            "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
            "attention_bias": False, "attention_dropout": 0.0, "attn_logit_softcapping": 3.0,
            "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": 1,
            "final_logit_softcapping": 5.0, "head_dim": 16, "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 32, "initializer_range": 0.02,
            "intermediate_size": 64, "max_position_embeddings": 128, "num_attention_heads": 4,
            "num_hidden_layers": 3, "num_key_value_heads": 2, "pad_token_id": 0,
            "query_pre_attn_scalar": 24, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "sliding_window": 4, "torch_dtype": "float32", "use_cache": True, "vocab_size": 72,
        },
        "bites": {
            "sliding_window (layers 0, 2)": {"sliding_window": 10**6},
            "attn_logit_softcapping": {"attn_logit_softcapping": None},
            "final_logit_softcapping": {"final_logit_softcapping": None},
        },
    },
    {
        "name": "opt",
        "family": "opt",
        "dtype": "F16",
        "special": ["<s>", "<pad>", "</s>", "<unk>"],
        "bos": "</s>", "eos": "</s>", "unk": "<unk>", "pad": "<pad>",
        "config": {
            "_remove_final_layer_norm": False, "activation_dropout": 0.0,
            "activation_function": "relu", "architectures": ["OPTForCausalLM"],
            "attention_dropout": 0.0, "bos_token_id": 2, "do_layer_norm_before": True,
            "dropout": 0.1, "enable_bias": True, "eos_token_id": 2, "ffn_dim": 64,
            "hidden_size": 32, "init_std": 0.02, "layer_norm_elementwise_affine": True,
            "layerdrop": 0.0, "max_position_embeddings": 32, "model_type": "opt",
            "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": 1, "prefix": "</s>",
            "torch_dtype": "float16", "use_cache": True, "vocab_size": 72,
            "word_embed_proj_dim": 32,
        },
        "bites": {},
    },
    {
        "name": "mixtral",
        "family": "mixtral",
        "dtype": "BF16",
        "sharded": True,
        "special": ["<unk>", "<s>", "</s>"],
        "bos": "<s>", "eos": "</s>", "unk": "<unk>",
        "rtn": "layers.0.experts.1.down",
        "config": common_llama(
            architectures=["MixtralForCausalLM"], model_type="mixtral", vocab_size=72,
            hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
            rope_theta=1000000.0, sliding_window=None, num_local_experts=4, num_experts_per_tok=2,
            output_router_logits=False, router_aux_loss_coef=0.02, router_jitter_noise=0.0,
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16",
        ),
        "bites": {},
    },
    {
        "name": "qwen2_moe",
        "family": "qwen2_moe",
        "dtype": "F32",
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "special_at_end": True,
        "bos": "<|endoftext|>", "eos": "<|endoftext|>",
        "rtn": "layers.0.shared.down",
        "config": common_llama(
            architectures=["Qwen2MoeForCausalLM"], model_type="qwen2_moe", vocab_size=72,
            hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6,
            rope_theta=1000000.0, rope_scaling=None, use_sliding_window=False,
            sliding_window=None, max_window_layers=3, decoder_sparse_step=1,
            moe_intermediate_size=16, shared_expert_intermediate_size=40, num_experts_per_tok=2,
            num_experts=4, norm_topk_prob=False, output_router_logits=False,
            router_aux_loss_coef=0.001, mlp_only_layers=[1], tie_word_embeddings=False,
            bos_token_id=69, eos_token_id=69, torch_dtype="float32",
        ),
        "bites": {},
    },
    {
        "name": "qwen3_moe",
        "family": "qwen3_moe",
        "dtype": "BF16",
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "special_at_end": True,
        "bos": "<|endoftext|>", "eos": "<|endoftext|>",
        "config": common_llama(
            architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe", vocab_size=72,
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-6,
            rope_theta=1000000.0, rope_scaling=None, attention_bias=False,
            use_sliding_window=False, sliding_window=None, max_window_layers=2,
            decoder_sparse_step=2, moe_intermediate_size=24, num_experts_per_tok=2,
            num_experts=4, norm_topk_prob=True, output_router_logits=False,
            router_aux_loss_coef=0.001, mlp_only_layers=[], tie_word_embeddings=False,
            bos_token_id=69, eos_token_id=69, torch_dtype="bfloat16",
        ),
        "bites": {},
    },
    {
        "name": "olmoe",
        "family": "olmoe",
        "dtype": "BF16",
        "special": ["|||IP_ADDRESS|||", "<|padding|>", "<|endoftext|>"],
        "bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": "<|padding|>",
        "config": common_llama(
            architectures=["OlmoeForCausalLM"], model_type="olmoe", vocab_size=72,
            hidden_size=32, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
            rope_theta=10000.0, rope_scaling=None, attention_bias=False, clip_qkv=0.9,
            num_experts=4, num_experts_per_tok=2, norm_topk_prob=False,
            output_router_logits=False, router_aux_loss_coef=0.01, tie_word_embeddings=False,
            bos_token_id=None, eos_token_id=2, pad_token_id=1, torch_dtype="bfloat16",
        ),
        "bites": {"clip_qkv": {"clip_qkv": None}},
    },
]

RTN_CASES = ("llama_bias", "mixtral", "qwen2_moe")

# --------------------------------------------------------------------------------------------
# Random checkpoints
# --------------------------------------------------------------------------------------------


def tensor_shapes(family: str, cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint, by Hugging Face name (what save_pretrained writes)."""
    H = cfg["hidden_size"]
    V = cfg["vocab_size"]
    L = cfg["num_hidden_layers"]
    nh = cfg["num_attention_heads"]
    shapes: dict[str, tuple[int, ...]] = {}
    if family == "opt":
        F_ = cfg["ffn_dim"]
        d = "model.decoder."
        shapes[d + "embed_tokens.weight"] = (V, H)
        shapes[d + "embed_positions.weight"] = (cfg["max_position_embeddings"] + 2, H)
        shapes[d + "final_layer_norm.weight"] = (H,)
        shapes[d + "final_layer_norm.bias"] = (H,)
        for i in range(L):
            p = f"{d}layers.{i}."
            for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
                shapes[f"{p}self_attn.{n}.weight"] = (H, H)
                shapes[f"{p}self_attn.{n}.bias"] = (H,)
            for n in ("self_attn_layer_norm", "final_layer_norm"):
                shapes[f"{p}{n}.weight"] = (H,)
                shapes[f"{p}{n}.bias"] = (H,)
            shapes[f"{p}fc1.weight"] = (F_, H)
            shapes[f"{p}fc1.bias"] = (F_,)
            shapes[f"{p}fc2.weight"] = (H, F_)
            shapes[f"{p}fc2.bias"] = (H,)
        return shapes
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    I = cfg["intermediate_size"]
    shapes["model.embed_tokens.weight"] = (V, H)
    shapes["model.norm.weight"] = (H,)
    if not cfg.get("tie_word_embeddings", family == "gemma2"):
        shapes["lm_head.weight"] = (V, H)
    for i in range(L):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        shapes[p + "input_layernorm.weight"] = (H,)
        shapes[p + "post_attention_layernorm.weight"] = (H,)
        if family == "gemma2":
            shapes[p + "pre_feedforward_layernorm.weight"] = (H,)
            shapes[p + "post_feedforward_layernorm.weight"] = (H,)
        if family == "phi3":
            shapes[a + "qkv_proj.weight"] = ((nh + 2 * nkv) * hd, H)
        else:
            shapes[a + "q_proj.weight"] = (nh * hd, H)
            shapes[a + "k_proj.weight"] = (nkv * hd, H)
            shapes[a + "v_proj.weight"] = (nkv * hd, H)
        shapes[a + "o_proj.weight"] = (H, nh * hd)
        bias = cfg.get("attention_bias", False) or family in ("qwen2", "qwen2_moe")
        if bias:
            shapes[a + "q_proj.bias"] = (nh * hd,)
            shapes[a + "k_proj.bias"] = (nkv * hd,)
            shapes[a + "v_proj.bias"] = (nkv * hd,)
        if cfg.get("attention_bias", False):
            shapes[a + "o_proj.bias"] = (H,)
        if family in ("qwen3", "qwen3_moe"):
            shapes[a + "q_norm.weight"] = (hd,)
            shapes[a + "k_norm.weight"] = (hd,)
        if family == "olmoe":
            shapes[a + "q_norm.weight"] = (nh * hd,)
            shapes[a + "k_norm.weight"] = (nkv * hd,)
        m = p + "mlp."
        if family == "phi3":
            shapes[m + "gate_up_proj.weight"] = (2 * I, H)
            shapes[m + "down_proj.weight"] = (H, I)
        elif family == "mixtral":
            bm = p + "block_sparse_moe."
            shapes[bm + "gate.weight"] = (cfg["num_local_experts"], H)
            for e in range(cfg["num_local_experts"]):
                shapes[f"{bm}experts.{e}.w1.weight"] = (I, H)
                shapes[f"{bm}experts.{e}.w3.weight"] = (I, H)
                shapes[f"{bm}experts.{e}.w2.weight"] = (H, I)
        elif family in ("qwen2_moe", "qwen3_moe", "olmoe") and is_sparse(cfg, family, i):
            E = cfg["num_experts"]
            mi = I if family == "olmoe" else cfg["moe_intermediate_size"]
            shapes[m + "gate.weight"] = (E, H)
            for e in range(E):
                shapes[f"{m}experts.{e}.gate_proj.weight"] = (mi, H)
                shapes[f"{m}experts.{e}.up_proj.weight"] = (mi, H)
                shapes[f"{m}experts.{e}.down_proj.weight"] = (H, mi)
            if family == "qwen2_moe":
                si = cfg["shared_expert_intermediate_size"]
                shapes[m + "shared_expert.gate_proj.weight"] = (si, H)
                shapes[m + "shared_expert.up_proj.weight"] = (si, H)
                shapes[m + "shared_expert.down_proj.weight"] = (H, si)
                shapes[m + "shared_expert_gate.weight"] = (1, H)
        else:
            shapes[m + "gate_proj.weight"] = (I, H)
            shapes[m + "up_proj.weight"] = (I, H)
            shapes[m + "down_proj.weight"] = (H, I)
            if cfg.get("mlp_bias", False):
                shapes[m + "gate_proj.bias"] = (I,)
                shapes[m + "up_proj.bias"] = (I,)
                shapes[m + "down_proj.bias"] = (H,)
    return shapes


def random_tensor(rng, name: str, shape, family: str, tied: bool) -> np.ndarray:
    """Random values of a realistic scale for the tensor's role."""
    if name.endswith("norm.weight") or name.endswith("layer_norm.weight"):
        if family == "gemma2":
            return (0.3 * rng.standard_normal(shape)).astype(np.float32)  # (1 + w) deltas
        return (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith(".bias"):
        return (0.2 * rng.standard_normal(shape)).astype(np.float32)
    if "embed_tokens" in name or "embed_positions" in name:
        # A tied table is also the classifier: smaller, so the logits stay O(1..10).
        std = 0.3 if tied else 1.0
        return (std * rng.standard_normal(shape)).astype(np.float32)
    fan_in = shape[-1]
    gain = 1.6 if family == "gemma2" else 1.0
    return (gain * rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Tokenizer files
# --------------------------------------------------------------------------------------------


def vocabulary(case) -> list[str]:
    V = case["config"]["vocab_size"]
    special = case["special"]
    words = [f"w{i}" for i in range(V - len(special))]
    return words + special if case.get("special_at_end") else special + words


def tokenizer_files(case) -> tuple[dict, dict]:
    vocab = vocabulary(case)
    special = set(case["special"])
    added = [
        {
            "id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True,
        }
        for i, t in enumerate(vocab) if t in special
    ]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "WordLevel",
            "vocab": {t: i for i, t in enumerate(vocab)},
            "unk_token": case.get("unk", case["eos"]),
        },
    }
    tc = {
        "added_tokens_decoder": {
            str(a["id"]): {
                k: a[k]
                for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
            }
            for a in added
        },
        "bos_token": case["bos"],
        "clean_up_tokenization_spaces": False,
        "eos_token": case["eos"],
        "model_max_length": case["config"]["max_position_embeddings"],
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    if "unk" in case:
        tc["unk_token"] = case["unk"]
    if "pad" in case:
        tc["pad_token"] = case["pad"]
    return tok, tc


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def dumps(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def site_of(family: str, name: str) -> str | None:
    """lowbit's site name of a quantized linear (`layers.0.q`, `layers.1.experts.2.down`, ...)."""
    parts = name.split(".")
    layer = parts[2]
    kind = {
        "q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate",
        "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up", "w2": "down",
    }[parts[-2]]
    if "experts" in parts:
        e = parts[parts.index("experts") + 1]
        return f"layers.{layer}.experts.{e}.{kind}"
    if "shared_expert" in parts:
        return f"layers.{layer}.shared.{kind}"
    return f"layers.{layer}.{kind}"


def generate_case(case, rng) -> dict[str, bytes]:
    family = case["family"]
    cfg = case["config"]
    dtype = case["dtype"]
    out: dict[str, bytes] = {}
    config = dict(cfg)
    config["transformers_version"] = "4.51.3"
    out["config.json"] = dumps(dict(sorted(config.items())))

    shapes = tensor_shapes(family, cfg)
    tied = family == "opt" or cfg.get("tie_word_embeddings", family == "gemma2")
    W = {n: stored(random_tensor(rng, n, s, family, tied), dtype) for n, s in shapes.items()}
    if case.get("sharded"):
        names = sorted(W)
        halves = [names[: len(names) // 2], names[len(names) // 2 :]]
        weight_map = {}
        total = 0
        for k, part in enumerate(halves):
            fname = f"model-0000{k + 1}-of-00002.safetensors"
            out[fname] = safetensors_file({n: W[n] for n in part}, dtype)
            for n in part:
                weight_map[n] = fname
                total += int(np.prod(W[n].shape)) * (4 if dtype == "F32" else 2)
        out["model.safetensors.index.json"] = dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        )
    else:
        out["model.safetensors"] = safetensors_file(W, dtype)

    tok, tc = tokenizer_files(case)
    out["tokenizer.json"] = dumps(tok)
    out["tokenizer_config.json"] = dumps(tc)

    vocab = vocabulary(case)
    words = [i for i, t in enumerate(vocab) if t not in set(case["special"])]
    ids = [int(i) for i in rng.choice(words, size=T, replace=True)]
    text = " ".join(vocab[i] for i in ids)

    Routing.min_gap = math.inf
    logits32 = forward(family, cfg, W, ids, np.float32)
    gap32 = Routing.min_gap
    assert logits32.dtype == np.float32, logits32.dtype
    logits64 = forward(family, cfg, W, ids, np.float64)
    assert logits64.dtype == np.float64
    max_logit = float(np.max(np.abs(logits64)))
    f32_vs_f64 = float(np.max(np.abs(logits32.astype(np.float64) - logits64)))

    bites = {}
    for feature, change in case["bites"].items():
        alt = copy.deepcopy(cfg)
        alt.update(change)
        d = float(np.max(np.abs(forward(family, alt, W, ids, np.float64) - logits64)))
        bites[feature] = d / max_logit
        if d / max_logit < 1e-2:
            raise SystemExit(
                f"{case['name']}: {feature} does not bite (rel. change {d / max_logit:.2e})"
            )

    expected = {
        "case": case["name"],
        "family": family,
        "dtype": dtype,
        "tokens": ids,
        "text": text,
        "shape": [T, cfg["vocab_size"]],
        "logits_f32": "expected_logits.f32",
        "logits_f64": "expected_logits_f64.f64",
        "max_abs_logit": max_logit,
        "max_abs_f32_vs_f64": f32_vs_f64,
        "rel_f32_vs_f64": f32_vs_f64 / max_logit,
        "feature_bites": bites,
    }
    if gap32 != math.inf:
        expected["min_router_topk_gap"] = gap32
        if gap32 < MIN_ROUTER_GAP:
            raise SystemExit(f"{case['name']}: router top-k gap {gap32:.1e} < {MIN_ROUTER_GAP}")
    out["expected_logits.f32"] = logits32.astype("<f4").tobytes()
    out["expected_logits_f64.f64"] = logits64.astype("<f8").tobytes()

    if case["name"] in RTN_CASES:
        rtn_info = {}
        raw_site = case["rtn"]
        raw_name = next(n for n in W if is_quantized_linear(n) and site_of(family, n) == raw_site)
        for variant, (group, sym) in RTN_VARIANTS.items():
            info = {
                "spec": {
                    "wBits": 4, "aBits": 16,
                    "granularity": "channel" if group is None else "group",
                    **({"groupSize": group} if group is not None else {}),
                    "symmetric": sym,
                },
            }
            for arith in ("float32", "exact"):
                Wq = dict(W)
                hashes = {}
                for n in sorted(W):
                    if is_quantized_linear(n):
                        Wq[n] = rtn(W[n], 4, group, sym, exact=arith == "exact")
                        digest = hashlib.sha256(Wq[n].astype("<f4").tobytes()).hexdigest()
                        hashes[site_of(family, n)] = digest
                Routing.min_gap = math.inf
                lq = forward(family, cfg, Wq, ids, np.float32)
                lq64 = forward(family, cfg, Wq, ids, np.float64)
                if Routing.min_gap < MIN_ROUTER_GAP:
                    raise SystemExit(
                        f"{case['name']} {variant}: router top-k gap {Routing.min_gap:.1e}"
                    )
                tag = "" if arith == "float32" else "_exact"
                out[f"rtn_{variant}{tag}_logits.f32"] = lq.astype("<f4").tobytes()
                entry = {
                    "logits_f32": f"rtn_{variant}{tag}_logits.f32",
                    "max_abs_logit": float(np.max(np.abs(lq64))),
                    "max_abs_f32_vs_f64": float(np.max(np.abs(lq.astype(np.float64) - lq64))),
                    "rel_change_vs_float": float(np.max(np.abs(lq64 - logits64)) / max_logit),
                }
                if Routing.min_gap != math.inf:
                    entry["min_router_topk_gap"] = Routing.min_gap
                if arith == "float32":
                    out[f"rtn_{variant}_{raw_site}.f32"] = Wq[raw_name].astype("<f4").tobytes()
                    entry["raw"] = {
                        "site": raw_site,
                        "tensor": raw_name,
                        "file": f"rtn_{variant}_{raw_site}.f32",
                        "shape": list(W[raw_name].shape),
                    }
                entry["sha256"] = hashes
                info[arith] = entry
            h32, hx = info["float32"]["sha256"], info["exact"]["sha256"]
            differ = [k for k in h32 if h32[k] != hx[k]]
            info["linears_differing_float32_vs_exact"] = differ
            rtn_info[variant] = info
        expected["rtn"] = rtn_info
    out["expected.json"] = dumps(expected)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the files on disk")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    summary = []
    mismatched = []
    for case in CASES:
        files = generate_case(case, rng)
        d = ROOT / case["name"]
        if args.check:
            on_disk = {p.name for p in d.iterdir()} if d.is_dir() else set()
            for name, data in files.items():
                p = d / name
                if not p.exists() or p.read_bytes() != data:
                    mismatched.append(str(p))
            mismatched += [str(d / n) for n in on_disk - set(files)]
        else:
            if d.is_dir():
                for p in d.iterdir():
                    p.unlink()
            d.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (d / name).write_bytes(data)
        e = json.loads(files["expected.json"])
        summary.append(e)
        bites = ", ".join(f"{k} {v:.2g}" for k, v in e["feature_bites"].items())
        print(
            f"{e['case']:11s} {e['dtype']:4s} max|logit| {e['max_abs_logit']:7.3f}  "
            f"|f32-f64| {e['max_abs_f32_vs_f64']:.2e} (rel {e['rel_f32_vs_f64']:.1e})"
            + (f"  router gap {e['min_router_topk_gap']:.1e}" if "min_router_topk_gap" in e else "")
            + (f"  bites: {bites}" if bites else "")
        )
        for v, info in e.get("rtn", {}).items():
            r = info["float32"]
            print(
                f"    rtn {v:12s} |f32-f64| {r['max_abs_f32_vs_f64']:.2e}  change vs float "
                f"{r['rel_change_vs_float']:.2f}"
                + (f"  router gap {r['min_router_topk_gap']:.1e}" if "min_router_topk_gap" in r
                   else "")
                + f"  linears where float32 and exact arithmetic differ: "
                f"{len(info['linears_differing_float32_vs_exact'])}/{len(r['sha256'])}"
            )
    if args.check:
        if mismatched:
            print("differs from the committed files:\n  " + "\n  ".join(mismatched))
            return 1
        print("committed golden files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
