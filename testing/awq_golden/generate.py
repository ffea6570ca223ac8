#!/usr/bin/env python3
"""Independent numpy reference of AWQ's scale search on one tiny Llama block.

Written from METHODS_NEXT.md section 1 (the AWQ quantizer of 1.1, the groups of 1.3 and the search
of 1.4), not from lowbit's TypeScript. A random one-block Llama (MHA, so all four groups run) and
random block inputs with a few loud channels are generated with a fixed seed; for every group and
both scale rules (llm-awq's x^r and AutoAWQ's duo scaling) the script computes the loss of each of
the 20 grid points, the chosen grid index and the chosen scales, in float32 as the references'
arithmetic on float32 tensors would, and writes everything to awq_block.json.

methods/awq_golden_test.ts runs lowbit's search on the same weights and inputs and compares.

    python3 testing/awq_golden/generate.py          # rewrites testing/awq_golden/awq_block.json
    python3 testing/awq_golden/generate.py --check  # fails if the committed file differs
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np

F = np.float32
OUT = Path(__file__).with_name("awq_block.json")

DIM, HEADS, HEAD_DIM, HIDDEN = 16, 4, 4, 24
EPS, THETA = 1e-5, 10000.0
WINDOWS, T = 2, 8
BITS, GROUP, GRID = 4, 8, 20
SEED = 7
# Grid points whose losses are this close (relative) would make the argmin depend on float32
# rounding order; the seed was chosen so that no chosen point is that close to another.
MIN_MARGIN = 1e-3


def rms_norm(x, w):
    var = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
    return (x / np.sqrt(var + EPS).astype(F) * w).astype(F)


def rope(x):
    """rotate_half RoPE over [T, heads, head_dim], positions 0..T-1."""
    half = HEAD_DIM // 2
    inv = (1.0 / (F(THETA) ** (np.arange(half, dtype=F) * F(2) / F(HEAD_DIM)))).astype(F)
    ang = (np.arange(x.shape[0], dtype=F)[:, None] * inv[None, :]).astype(F)
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1).astype(F)[:, None, :]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1).astype(F)[:, None, :]
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * cos + rot * sin).astype(F)


def attention(xn, wq, wk, wv, wo):
    """The whole self_attn module: o(softmax(rope(q) rope(k)^T / sqrt(hd)) v), causal, MHA."""
    n = xn.shape[0]
    q = rope((xn @ wq.T).reshape(n, HEADS, HEAD_DIM))
    k = rope((xn @ wk.T).reshape(n, HEADS, HEAD_DIM))
    v = (xn @ wv.T).reshape(n, HEADS, HEAD_DIM)
    scores = np.einsum("thd,shd->hts", q, k).astype(F) / F(np.sqrt(HEAD_DIM))
    mask = np.triu(np.ones((n, n), dtype=bool), 1)
    scores = np.where(mask[None], -np.inf, scores)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).astype(F)
    att = np.einsum("hts,shd->thd", p, v).reshape(n, HEADS * HEAD_DIM).astype(F)
    return att, (att @ wo.T).astype(F)


def mlp(x, wg, wu, wd):
    g = (x @ wg.T).astype(F)
    u = (x @ wu.T).astype(F)
    a = (g / (F(1) + np.exp(-g)) * u).astype(F)
    return a, (a @ wd.T).astype(F)


def quantize(w):
    """Section 1.1: per group of GROUP columns, min-max without zero forced into the range."""
    shape = w.shape
    g = w.reshape(-1, GROUP).astype(F)
    maxq = F(2**BITS - 1)
    mx = g.max(axis=1, keepdims=True)
    mn = g.min(axis=1, keepdims=True)
    scale = (np.maximum(mx - mn, F(1e-5)) / maxq).astype(F)
    zero = np.clip(-np.round(mn / scale), 0, maxq).astype(F)
    q = np.clip(np.round(g / scale) + zero, 0, maxq)
    return ((q - zero) * scale).astype(F).reshape(shape)


def weight_mean(ws):
    """AutoAWQ's w_mean: |W| / (group amax + 1e-6), averaged over the stacked rows."""
    w = np.concatenate(ws, axis=0).astype(F)
    g = np.abs(w.reshape(-1, GROUP))
    s = (g / (g.max(axis=1, keepdims=True) + F(1e-6))).astype(F).reshape(w.shape)
    return s.astype(np.float64).mean(axis=0).astype(F)


def scales_for(xbar, wbar, i, duo):
    if duo:
        r = F(i / GRID)
        s = (xbar ** r / (wbar ** (F(1) - r) + F(1e-4))).astype(F)
    else:
        s = (xbar ** (i / GRID)).astype(F)
    s = np.maximum(s, F(1e-4)).astype(F)
    s = (s / np.sqrt(s.max() * s.min())).astype(F)
    if duo:
        s[~np.isfinite(s)] = 1
    return s


