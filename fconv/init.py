"""Parameter initializers.

Contract (the same as ``jax.nn.initializers``): an *initializer* is a function
``init(rng, shape, dtype=jnp.float32) -> array`` that returns a fresh array of the given shape and
dtype. ``zeros`` and ``ones`` are initializers; every other public name here is a *factory* that
takes configuration and returns an initializer::

    w_init = glorot_uniform()
    w = w_init(jax.random.key(0), (64, 3, 3, 3))  # OIHW conv kernel

Kernel layouts and fans (see :func:`compute_fans`):

* dense kernels are ``(in, out)``;
* convolution kernels are OIHW, ``(out_channels, in_channels // groups, *kernel_size)``, for any
  number of spatial dimensions.

Random initializers accept floating-point dtypes only (``TypeError`` otherwise); ``constant``,
``zeros`` and ``ones`` accept any dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Initializer",
    "compute_fans",
    "constant",
    "zeros",
    "ones",
    "uniform",
    "normal",
    "truncated_normal",
    "variance_scaling",
    "glorot_uniform",
    "glorot_normal",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "lecun_uniform",
    "lecun_normal",
]

Initializer = Callable[..., jax.Array]
"""``(rng, shape, dtype=jnp.float32) -> jax.Array``."""

_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


# ----------------------------------------------------------------------------------------------
# Argument checks (private)
# ----------------------------------------------------------------------------------------------


def _canon_shape(shape: Any) -> tuple[int, ...]:
    """Returns ``shape`` as a tuple of non-negative Python ints."""
    if isinstance(shape, (int, np.integer)) or not isinstance(shape, Sequence):
        raise TypeError(
            f"`shape` must be a sequence of ints such as (3, 4), got {shape!r} "
            f"of type {type(shape).__name__}"
        )
    out = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"`shape` must contain only ints, got {tuple(shape)!r}")
        if d < 0:
            raise ValueError(f"`shape` must contain non-negative sizes, got {tuple(shape)!r}")
        out.append(int(d))
    return tuple(out)


def _check_float_dtype(dtype: Any) -> Any:
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"`dtype` must be a floating-point dtype for a random initializer, got {dtype!r}"
        )
    return dtype


def _check_real(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value}")
    return value


def _check_axis(name: str, axis: Any, rank: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, got {axis!r}")
    if not -rank <= axis < rank:
        raise ValueError(f"`{name}` (={axis}) is out of range for a shape of rank {rank}")
    return int(axis) % rank


def _std_truncated(rng: Any, shape: tuple[int, ...], dtype: Any, *, lower: float, upper: float):
    return jax.random.truncated_normal(rng, lower, upper, shape, dtype)


def _flat(sampler: Callable[..., jax.Array], rng: Any, shape: Any, dtype: Any, **kwargs: Any):
    """Draws ``prod(shape)`` samples as a vector and reshapes them.

    Same distribution as sampling ``shape`` directly, but eager calls compile one sampler per
    element count instead of per shape: on CPU a rank-4 sampler compiles about 8x slower than a
    rank-1 one of the same size, which dominated the eager initialisation of conv nets.
    """
    shape = _canon_shape(shape)
    return sampler(rng, (math.prod(shape),), dtype, **kwargs).reshape(shape)


# ----------------------------------------------------------------------------------------------
# Fans
# ----------------------------------------------------------------------------------------------


def compute_fans(
    shape: Sequence[int],
    in_axis: int | None = None,
    out_axis: int | None = None,
    groups: int = 1,
) -> tuple[float, float]:
    """Computes ``(fan_in, fan_out)`` of a dense or convolution kernel.

    Every axis other than ``in_axis`` and ``out_axis`` is a receptive-field (kernel spatial) axis;
    ``receptive = prod(those sizes)`` (1 for a dense kernel). Then::

        fan_in  = shape[in_axis] * receptive
        fan_out = shape[out_axis] * receptive / groups

    For an OIHW convolution kernel of shape ``(O, I // groups, *k)`` this is
    ``fan_in = (I / groups) * prod(k)``: the number of inputs one output unit sees, which is the
    lecture-notes definition "# input channels x kernel height x kernel width" applied to one group.
    ``fan_out`` is ``O * prod(k) / groups``: the number of outputs one input unit feeds, since in a
    grouped convolution each input channel reaches only the ``O / groups`` output channels of its
    own group. With the default ``groups=1`` this is ``O * prod(k)``, the lecture-notes definition
    and exactly what PyTorch's ``_calculate_fan_in_and_fan_out`` returns for *any* kernel (PyTorch
    never divides by groups); pass ``groups`` to get the connectivity-correct fan_out of a grouped
    or depthwise kernel. ``groups`` never changes ``fan_in`` because the kernel's in-axis already
    holds the per-group channel count.

    A rank-1 shape (e.g. a bias) has ``fan_in = fan_out = shape[0]``.

    Args:
        shape: Kernel shape, rank >= 1.
        in_axis: Axis holding the (per-group) input features. Default ``None``: 0 for a rank-1 or
            rank-2 ``(in, out)`` dense kernel, 1 for a rank >= 3 OIHW kernel.
        out_axis: Axis holding the output features. Default ``None``: 0 for rank 1, 1 for a rank-2
            ``(in, out)`` dense kernel, 0 for a rank >= 3 OIHW kernel.
        groups: Number of feature groups of the convolution (default 1); must divide
            ``shape[out_axis]``.

    Returns:
        ``(fan_in, fan_out)`` as Python floats.

    Raises:
        ValueError: if ``shape`` has rank < 1, an axis is out of range, ``in_axis == out_axis`` on a
            rank >= 2 shape, or ``groups`` is not a positive divisor of ``shape[out_axis]``.
        TypeError: if ``shape``, an axis or ``groups`` is not made of ints.

    Example:
        >>> compute_fans((256, 128))  # dense (in, out)
        (256.0, 128.0)
        >>> compute_fans((64, 3, 5, 5))  # OIHW conv
        (75.0, 1600.0)
        >>> compute_fans((64, 1, 3, 3), groups=64)  # depthwise conv
        (9.0, 9.0)
    """
    shape = _canon_shape(shape)
    rank = len(shape)
    if rank < 1:
        raise ValueError(
            f"`shape` must have rank >= 1 to compute fans, got {shape!r} of rank {rank}"
        )
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"`groups` must be an int, got {groups!r}")
    if rank == 1:
        default_in, default_out = 0, 0
    elif rank == 2:
        default_in, default_out = 0, 1
    else:
        default_in, default_out = 1, 0
    in_axis = _check_axis("in_axis", default_in if in_axis is None else in_axis, rank)
    out_axis = _check_axis("out_axis", default_out if out_axis is None else out_axis, rank)
    if rank >= 2 and in_axis == out_axis:
        raise ValueError(
            f"`in_axis` and `out_axis` must differ for a shape of rank {rank}, "
            f"both resolve to axis {in_axis}"
        )
    if groups < 1 or shape[out_axis] % groups != 0:
        raise ValueError(
            f"`groups` (={groups}) must be a positive divisor of the out-axis size "
            f"shape[{out_axis}] (={shape[out_axis]})"
        )
    receptive = math.prod(s for i, s in enumerate(shape) if i not in (in_axis, out_axis))
    fan_in = float(shape[in_axis] * receptive)
    fan_out = float(shape[out_axis] * receptive) / groups
    return fan_in, fan_out


# ----------------------------------------------------------------------------------------------
# Simple initializers
# ----------------------------------------------------------------------------------------------


def constant(value: float) -> Initializer:
    """Returns an initializer that fills with ``value``.

    Args:
        value: The fill value (any scalar castable to the requested dtype).

    Returns:
        An initializer ``(rng, shape, dtype=jnp.float32) -> array``; ``rng`` is ignored.

    Raises:
        TypeError: if ``value`` is not a number (a Python or NumPy scalar, or a 0-d array).

    Example:
        >>> constant(0.1)(None, (2,))
        Array([0.1, 0.1], dtype=float32)
    """
    if isinstance(value, (str, bytes)) or value is None or np.shape(value) != ():
        raise TypeError(f"`value` must be a number, got {value!r}")

    def init(rng: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        del rng
        return jnp.full(_canon_shape(shape), value, dtype=dtype)

    return init


def zeros(rng: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Initializer filling with 0; ``rng`` is ignored.

    Args:
        rng: Unused (kept for the initializer signature).
        shape: Output shape.
        dtype: Output dtype (default float32).

    Returns:
        An array of zeros.
    """
    del rng
    return jnp.zeros(_canon_shape(shape), dtype=dtype)


