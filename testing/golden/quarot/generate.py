#!/usr/bin/env python3
"""Golden data for QuaRot's rotation (lowbit methods/quarot.ts), numpy only.

Written from METHODS_NEXT.md §2.1-2.3 (QuaRot's fuse_layer_norms, rotate_model and its extra
Hadamards), not from lowbit's TypeScript. A tiny random Qwen2-style decoder (GQA, q/k/v biases,
tied classifier, RMSNorm eps 1e-6, rotate-half RoPE, SwiGLU) whose every transform size is a power
of two, so every Hadamard here is a Sylvester matrix built by Kronecker products (no tables):

  M_n = H_n / sqrt(n),  H_1 = [1],  H_2n = [[H_n, H_n], [H_n, -H_n]]   (symmetric)

The script draws the sign vector eps of the residual rotation Q = diag(eps) M_d^T itself, and
writes, under testing/golden/quarot/:

  model.json         config, tokens, eps, tensor names and shapes (in file order)
  weights.f32        the original tensors, float32 little-endian, concatenated in that order
  rotated.f64        the expected rotated tensors (float64; norms are ones and not stored)
  logits.f64         the original model's float64 logits [T][vocab]

Expected rotation (float64, from the float32 originals):
  gamma folded:  W_qkv <- W diag(g_attn), W_gateup <- W diag(g_mlp), lm_head <- E diag(g_final)
                 (the tied lm_head becomes its own matrix); norms -> ones; eps kept
  residual:      E <- E Q, lm_head <- lm_head Q, q/k/v/gate/up <- W Q, o/down <- Q^T W
                 (q/k/v biases unchanged)
  down:          W_down <- W_down M_I^T, online before down  x <- M_I x
  v/o:           W_v <- (I_kv (x) M_hd) W_v, b_v <- (I_kv (x) M_hd) b_v, W_o <- W_o M_(h*hd)^T,
                 online before o  x <- (M_h (x) I_hd) x

It also runs both models through an independent float64 forward pass (the rotated one with its
online transforms) and asserts that the logits agree to 1e-9 of max |logit| (METHODS_NEXT.md §5.4).

    python3 testing/golden/quarot/generate.py          # rewrites the files
    python3 testing/golden/quarot/generate.py --check  # fails if a committed file differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
SEED = 20260101
CFG = {
    "dim": 16,
    "hiddenDim": 32,
    "nLayers": 2,
    "nHeads": 4,
    "nKvHeads": 2,
    "headDim": 4,
    "vocabSize": 24,
    "maxSeqLen": 32,
    "normEps": 1e-6,
    "ropeTheta": 10000.0,
    "ropeStyle": "half",
    "tiedEmbeddings": True,
    "qkvBias": True,
}
T = 12


def sylvester(n: int) -> np.ndarray:
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    assert h.shape[0] == n
    return h


def m(n: int) -> np.ndarray:
    return sylvester(n) / np.sqrt(n)


def make_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    c = CFG
    d, hid, h, kv, hd, v = (c["dim"], c["hiddenDim"], c["nHeads"], c["nKvHeads"], c["headDim"],
                            c["vocabSize"])

    def lin(o: int, i: int) -> np.ndarray:
        return rng.uniform(-1, 1, (o, i)).astype(np.float32) / np.float32(np.sqrt(i))

    def vec(n: int, a: float) -> np.ndarray:
        return rng.uniform(-a, a, n).astype(np.float32)

    w: dict[str, np.ndarray] = {"embed": rng.uniform(-1, 1, (v, d)).astype(np.float32)}
    w["norm"] = (1 + vec(d, 0.3)).astype(np.float32)
    for layer in range(c["nLayers"]):
        p = f"layers.{layer}."
        w[p + "attn_norm"] = (1 + vec(d, 0.3)).astype(np.float32)
        w[p + "q"] = lin(h * hd, d)
        w[p + "k"] = lin(kv * hd, d)
        w[p + "v"] = lin(kv * hd, d)
        w[p + "o"] = lin(d, h * hd)
        w[p + "q_bias"] = vec(h * hd, 0.3)
        w[p + "k_bias"] = vec(kv * hd, 0.3)
        w[p + "v_bias"] = vec(kv * hd, 0.3)
        w[p + "mlp_norm"] = (1 + vec(d, 0.3)).astype(np.float32)
        w[p + "gate"] = lin(hid, d)
        w[p + "up"] = lin(hid, d)
        w[p + "down"] = lin(d, hid)
    return w


def rotate(w: dict[str, np.ndarray], eps: np.ndarray) -> dict[str, np.ndarray]:
    c = CFG
    d, hid, h, kv, hd = c["dim"], c["hiddenDim"], c["nHeads"], c["nKvHeads"], c["headDim"]
    f = {k: x.astype(np.float64) for k, x in w.items()}
    q = np.diag(eps) @ m(d).T
    out: dict[str, np.ndarray] = {"embed": f["embed"] @ q, "lm_head": (f["embed"] * f["norm"]) @ q}
    head_wise = np.kron(np.eye(kv), m(hd))
    for layer in range(c["nLayers"]):
        p = f"layers.{layer}."
        ga, gm = f[p + "attn_norm"], f[p + "mlp_norm"]
        out[p + "q"] = (f[p + "q"] * ga) @ q
        out[p + "k"] = (f[p + "k"] * ga) @ q
        out[p + "v"] = head_wise @ ((f[p + "v"] * ga) @ q)
        out[p + "o"] = (q.T @ f[p + "o"]) @ m(h * hd).T
        out[p + "q_bias"] = f[p + "q_bias"]
        out[p + "k_bias"] = f[p + "k_bias"]
        out[p + "v_bias"] = head_wise @ f[p + "v_bias"]
        out[p + "gate"] = (f[p + "gate"] * gm) @ q
        out[p + "up"] = (f[p + "up"] * gm) @ q
        out[p + "down"] = (q.T @ f[p + "down"]) @ m(hid).T
    return out


def rmsnorm(x: np.ndarray, g: np.ndarray | None) -> np.ndarray:
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + CFG["normEps"])
    return y if g is None else y * g


def rope(x: np.ndarray) -> np.ndarray:
    """x: [T][heads][hd], rotate-half pairs (i, i + hd/2) at positions 0..T-1."""
    hd = x.shape[-1]
    half = hd // 2
    inv = CFG["ropeTheta"] ** (-np.arange(half) * 2.0 / hd)
    ang = np.arange(x.shape[0])[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def forward(w: dict[str, np.ndarray], tokens: list[int], rotated: bool) -> np.ndarray:
    c = CFG
    h, kv, hd, hid = c["nHeads"], c["nKvHeads"], c["headDim"], c["hiddenDim"]
    f = {k: x.astype(np.float64) for k, x in w.items()}
    x = f["embed"][tokens]
    n = len(tokens)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for layer in range(c["nLayers"]):
        p = f"layers.{layer}."
        a = rmsnorm(x, None if rotated else f[p + "attn_norm"])
        qs = rope((a @ f[p + "q"].T + f[p + "q_bias"]).reshape(n, h, hd))
        ks = rope((a @ f[p + "k"].T + f[p + "k_bias"]).reshape(n, kv, hd))
        vs = (a @ f[p + "v"].T + f[p + "v_bias"]).reshape(n, kv, hd)
        att = np.zeros((n, h, hd))
        for head in range(h):
            g = head // (h // kv)
            s = qs[:, head, :] @ ks[:, g, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            att[:, head, :] = (s / s.sum(axis=-1, keepdims=True)) @ vs[:, g, :]
        att = att.reshape(n, h * hd)
        if rotated:
            att = att @ np.kron(m(h), np.eye(hd)).T
        x = x + att @ f[p + "o"].T
        u = rmsnorm(x, None if rotated else f[p + "mlp_norm"])
        gate = u @ f[p + "gate"].T
        z = gate / (1 + np.exp(-gate)) * (u @ f[p + "up"].T)
        if rotated:
            z = z @ m(hid).T
        x = x + z @ f[p + "down"].T
    head = f["lm_head"] if rotated else f["embed"]
    return rmsnorm(x, None if rotated else f["norm"]) @ head.T


def build() -> dict[str, bytes]:
    rng = np.random.default_rng(SEED)
    w = make_weights(rng)
    eps = rng.integers(0, 2, CFG["dim"]) * 2 - 1
    tokens = [int(t) for t in rng.integers(0, CFG["vocabSize"], T)]
    rot = rotate(w, eps.astype(np.float64))
    ref = forward(w, tokens, rotated=False)
    got = forward(rot, tokens, rotated=True)
    gap = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
    assert gap <= 1e-9, f"rotated float64 forward differs: {gap}"
    names = list(w)
    rnames = list(rot)
    meta = {
        "config": CFG,
        "tokens": tokens,
        "eps": [int(e) for e in eps],
        "tensors": [{"name": k, "shape": list(w[k].shape)} for k in names],
        "rotated": [{"name": k, "shape": list(rot[k].shape)} for k in rnames],
        "float64_rotation_gap": gap,
    }
    return {
        "model.json": (json.dumps(meta, indent=1) + "\n").encode(),
        "weights.f32": b"".join(w[k].astype("<f4").tobytes() for k in names),
        "rotated.f64": b"".join(rot[k].astype("<f8").tobytes() for k in rnames),
        "logits.f64": ref.astype("<f8").tobytes(),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    files = build()
    bad = 0
    for name, data in files.items():
        path = ROOT / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                print(f"differs: {path}")
                bad += 1
        else:
            path.write_bytes(data)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
