"""Independent NumPy implementations (loops over kernel offsets) used as forward references.

They share no code with fconv: padding pairs come from ``jax.lax.padtype_to_pads`` or are given
explicitly, so a wrong padding rule in fconv cannot hide behind the same wrong rule here.
"""

from __future__ import annotations

import numpy as np
from jax import lax


def pads_for(padding, in_spatial, window, stride):
    """Explicit (lo, hi) pairs, resolved by lax (VALID/SAME) or by the lectures' FULL rule."""
    if isinstance(padding, str):
        if padding == "FULL":
            return [(k - 1, k - 1) for k in window]
        return [tuple(p) for p in lax.padtype_to_pads(in_spatial, window, stride, padding)]
    return [tuple(p) for p in padding]


def conv(x, w, stride, pads, dilation, groups):
    """Cross-correlation, NC* / OI* layouts, explicit pads, any rank."""
    n = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    c, o = x.shape[1], w.shape[0]
    k = w.shape[2:]
    out = [(xp.shape[2 + i] - (dilation[i] * (k[i] - 1) + 1)) // stride[i] + 1 for i in range(n)]
    y = np.zeros((x.shape[0], o, *out), np.float64)
    cg, og = c // groups, o // groups
    for kidx in np.ndindex(*k):
        sl = tuple(
            slice(
                kidx[i] * dilation[i],
                kidx[i] * dilation[i] + (out[i] - 1) * stride[i] + 1,
                stride[i],
            )
            for i in range(n)
        )
        patch = xp[(slice(None), slice(None), *sl)]
        for gi in range(groups):
            wk = w[(slice(gi * og, (gi + 1) * og), slice(None), *kidx)]
            y[:, gi * og : (gi + 1) * og] += np.einsum(
                "nc...,oc->no...", patch[:, gi * cg : (gi + 1) * cg], wk
            )
    return y


def conv_vjp(x, w, g, stride, pads, dilation, groups):
    """(dx, dw) of <conv(x, w), g> by the same loop over kernel offsets, run backwards."""
    n = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    dxp = np.zeros_like(xp, dtype=np.float64)
    dw = np.zeros(w.shape, np.float64)
    c, o = x.shape[1], w.shape[0]
    out = g.shape[2:]
    cg, og = c // groups, o // groups
    for kidx in np.ndindex(*w.shape[2:]):
        sl = tuple(
            slice(
                kidx[i] * dilation[i],
                kidx[i] * dilation[i] + (out[i] - 1) * stride[i] + 1,
                stride[i],
            )
            for i in range(n)
        )
        for gi in range(groups):
            cs, os_ = slice(gi * cg, (gi + 1) * cg), slice(gi * og, (gi + 1) * og)
            wk = w[(os_, slice(None), *kidx)]
            dxp[(slice(None), cs, *sl)] += np.einsum("no...,oc->nc...", g[:, os_], wk)
            patch = xp[(slice(None), cs, *sl)]
            axes = [0, *range(2, 2 + n)]
            dw[(os_, slice(None), *kidx)] += np.tensordot(g[:, os_], patch, axes=(axes, axes))
    crop = tuple(slice(lo, lo + size) for (lo, _), size in zip(pads, x.shape[2:]))
    return dxp[(slice(None), slice(None), *crop)], dw


def pool(x, window, stride, pads, kind, count_include_pad=True):
    """Max or average pooling with explicit pads (-inf / 0 padding), any rank."""
    n = x.ndim - 2
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), *pads], constant_values=fill)
    ones = np.pad(np.ones(x.shape[2:]), pads)
    out = [(xp.shape[2 + i] - window[i]) // stride[i] + 1 for i in range(n)]
    y = np.zeros((*x.shape[:2], *out))
    for idx in np.ndindex(*out):
        sl = tuple(slice(idx[i] * stride[i], idx[i] * stride[i] + window[i]) for i in range(n))
        patch = xp[(slice(None), slice(None), *sl)].reshape(*x.shape[:2], -1)
        if kind == "max":
            y[(slice(None), slice(None), *idx)] = patch.max(-1)
        else:
            div = np.prod(window) if count_include_pad else ones[sl].sum()
            y[(slice(None), slice(None), *idx)] = patch.sum(-1) / div
    return y
