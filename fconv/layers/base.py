"""The ``Layer`` type, the one ``vjp`` switch, and the checks every layer module shares.

The contract itself is stated in ``fconv.layers``' module docstring.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fconv.ops import _canon

__all__ = ["Layer", "default_vjp", "output_shape"]

Shape = tuple[int, ...]


def _no_state(input_shape: Any) -> tuple:
    del input_shape
    return ()


@dataclasses.dataclass(frozen=True)
class Layer:
    """A layer: three pure functions. ``init, apply = layer`` unpacks it stax-style.

    Attributes:
      init: ``init(rng, input_shape) -> (output_shape, params)``.
      apply: ``apply(params, x, *, rng=None, train=False, state=None)`` -> ``y``, or
        ``(y, new_state)`` when a ``state`` is given.
      init_state: ``init_state(input_shape) -> state``; ``()`` for stateless layers.
      meta: the layer's configuration, for tools that read a network's structure
        (``fconv.receptive_field``): ``{"kind": "conv", "name": "Conv", "kernel": 3, "stride": 1,
        "padding": "SAME", "dilation": 1, "layout": "channels_first"}`` for a convolution,
        ``{"kind": "serial"}`` for a combinator; None (default) for layers without a spatial
        effect. Not used by ``init`` or ``apply``.
      children: the layers a combinator is built from (``()`` for a leaf).
    """

    init: Callable[..., tuple[Any, Any]]
    apply: Callable[..., Any]
    init_state: Callable[[Any], Any] = _no_state
    meta: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False)
    children: tuple[Layer, ...] = dataclasses.field(default=(), compare=False)

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        yield self.init
        yield self.apply


# ---------------------------------------------------------------------------------------------
# The vjp switch: read once, when a layer is constructed.
# ---------------------------------------------------------------------------------------------

_DEFAULT_VJP: contextvars.ContextVar[str] = contextvars.ContextVar("fconv_vjp", default="custom")


def _check_vjp(vjp: Any) -> str:
    if vjp not in ("custom", "autodiff"):
        raise ValueError(f"`vjp` must be 'custom', 'autodiff' or None, got {vjp!r}.")
    return vjp


@contextlib.contextmanager
def default_vjp(vjp: str | None) -> Iterator[None]:
    """Context manager: layers and models *constructed* inside it use ``vjp`` by default.

    The switch is read at construction time, so a model built inside the block keeps its backward
    rules after the block ends; build a model twice to compare the two::

        with default_vjp("autodiff"):
            reference = lenet5()

    Args:
      vjp: ``"custom"`` (hand-written ``custom_vjp`` rules, the library default),
        ``"autodiff"`` (the plain-``lax`` twins differentiated by JAX), or ``None`` (leave the
        current default unchanged).

    Raises:
      ValueError: for any other value.
    """
    if vjp is None:
        yield
        return
    token = _DEFAULT_VJP.set(_check_vjp(vjp))
    try:
        yield
    finally:
        _DEFAULT_VJP.reset(token)


def resolve_vjp(vjp: str | None) -> str:
    """``vjp`` checked, or the current default (see ``default_vjp``) when it is ``None``."""
    return _DEFAULT_VJP.get() if vjp is None else _check_vjp(vjp)


# ---------------------------------------------------------------------------------------------
# Argument checks: message = argument, requirement, value.
# ---------------------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    """True for Python and NumPy ints, False for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(value: Any, name: str, where: str, *, minimum: int = 1) -> int:
    """Returns ``value`` as an int >= ``minimum``; TypeError / ValueError naming ``where``."""
    if not is_int(value):
        raise TypeError(f"{where}: `{name}` must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{where}: `{name}` must be >= {minimum}, got {value}.")
    return int(value)


def check_axis(value: Any, where: str) -> int:
    """An axis index (negative counts from the end; the range is checked against the input)."""
    return check_int(value, "axis", where, minimum=-(2**31))


def check_layout(layout: Any, where: str) -> bool:
    """Validates ``layout`` and returns True for channels-last."""
    try:
        return _canon.check_layout(layout)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def check_real(value: Any, name: str, where: str) -> float:
    """Returns ``value`` as a float; TypeError for bools, strings and other non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: `{name}` must be a real number, got {value!r}.")
    return float(value)


def check_bool(value: Any, name: str, where: str) -> bool:
    """Returns ``value`` as a bool; TypeError for anything but a (numpy) bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: `{name}` must be a bool, got {value!r}.")
    return bool(value)


def check_ints(value: Any, name: str, where: str, *, minimum: int = 1) -> Any:
    """Checks an int-or-sequence-of-ints argument now; it is broadcast per dimension at init."""
    n = len(value) if isinstance(value, Sequence) and not isinstance(value, str) else 1
    try:
        _canon.ntuple(value, n, name, minimum=minimum)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None
    return tuple(value) if n > 1 or not is_int(value) else int(value)


def check_padding(padding: Any, where: str) -> Any:
    """Upper-cases padding strings and rejects unknown ones; ints and pairs are checked at init."""
    if isinstance(padding, str):
        if padding.upper() not in ("VALID", "SAME", "FULL"):
            raise ValueError(
                f"{where}: `padding` string must be 'VALID', 'SAME' or 'FULL', got {padding!r}."
            )
        return padding.upper()
    return padding


def check_layers(layers: Sequence[Any], where: str) -> tuple[Layer, ...]:
    """Checks combinator children are ``Layer``s (a common slip: ``Relu`` for ``Relu()``)."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            hint = " (call the constructor: `Relu()`, not `Relu`)" if callable(layer) else ""
            raise TypeError(f"{where}: argument {i} must be a Layer{hint}, got {layer!r}.")
    return tuple(layers)


def check_input_shape(input_shape: Any, where: str, ranks: Sequence[int] | None = None) -> Shape:
    """Checks a batched input shape: ints >= 1, except the batch size, which may be -1 ("any").

    Args:
      input_shape: e.g. ``(N, C, H, W)``.
      where: the layer's name, for errors.
      ranks: allowed lengths of the shape (``None``: any length >= 1).

    Returns:
      The shape as a tuple of Python ints.
    """
    if (
        not isinstance(input_shape, Sequence)
        or isinstance(input_shape, str)
        or not all(is_int(d) for d in input_shape)
    ):
        raise TypeError(
            f"{where}: `input_shape` must be a sequence of ints, batch first (e.g. (N, C, H, W)), "
            f"got {input_shape!r}. A tuple of shapes must be merged first (FanInSum(), "
            "FanInConcat()) or split among branches (parallel(...))."
        )
    shape = tuple(int(d) for d in input_shape)
    if ranks is not None and len(shape) not in ranks:
        allowed = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{where}: `input_shape` must have {allowed} entries, got {shape}.")
    if not shape or shape[0] == 0 or shape[0] < -1 or any(d < 1 for d in shape[1:]):
        raise ValueError(
            f"{where}: `input_shape` entries must be >= 1 (the batch size may be -1 for any), "
            f"got {shape}."
        )
    return shape


# ---------------------------------------------------------------------------------------------
# Shapes without computing anything.
# ---------------------------------------------------------------------------------------------


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), tree)


def infer_shape(
    fn: Callable[[Any, jax.Array], jax.Array], params: Any, input_shape: Shape, dtype=jnp.float32
) -> Shape:
    """Shape of ``fn(params, x)`` for an ``x`` of ``input_shape``, traced abstractly.

    The layer's own apply code computes the shape, so ``init`` and ``apply`` cannot disagree, and
    the op's argument checks run at ``init`` time. A batch size of -1 is traced as 1.
    """
    concrete = (1 if input_shape[0] == -1 else input_shape[0], *input_shape[1:])
    out = jax.eval_shape(fn, _abstract(params), jax.ShapeDtypeStruct(concrete, dtype))
    shape = tuple(out.shape)
    return (-1, *shape[1:]) if input_shape[0] == -1 else shape


def output_shape(layer: Layer, input_shape: Any) -> Any:
    """``layer.init``'s output shape, traced abstractly (no parameters are drawn).

    >>> from fconv.layers import Conv
    >>> output_shape(Conv(4, 3), (-1, 1, 8, 8))
    (-1, 4, 6, 6)
    """
    result = []

    def run(rng):
        shape, params = layer.init(rng, input_shape)
        result.append(shape)
        return params

    jax.eval_shape(run, jax.random.key(0))
    return result[0]


# ---------------------------------------------------------------------------------------------
# Building blocks for layer constructors.
# ---------------------------------------------------------------------------------------------


def split_rng(rng: Any, n: int) -> list[Any]:
    """``n`` independent keys from ``rng``, or ``n`` Nones when ``rng`` is None."""
    if rng is None:
        return [None] * n
    return list(jax.random.split(rng, n))


def leaf(
    name: str,
    init: Callable[[Any, Any], tuple[Any, Any]],
    fn: Callable[[Any, jax.Array, Any, bool], jax.Array],
    meta: Mapping[str, Any] | None = None,
) -> Layer:
    """A stateless layer whose apply is ``fn(params, x, rng, train)`` in ``named_scope``.

    With a ``state`` (``()`` for a stateless layer) apply returns ``(y, state)`` unchanged, so
    stateless and stateful layers compose in ``serial``.
    """
    scope = f"fconv.{name}"

    def apply(params, x, *, rng=None, train=False, state=None):
        with jax.named_scope(scope):
            y = fn(params, x, rng, train)
        return y if state is None else (y, state)

    return Layer(init, apply, meta=meta)


def parameter_free(
    name: str,
    fn: Callable[[jax.Array], jax.Array],
    shape_fn: Callable[[Shape], Shape] | None = None,
) -> Layer:
    """A layer without parameters: ``y = fn(x)``; shape from ``shape_fn`` or traced."""

    def init(rng, input_shape):
        del rng
        input_shape = check_input_shape(input_shape, name)
        if shape_fn is not None:
            return shape_fn(input_shape), {}
        return infer_shape(lambda p, x: fn(x), {}, input_shape), {}

    return leaf(name, init, lambda params, x, rng, train: fn(x))
