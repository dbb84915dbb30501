"""``check_vjp``: prove a hand-written VJP against autodiff and against finite differences.

Public API: users run it on their own ``custom_vjp`` ops::

    report = check_vjp(my_op, my_op_reference, x, w)
    print(report)          # a small table of errors per argument; raises if out of tolerance
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["VJPCheckError", "VJPReport", "check_vjp", "reference_vjp"]


class VJPCheckError(AssertionError):
    """Raised by ``check_vjp`` when a gradient is out of tolerance; carries the report."""

    def __init__(self, message: str, report: VJPReport):
        super().__init__(message)
        self.report = report


class VJPReport(NamedTuple):
    """Errors per checked argument (indices in ``argnums``).

    Attributes:
      argnums: the checked positional arguments.
      abs_err: max |custom - reference| per argument.
      rel_err: ``abs_err`` divided by the reference gradient's max magnitude (its scale).
      fd_rel_err: per argument, the relative error of the custom directional derivative
        ``<dL/da, v>`` against central finite differences of ``L = <f(args), g>`` (float64),
        worst over the random directions ``v``; ``inf`` where the finite difference or the
        directional derivative is not finite (e.g. a step of ``eps`` leaves ``f``'s domain, or
        the custom gradient has a NaN), which fails the check; ``nan`` where the
        finite-difference check was not run.
      rtol: the tolerance ``rel_err`` was held to.
      fd_rtol: the tolerance ``fd_rel_err`` was held to.
    """

    argnums: tuple[int, ...]
    abs_err: tuple[float, ...]
    rel_err: tuple[float, ...]
    fd_rel_err: tuple[float, ...]
    rtol: float
    fd_rtol: float

    @property
    def ok(self) -> bool:
        return all(e <= self.rtol for e in self.rel_err) and all(
            not (e > self.fd_rtol) for e in self.fd_rel_err
        )

    def __str__(self) -> str:
        lines = ["arg | max abs err | rel err vs reference | rel err vs finite diff"]
        for i, a, r, f in zip(self.argnums, self.abs_err, self.rel_err, self.fd_rel_err):
            lines.append(f"{i:>3} | {a:11.3e} | {r:20.3e} | {f:22.3e}")
        lines.append(f"tolerances: rtol={self.rtol:g}, fd_rtol={self.fd_rtol:g}")
        return "\n".join(lines)


_DEFAULT_RTOL = {
    jnp.dtype(jnp.float64): 1e-10,
    jnp.dtype(jnp.float32): 1e-5,
    jnp.dtype(jnp.float16): 1e-2,
    jnp.dtype(jnp.bfloat16): 2e-2,
}


def reference_vjp(
    f: Callable[..., jax.Array], args: Sequence[Any], g: jax.Array, argnums: Sequence[int]
) -> list[jax.Array]:
    """Reference gradients ``J^T g`` built from forward mode (``jax.jacfwd``).

    Independent of every transpose rule (autodiff's own reverse mode included, which on some
    jaxlib versions aborts the process for strided convolutions). Costs one JVP per input element,
    so keep it for small arrays.
    """
    out = []
    for i in argnums:

        def fi(a, i=i):
            full = list(args)
            full[i] = a
            return f(*full)

        jac = jax.jacfwd(fi)(args[i])
        out.append(jnp.tensordot(g, jac, axes=g.ndim))
    return out


def _fd_errors(
    f: Callable[..., jax.Array],
    args: Sequence[Any],
    g: jax.Array,
    grads: Sequence[jax.Array],
    argnums: Sequence[int],
    eps: float,
    num_directions: int,
    rng: np.random.Generator,
) -> list[float]:
    """Worst relative error of <grad, v> against central differences of <f, g> along v."""
    errors = []
    for i, grad in zip(argnums, grads):
        worst = 0.0
        for _ in range(num_directions):
            v = jnp.asarray(rng.standard_normal(np.shape(args[i])), jnp.float64)

            def loss(t, i=i, v=v):
                full = list(args)
                full[i] = args[i] + t * v
                return float(jnp.vdot(f(*full), g))

            fd = (loss(eps) - loss(-eps)) / (2 * eps)
            an = float(jnp.vdot(grad, v))
            if not (math.isfinite(fd) and math.isfinite(an)):  # e.g. a step left f's domain
                worst = math.inf  # unverifiable: a failure, never a perfect score
                continue
            scale = max(abs(an), abs(fd), float(jnp.linalg.norm(grad) * jnp.linalg.norm(v)))
            worst = max(worst, abs(fd - an) / scale if scale > 0 else 0.0)
        errors.append(worst)
    return errors


def check_vjp(
    f_custom: Callable[..., jax.Array],
    f_reference: Callable[..., jax.Array],
    *args: Any,
    argnums: int | Sequence[int] | None = None,
    rtol: float | None = None,
    fd_rtol: float = 1e-6,
    eps: float = 1e-6,
    num_directions: int = 3,
    reference: str = "vjp",
    finite_differences: bool = True,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> VJPReport:
    """Compares ``f_custom``'s VJP with autodiff of ``f_reference`` and with finite differences.

    A random cotangent ``g`` (shape of the output) is pulled back through both functions; the
    custom gradients must equal the reference ones to ``rtol`` relative to the reference
    gradient's largest magnitude. Then, in float64, the custom gradients are checked against
    central finite differences of ``L = <f_custom(args), g>`` along ``num_directions`` random
    directions (cheap for any input size).

    Args:
      f_custom: function with the hand-written VJP; returns one array.
      f_reference: the same function differentiated by JAX (e.g. ``vjp="autodiff"``).
      *args: positional array arguments (floating dtype).
      argnums: which arguments to check; defaults to all.
      rtol: tolerance against the reference; defaults by dtype (float64 1e-10, float32 1e-5,
        bfloat16 2e-2).
      fd_rtol: tolerance against finite differences (relative to ``|grad| |v|``). Default 1e-6.
      eps: finite-difference step (float64). Default 1e-6.
      num_directions: random directions per argument for finite differences. Default 3.
      reference: ``"vjp"`` (reverse-mode autodiff of the reference) or ``"jacfwd"`` (forward mode,
        see ``reference_vjp``; safe where reverse mode of the reference can crash).
      finite_differences: run the float64 finite-difference check. Default True.
      seed: seed for the cotangent and the directions.
      raise_on_failure: raise ``VJPCheckError`` when out of tolerance. Default True.

    Returns:
      A ``VJPReport``; ``str(report)`` is a small table.

    Raises:
      ValueError: for a bad ``reference`` or ``argnums``.
      VJPCheckError: if out of tolerance and ``raise_on_failure``.
    """
    if reference not in ("vjp", "jacfwd"):
        raise ValueError(f"`reference` must be 'vjp' or 'jacfwd', got {reference!r}.")
    if argnums is None:
        argnums = tuple(range(len(args)))
    elif isinstance(argnums, int):
        argnums = (argnums,)
    argnums = tuple(argnums)
    if not argnums or any(not 0 <= i < len(args) for i in argnums):
        raise ValueError(f"`argnums` {argnums} must index the {len(args)} positional args.")
    args = [jnp.asarray(a) for a in args]
    rng = np.random.default_rng(seed)

    out, pullback = jax.vjp(f_custom, *args)
    g = jnp.asarray(rng.standard_normal(out.shape), out.dtype)
    custom = [pullback(g)[i] for i in argnums]
    if reference == "vjp":
        ref_all = jax.vjp(f_reference, *args)[1](g)
        ref = [ref_all[i] for i in argnums]
    else:
        ref = reference_vjp(f_reference, args, g, argnums)

    abs_err, rel_err = [], []
    for c, r in zip(custom, ref):
        c64, r64 = np.asarray(c, np.float64), np.asarray(r, np.float64)
        a = float(np.max(np.abs(c64 - r64), initial=0.0))
        scale = float(np.max(np.abs(r64), initial=0.0))
        abs_err.append(a)
        rel_err.append(a / scale if scale > 0 else a)
    if rtol is None:
        rtol = max(_DEFAULT_RTOL.get(jnp.dtype(a.dtype), 1e-5) for a in args)

    fd = [float("nan")] * len(argnums)
    if finite_differences:
        with jax.enable_x64(True):
            args64 = [jnp.asarray(np.asarray(a, np.float64)) for a in args]
            g64 = jnp.asarray(np.asarray(g, np.float64))
            _, pb64 = jax.vjp(f_custom, *args64)
            grads64 = pb64(g64)
            fd = _fd_errors(
                f_custom,
                args64,
                g64,
                [grads64[i] for i in argnums],
                argnums,
                eps,
                num_directions,
                rng,
            )

    report = VJPReport(argnums, tuple(abs_err), tuple(rel_err), tuple(fd), rtol, fd_rtol)
    if raise_on_failure and not report.ok:
        raise VJPCheckError(f"custom VJP out of tolerance:\n{report}", report)
    return report