def search(linears, x, loss, duo):
    xbar = np.abs(x.reshape(-1, x.shape[-1])).astype(np.float64).mean(axis=0).astype(F)
    wbar = weight_mean(linears)
    losses, best, best_loss, best_s = [], -1, np.inf, None
    for i in range(GRID):
        s = scales_for(xbar, wbar, i, duo)
        trials = [(quantize((w * s[None, :]).astype(F)) / s[None, :]).astype(F) for w in linears]
        val = loss(trials)
        losses.append(val)
        if val < best_loss:
            best, best_loss, best_s = i, val, s
    others = [v for j, v in enumerate(losses) if j != best]
    margin = (min(others) - best_loss) / best_loss
    return {"index": best, "losses": losses, "scales": best_s, "margin": margin}


def mse(a, b):
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def f32b64(a):
    """Little-endian float32 values, base64-encoded (exact and compact)."""
    return base64.b64encode(np.asarray(a, dtype="<f4").reshape(-1).tobytes()).decode()


def build():
    rng = np.random.default_rng(SEED)
    w = {
        "attnNorm": (1 + 0.1 * rng.standard_normal(DIM)).astype(F),
        "mlpNorm": (1 + 0.1 * rng.standard_normal(DIM)).astype(F),
        "q": (rng.standard_normal((DIM, DIM)) / 4).astype(F),
        "k": (rng.standard_normal((DIM, DIM)) / 4).astype(F),
        "v": (rng.standard_normal((DIM, DIM)) / 4).astype(F),
        "o": (rng.standard_normal((DIM, DIM)) / 4).astype(F),
        "gate": (rng.standard_normal((HIDDEN, DIM)) / 4).astype(F),
        "up": (rng.standard_normal((HIDDEN, DIM)) / 4).astype(F),
        "down": (rng.standard_normal((DIM, HIDDEN)) / 5).astype(F),
    }
    loud = np.ones(DIM, dtype=F)
    loud[[2, 9, 13]] = [8, 5, 12]
    xs = [(rng.standard_normal((T, DIM)) * loud).astype(F) for _ in range(WINDOWS)]

    # Captures of the full-precision block.
    cap = {"qkv": [], "o": [], "gateup": [], "down": [], "attn": [], "mlp": []}
    for x in xs:
        xn = rms_norm(x, w["attnNorm"])
        att, y = attention(xn, w["q"], w["k"], w["v"], w["o"])
        h = (x + y).astype(F)
        hn = rms_norm(h, w["mlpNorm"])
        a, m = mlp(hn, w["gate"], w["up"], w["down"])
        for key, val in (("qkv", xn), ("o", att), ("gateup", hn), ("down", a), ("attn", y), ("mlp", m)):
            cap[key].append(val)

    def attn_loss(t):
        outs = [attention(xn, t[0], t[1], t[2], w["o"])[1] for xn in cap["qkv"]]
        return mse(np.stack(cap["attn"]), np.stack(outs))

    def linear_loss(site, name):
        def f(t):
            ref = [x @ w[name].T for x in cap[site]]
            out = [x @ t[0].T for x in cap[site]]
            return mse(np.stack(ref).astype(F), np.stack(out).astype(F))

        return f

    def mlp_loss(t):
        outs = [mlp(hn, t[0], t[1], w["down"])[1] for hn in cap["gateup"]]
        return mse(np.stack(cap["mlp"]), np.stack(outs))

    groups = [
        ("qkv", ["q", "k", "v"], attn_loss),
        ("o", ["o"], linear_loss("o", "o")),
        ("gateup", ["gate", "up"], mlp_loss),
        ("down", ["down"], linear_loss("down", "down")),
    ]
    expected = {}
    for duo in (False, True):
        rule = "duo" if duo else "llm-awq"
        expected[rule] = {}
        for gid, names, loss in groups:
            r = search([w[n] for n in names], np.stack(cap[gid]), loss, duo)
            if r["margin"] < MIN_MARGIN:
                raise SystemExit(f"{rule} {gid}: margin {r['margin']:.2e} below {MIN_MARGIN}")
            expected[rule][gid] = {
                "index": r["index"],
                "ratio": r["index"] / GRID,
                "losses": r["losses"],
                "scales": f32b64(r["scales"]),
                "margin": r["margin"],
            }
    return {
        "about": "numpy reference of AWQ's scale search on one Llama block; see generate.py",
        "config": {
            "dim": DIM,
            "nHeads": HEADS,
            "headDim": HEAD_DIM,
            "hiddenDim": HIDDEN,
            "normEps": EPS,
            "ropeTheta": THETA,
            "ropeStyle": "half",
            "bits": BITS,
            "groupSize": GROUP,
            "grid": GRID,
            "seed": SEED,
        },
        "encoding": "float32 arrays are little-endian bytes in base64",
        "weights": {k: f32b64(v) for k, v in w.items()},
        "inputs": [f32b64(x) for x in xs],
        "tokens": T,
        "expected": expected,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = json.dumps(build(), indent=2) + "\n"
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT} differs from a fresh generation", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