def ones(rng: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Initializer filling with 1; ``rng`` is ignored.

    Args:
        rng: Unused (kept for the initializer signature).
        shape: Output shape.
        dtype: Output dtype (default float32).

    Returns:
        An array of ones.
    """
    del rng
    return jnp.ones(_canon_shape(shape), dtype=dtype)


def uniform(scale: float = 1e-2) -> Initializer:
    """Returns an initializer drawing from ``U[0, scale)`` (as ``jax.nn.initializers.uniform``).

    Args:
        scale: Upper bound of the interval, > 0 (default 1e-2).

    Returns:
        An initializer ``(rng, shape, dtype=jnp.float32) -> array``.

    Raises:
        ValueError: if ``scale <= 0``.
    """
    scale = _check_real("scale", scale, positive=True)

    def init(rng: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        dtype = _check_float_dtype(dtype)
        return _flat(jax.random.uniform, rng, shape, dtype, minval=0.0, maxval=scale)

    return init


def normal(stddev: float = 1e-2) -> Initializer:
    """Returns an initializer drawing from ``N(0, stddev**2)``.

    Args:
        stddev: Standard deviation, > 0 (default 1e-2).

    Returns:
        An initializer ``(rng, shape, dtype=jnp.float32) -> array``.

    Raises:
        ValueError: if ``stddev <= 0``.
    """
    stddev = _check_real("stddev", stddev, positive=True)

    def init(rng: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        dtype = _check_float_dtype(dtype)
        return stddev * _flat(jax.random.normal, rng, shape, dtype)

    return init


def _truncated_std(lower: float, upper: float) -> float:
    """Standard deviation of a standard normal truncated to ``[lower, upper]``."""
    pdf_lo = math.exp(-0.5 * lower * lower) / math.sqrt(2.0 * math.pi)
    pdf_hi = math.exp(-0.5 * upper * upper) / math.sqrt(2.0 * math.pi)
    # The mass by erfc in a tail (erf(10 / sqrt 2) rounds to 1: [10, 11] would get mass 0).
    r2 = math.sqrt(2.0)
    if lower >= 0:
        mass = 0.5 * (math.erfc(lower / r2) - math.erfc(upper / r2))
    elif upper <= 0:
        mass = 0.5 * (math.erfc(-upper / r2) - math.erfc(-lower / r2))
    else:
        mass = 0.5 * (math.erf(upper / r2) - math.erf(lower / r2))
    if not mass > 0 or (pdf_lo == 0 and pdf_hi == 0):
        raise ValueError(
            f"`lower` (={lower}) and `upper` (={upper}) lie too far in a tail of the normal: "
            "its mass there underflows float64; choose bounds within about 35 sigma of 0"
        )
    mean = (pdf_lo - pdf_hi) / mass
    var = 1.0 + (lower * pdf_lo - upper * pdf_hi) / mass - mean * mean
    return math.sqrt(var)


def truncated_normal(
    stddev: float = 1e-2, *, lower: float = -2.0, upper: float = 2.0
) -> Initializer:
    """Returns an initializer drawing from a truncated normal with standard deviation ``stddev``.

    A normal ``N(0, sigma**2)`` is truncated to ``[lower * sigma, upper * sigma]``, where
    ``sigma`` is chosen so that the *truncated* distribution has standard deviation ``stddev``
    (for the default bounds ``sigma = stddev / 0.8796...``). This differs from
    ``jax.nn.initializers.truncated_normal``, whose ``stddev`` is the pre-truncation ``sigma``;
    fconv corrects it so the name means what the samples show, the same correction
    ``variance_scaling`` applies. With asymmetric bounds the samples' mean is not 0.

    Args:
        stddev: Standard deviation of the samples, > 0 (default 1e-2).
        lower: Lower bound in units of the pre-truncation ``sigma`` (default -2).
        upper: Upper bound in units of the pre-truncation ``sigma`` (default 2); > ``lower``.

    Returns:
        An initializer ``(rng, shape, dtype=jnp.float32) -> array``.

    Raises:
        ValueError: if ``stddev <= 0``, ``lower >= upper``, or both bounds lie so far in one
            tail that the normal's mass between them underflows (at construction) or that the
            sampler cannot resolve them in the dtype asked for (at the call; e.g. float32
            bounds 4 and 5).
    """
    stddev = _check_real("stddev", stddev, positive=True)
    lower = _check_real("lower", lower)
    upper = _check_real("upper", upper)
    if lower >= upper:
        raise ValueError(f"`lower` (={lower}) must be < `upper` (={upper})")
    sigma = stddev / _truncated_std(lower, upper)

    def init(rng: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        dtype = _check_float_dtype(dtype)
        # JAX's sampler draws u between erf(lower / sqrt 2) and erf(upper / sqrt 2) in the
        # sampling dtype (float32 at least) and maps it back with erfinv: far in one tail too few
        # representable values lie between them and the samples collapse onto a bound.
        sample_dtype = jnp.promote_types(dtype, jnp.float32)
        a, b = (np.asarray(math.erf(v / math.sqrt(2.0)), sample_dtype) for v in (lower, upper))
        ulp = np.spacing(np.maximum(np.abs(a), np.abs(b)))  # float spacing where they lie
        if float(b) - float(a) < 1024 * float(ulp):
            raise ValueError(
                f"truncated_normal: `lower` (={lower}) and `upper` (={upper}) lie too far in one "
                f"tail to sample in {jnp.dtype(sample_dtype).name} (erf of the bounds differs "
                "by under 1024 ulps); move a bound nearer to 0"
            )
        samples = _flat(_std_truncated, rng, shape, sample_dtype, lower=lower, upper=upper)
        return (sigma * samples).astype(dtype)

    return init


# ----------------------------------------------------------------------------------------------
# Variance scaling and its named presets
# ----------------------------------------------------------------------------------------------


def variance_scaling(
    scale: float,
    mode: str,
    distribution: str,
    *,
    in_axis: int | None = None,
    out_axis: int | None = None,
    groups: int = 1,
) -> Initializer:
    """Returns an initializer whose samples have variance ``scale / n``.

    ``n`` is ``fan_in``, ``fan_out`` or ``(fan_in + fan_out) / 2`` by ``mode``, with fans from
    :func:`compute_fans` (``in_axis``, ``out_axis`` and ``groups`` are passed on). The samples are
    zero-mean and drawn from:

    * ``"normal"``: ``N(0, scale / n)``;
    * ``"truncated_normal"``: a normal truncated at two pre-truncation standard deviations, rescaled
      by ``1 / 0.87962566103423978`` so the truncated samples still have variance ``scale / n``
      (as ``jax.nn.initializers.variance_scaling`` does);
    * ``"uniform"``: ``U[-limit, limit]`` with ``limit = sqrt(3 * scale / n)``.

    Args:
        scale: Variance multiplier, > 0 (e.g. 2.0 for He, 1.0 for Glorot and LeCun).
        mode: One of ``"fan_in"``, ``"fan_out"``, ``"fan_avg"``.
        distribution: One of ``"normal"``, ``"truncated_normal"``, ``"uniform"``.
        in_axis: Input-feature axis; default ``None`` as in :func:`compute_fans`.
        out_axis: Output-feature axis; default ``None`` as in :func:`compute_fans`.
        groups: Convolution feature groups (default 1); divides ``fan_out`` only.

    Returns:
        An initializer ``(rng, shape, dtype=jnp.float32) -> array``; calling it raises
        ``ValueError`` for shapes of rank < 1 (see :func:`compute_fans`).

    Raises:
        ValueError: if ``scale <= 0``, ``groups < 1`` or ``mode``/``distribution`` is not one of
            the listed strings.
        TypeError: if ``scale`` is not a number, or an axis or ``groups`` is not an int.

    Example:
        >>> w = variance_scaling(2.0, "fan_in", "normal")(jax.random.key(0), (16, 3, 3, 3))
        >>> w.shape, w.dtype
        ((16, 3, 3, 3), dtype('float32'))
    """
    scale = _check_real("scale", scale, positive=True)
    for name, axis in (("in_axis", in_axis), ("out_axis", out_axis)):  # ranges need the shape
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, (int, np.integer))):
            raise TypeError(f"`{name}` must be an int or None, got {axis!r}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"`groups` must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"`groups` must be >= 1, got {groups}")
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}, got {mode!r}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"`distribution` must be one of {_DISTRIBUTIONS}, got {distribution!r}")

    def init(rng: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        shape = _canon_shape(shape)
        dtype = _check_float_dtype(dtype)
        fan_in, fan_out = compute_fans(shape, in_axis, out_axis, groups)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        variance = scale / max(n, 1.0)
        if distribution == "normal":
            return math.sqrt(variance) * _flat(jax.random.normal, rng, shape, dtype)
        if distribution == "truncated_normal":
            stddev = math.sqrt(variance) / _truncated_std(-2.0, 2.0)
            return stddev * _flat(_std_truncated, rng, shape, dtype, lower=-2.0, upper=2.0)
        limit = math.sqrt(3.0 * variance)
        return _flat(jax.random.uniform, rng, shape, dtype, minval=-limit, maxval=limit)

    return init


def _preset(scale: float, mode: str, distribution: str, name: str, who: str):
    def factory(
        *, in_axis: int | None = None, out_axis: int | None = None, groups: int = 1
    ) -> Initializer:
        return variance_scaling(
            scale, mode, distribution, in_axis=in_axis, out_axis=out_axis, groups=groups
        )

    factory.__name__ = factory.__qualname__ = name
    call = f'variance_scaling({scale}, "{mode}", "{distribution}")'
    factory.__doc__ = f"""{who} initializer: ``{call}``.

    Args:
        in_axis: Input-feature axis; default ``None`` as in :func:`compute_fans`.
        out_axis: Output-feature axis; default ``None`` as in :func:`compute_fans`.
        groups: Convolution feature groups (default 1); divides ``fan_out`` only.

    Returns:
        An initializer ``(rng, shape, dtype=jnp.float32) -> array``.
    """
    return factory


# The "normal" presets use a true Gaussian, as the Glorot and He papers (and PyTorch's
# xavier_normal_/kaiming_normal_) do; jax.nn.initializers uses a truncated normal instead. The
# variance is identical; use variance_scaling(..., "truncated_normal") for jax's behaviour.
glorot_uniform = _preset(1.0, "fan_avg", "uniform", "glorot_uniform", "Glorot/Xavier uniform")
glorot_normal = _preset(1.0, "fan_avg", "normal", "glorot_normal", "Glorot/Xavier normal")
he_uniform = _preset(2.0, "fan_in", "uniform", "he_uniform", "He/Kaiming uniform")
he_normal = _preset(2.0, "fan_in", "normal", "he_normal", "He/Kaiming normal")
lecun_uniform = _preset(1.0, "fan_in", "uniform", "lecun_uniform", "LeCun uniform")
lecun_normal = _preset(1.0, "fan_in", "normal", "lecun_normal", "LeCun normal")

xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal
