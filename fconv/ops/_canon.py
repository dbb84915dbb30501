"""Argument canonicalisation shared by every op: one broadcasting rule, one error style.

Every public op resolves its arguments here once, at trace time, so that the backward rules only
ever see per-dimension tuples of Python ints and explicit ``(lo, hi)`` padding pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]

SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}
LAYOUTS = {"channels_first", "channels_last"}


class DTypeError(TypeError, ValueError):
    """Raised for an array of the wrong dtype (an integer array where floats are needed).

    It is both a ``TypeError`` (the style of Python) and a ``ValueError`` (the style of NumPy's
    ``AxisError``), so either ``except`` clause catches it.
    """


def ntuple(value: int | Sequence[int], n: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """Broadcasts an int to an ``n``-tuple, or checks a sequence has length ``n``.

    Args:
      value: an int, or a sequence of ``n`` ints.
      n: the number of spatial dimensions.
      name: the argument's name, used in error messages.
      minimum: the smallest allowed entry.

    Returns:
      A tuple of ``n`` Python ints.

    Raises:
      TypeError: if ``value`` is neither an int nor a sequence of ints.
      ValueError: if the length is not ``n`` or an entry is below ``minimum``.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            raise TypeError(f"`{name}` must be an int or a sequence of ints, got {value!r}.")
        out = tuple(int(v) for v in value)
        if len(out) != n:
            raise ValueError(
                f"`{name}` must have one entry per spatial dimension ({n}), got {value!r} "
                f"with {len(out)} entries."
            )
    else:
        raise TypeError(f"`{name}` must be an int or a sequence of ints, got {value!r}.")
    if any(v < minimum for v in out):
        raise ValueError(f"`{name}` entries must be >= {minimum}, got {value!r}.")
    return out


def check_float_array(x: Any, name: str) -> jnp.ndarray:
    """Returns ``x`` as a jax array, raising ``DTypeError`` unless it has a floating dtype."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise DTypeError(
            f"`{name}` must have a floating dtype (float16/bfloat16/float32/float64), got "
            f"{x.dtype}. Cast it first, e.g. `{name}.astype(jnp.float32)`."
        )
    return x


def spatial_rank(x: jnp.ndarray, name: str, ranks: Sequence[int] = (1, 2, 3)) -> int:
    """Number of spatial dims of a batched ``(N, C, *spatial)`` array, checked against ``ranks``."""
    n = x.ndim - 2
    if n not in ranks:
        allowed = " or ".join(str(r + 2) for r in ranks)
        raise ValueError(
            f"`{name}` must be {allowed}-D (batch, channels, *spatial), got shape {tuple(x.shape)}."
        )
    return n


def check_layout(layout: str) -> bool:
    """Validates ``layout`` and returns True for channels-last."""
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {sorted(LAYOUTS)}, got {layout!r}.")
    return layout == "channels_last"


def to_channels_first(x: jnp.ndarray) -> jnp.ndarray:
    """``(N, *spatial, C)`` -> ``(N, C, *spatial)``."""
    return jnp.moveaxis(x, -1, 1)


def to_channels_last(x: jnp.ndarray) -> jnp.ndarray:
    """``(N, C, *spatial)`` -> ``(N, *spatial, C)``."""
    return jnp.moveaxis(x, 1, -1)


def kernel_to_oihw(w: jnp.ndarray) -> jnp.ndarray:
    """``(*spatial, I, O)`` (HWIO) -> ``(O, I, *spatial)`` (OIHW)."""
    n = w.ndim - 2
    return jnp.transpose(w, (n + 1, n, *range(n)))


def kernel_to_hwio(w: jnp.ndarray) -> jnp.ndarray:
    """``(O, I, *spatial)`` (OIHW) -> ``(*spatial, I, O)`` (HWIO)."""
    n = w.ndim - 2
    return jnp.transpose(w, (*range(2, n + 2), 1, 0))


def per_channel(v: jnp.ndarray, axis: int, ndim: int, dtype: Any) -> jnp.ndarray:
    """``(C,)`` -> an ``ndim``-array with C at ``axis`` and 1 elsewhere, cast to ``dtype``.

    An explicit reshape, so broadcasting against the data needs no rank promotion.
    """
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.astype(dtype).reshape(shape)


def resolve_padding(
    padding: Padding,
    in_spatial: Sequence[int],
    window: Sequence[int],
    stride: Sequence[int],
    name: str = "padding",
) -> tuple[tuple[int, int], ...]:
    """Resolves a padding spec to explicit ``(lo, hi)`` pairs per spatial dimension.

    Args:
      padding: ``"VALID"`` (no padding), ``"SAME"`` (XLA/TensorFlow convention: output size
        ``ceil(N / s)``; total pad ``P = max((ceil(N/s) - 1) s + K' - N, 0)``, with ``lo = P // 2``
        and the odd extra pixel on the **high** side), ``"FULL"`` (``K' - 1`` on each side: every
        partial overlap, the "full" convolution of the lectures), an int (same pad on both sides of
        every dimension), a sequence of ints (symmetric, per dimension) or a sequence of
        ``(lo, hi)`` pairs. Strings are case-insensitive.
      in_spatial: input sizes ``N`` per spatial dimension.
      window: effective (dilated) window sizes ``K' = d (K - 1) + 1``.
      stride: strides ``s``.
      name: the argument's name, for errors.

    Returns:
      A tuple of ``(lo, hi)`` int pairs, one per spatial dimension.
    """
    n = len(in_spatial)
    if isinstance(padding, str):
        kind = padding.upper()
        if kind == "VALID":
            return ((0, 0),) * n
        if kind == "FULL":
            return tuple((k - 1, k - 1) for k in window)
        if kind == "SAME":
            pads = []
            for size, k, s in zip(in_spatial, window, stride, strict=True):
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(
            f"`{name}` string must be 'VALID', 'SAME' or 'FULL', got {padding!r}. Pass explicit "
            "((lo, hi), ...) pairs for anything else."
        )
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        pairs = ((int(padding), int(padding)),) * n
    elif isinstance(padding, Sequence) and len(padding) == n:
        pairs = []
        for p in padding:
            if isinstance(p, (int, np.integer)) and not isinstance(p, bool):
                pairs.append((int(p), int(p)))
            elif (
                isinstance(p, Sequence)
                and len(p) == 2
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in p)
            ):
                pairs.append((int(p[0]), int(p[1])))
            else:
                raise TypeError(
                    f"`{name}` entries must be ints or (lo, hi) pairs of ints, got {padding!r}."
                )
        pairs = tuple(pairs)
    else:
        raise ValueError(
            f"`{name}` must be 'VALID', 'SAME', 'FULL', an int, or {n} ints / (lo, hi) pairs "
            f"(one per spatial dimension), got {padding!r}."
        )
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise ValueError(f"`{name}` must be non-negative, got {padding!r}.")
    return pairs


def output_size(size: int, window: int, stride: int, pad: tuple[int, int]) -> int:
    """``floor((N + lo + hi - K') / s) + 1``; may be <= 0 when the window does not fit."""
    return (size + pad[0] + pad[1] - window) // stride + 1


def check_window_fits(
    in_spatial: Sequence[int],
    window: Sequence[int],
    pads: Sequence[tuple[int, int]],
    what: str,
) -> None:
    """Raises ``ValueError`` when a (dilated) window is larger than the padded input."""
    for i, (size, k, (lo, hi)) in enumerate(zip(in_spatial, window, pads, strict=True)):
        if size + lo + hi < k:
            raise ValueError(
                f"{what} of effective size {k} in spatial dimension {i} is larger than the padded "
                f"input ({size} + {lo} + {hi} = {size + lo + hi}). Use a smaller {what}, more "
                "padding, or padding='SAME'."
            )


def check_vjp_mode(vjp: str) -> None:
    """Validates the ``vjp`` switch."""
    if vjp not in ("custom", "autodiff"):
        raise ValueError(f"`vjp` must be 'custom' or 'autodiff', got {vjp!r}.")
