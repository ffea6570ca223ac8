"""GPTQ on one linear layer in NumPy float64 (OpenBLAS): the baseline of bench/gptq_numpy.ts.

Reads X [tokens][n] and W [rows][n] (float32 .npy) from the directory given as argv[1], and
prints one JSON line: seconds of the Hessian, the inverse-factor preparation and the sweep, and
the codes (uint8 .npy written beside the inputs). Follows IST-DASLab/gptq gptq.py fasterquant:
H = 2/N sum x x^T; dead columns; damping 0.01 * mean(diag); cholesky -> cholesky_inverse ->
cholesky(upper) (LAPACK potrf, potri, potrf through SciPy, as torch runs them); lazy batches of 128 columns; asymmetric min-max groups of `group` columns whose
parameters come from the columns as they stand when the group starts.
"""

import json
import sys
import time

import numpy as np

try:
    from scipy.linalg import lapack
except ImportError:
    lapack = None


def main() -> None:
    d = sys.argv[1]
    bits, group, block = int(sys.argv[2]), int(sys.argv[3]), 128
    x = np.load(f"{d}/x.npy", mmap_mode="r")
    w = np.load(f"{d}/w.npy").astype(np.float64)
    tokens, n = x.shape
    rows = w.shape[0]
    maxq = 2**bits - 1

    t0 = time.perf_counter()
    h = np.zeros((n, n))
    for s in range(0, tokens, 8192):
        xc = np.asarray(x[s : s + 8192], dtype=np.float64)
        h += xc.T @ xc
    h *= 2 / tokens
    t_hessian = time.perf_counter() - t0

    t0 = time.perf_counter()
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h[np.diag_indices(n)] += 0.01 * np.mean(np.diag(h))
    lower = np.linalg.cholesky(h)  # LAPACK potrf
    if lapack is not None:  # cholesky_inverse is LAPACK potri, as torch computes it
        inv, info = lapack.dpotri(lower, lower=1)
        if info != 0:
            raise RuntimeError(f"dpotri failed: {info}")
        hinv = np.tril(inv) + np.tril(inv, -1).T
    else:  # without SciPy: the inverse of the factor, then its Gram (more products)
        linv = np.linalg.inv(lower)
        hinv = linv.T @ linv
    u = np.linalg.cholesky(hinv).T  # cholesky(upper=True)
    t_prep = time.perf_counter() - t0

    t0 = time.perf_counter()
    codes = np.zeros((rows, n), dtype=np.uint8)
    scale = zero = None
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        w1 = w[:, i1:i2].copy()
        err1 = np.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            if c % group == 0:
                g = w[:, c : c + group]  # the outer W, as the reference reads it
                xmin = np.minimum(g.min(axis=1), 0).astype(np.float32)
                xmax = np.maximum(g.max(axis=1), 0).astype(np.float32)
                both = (xmin == 0) & (xmax == 0)
                xmin[both], xmax[both] = -1, 1
                scale = ((xmax - xmin) / np.float32(maxq)).astype(np.float32)
                zero = np.round(-xmin / scale)
                scale = scale.astype(np.float64)
            col = w1[:, i]
            q = np.clip(np.round((col / scale).astype(np.float32)) + zero, 0, maxq)
            codes[:, c] = q
            e = (col - scale * (q - zero)) / u1[i, i]
            w1[:, i:] -= np.outer(e, u1[i, i:])
            err1[:, i] = e
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    t_sweep = time.perf_counter() - t0
    np.save(f"{d}/codes_numpy.npy", codes)
    prep = "potrf, potri, potrf" if lapack is not None else "potrf, inv, product, potrf"
    print(json.dumps({"hessian": t_hessian, "prep": t_prep, "sweep": t_sweep, "lapack": prep}))


main()
