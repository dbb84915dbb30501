"""Opt-in performance switches that must be chosen before JAX starts its backend."""

from __future__ import annotations

import os

# jaxlib 0.10.2 hands XLA:CPU's convolutions to YNNPACK by default ("individual_convolution" in
# this list flag); the leading "-" takes that one entry out, so they run on Eigen's convolution.
FAST_CPU_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def _backend_started() -> bool:
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", {}))


def _flag_value(flag: str) -> str | None:
    """The value ``XLA_FLAGS`` gives the flag named in ``flag`` (``--name=value``): the last
    occurrence wins, as in XLA; a bare ``--name`` means ``true``; None when it is absent.
    """
    name = flag.split("=", 1)[0]
    value = None
    for token in os.environ.get("XLA_FLAGS", "").split():
        if token == name:
            value = "true"
        elif token.startswith(name + "="):
            value = token[len(name) + 1 :]
    return value


_BOOLEAN = {"1": "true", "0": "false"}


def _flag_in_effect(flag: str) -> bool:
    value = _flag_value(flag)
    return value is not None and _BOOLEAN.get(value, value) == flag.split("=", 1)[1]


def _add_xla_flag(flag: str, caller: str) -> None:
    """Appends ``flag`` to ``XLA_FLAGS`` (unless already in effect), refusing once the backend
    has read them.
    """
    if _backend_started():
        raise RuntimeError(
            f"{caller}() must be called before JAX runs anything: XLA reads XLA_FLAGS "
            "once, when the backend starts. Call it at the top of your script, or set "
            f"XLA_FLAGS={flag} in the environment."
        )
    if not _flag_in_effect(flag):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def enable_fast_cpu() -> None:
    """Runs XLA:CPU's convolutions on Eigen instead of YNNPACK (``XLA_FLAGS``).

    jaxlib 0.10.2 sends every large CPU convolution to YNNPACK, which measured about 1.5x slower
    than XLA's older Eigen convolution on a 2-core x86 CPU: conv 3x3 forward+backward 101 ->
    65 ms, strided 30 -> 19 ms, a VGG-small training step 117 -> 92 ms. Depthwise and pooling
    ops are unchanged or slightly faster (on CPU fconv computes them without convolutions).
    Results equal the default path up to float32 rounding (the tests run with the default path;
    one checks this flag).
    It changes nothing on GPU/TPU. Call it first thing in a script, before any JAX computation;
    ``fconv train --fast-cpu`` does this for you.

    Raises:
      RuntimeError: if JAX has already started its backend (the flag would be ignored).
    """
    _add_xla_flag(FAST_CPU_FLAG, "enable_fast_cpu")


def fast_cpu_enabled() -> bool:
    """Whether ``enable_fast_cpu`` (or the same XLA flag) is in effect for this process."""
    return _flag_in_effect(FAST_CPU_FLAG)


def enable_deterministic() -> None:
    """Makes XLA's GPU reductions and scatters deterministic (``XLA_FLAGS``).

    On the CPU every fconv step is already bit-for-bit repeatable, so ``fit(..., resume=True)``
    reproduces an uninterrupted run exactly. On a GPU, XLA's default reductions and scatters may
    add in a different order from one compile to the next, and a resumed run drifts from the
    uninterrupted one by rounding (measured on an H200: a 2-epoch toy run differed in the
    second significant digit; with this switch the two are identical). It costs some GPU
    speed. Call it first thing in a script; ``fconv train --deterministic`` does this for you.

    Raises:
      RuntimeError: if JAX has already started its backend (the flag would be ignored).
    """
    _add_xla_flag(DETERMINISTIC_FLAG, "enable_deterministic")


def deterministic_enabled() -> bool:
    """Whether ``enable_deterministic`` (or the same XLA flag) is in effect for this process."""
    return _flag_in_effect(DETERMINISTIC_FLAG)
