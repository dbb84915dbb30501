"""Receptive field arithmetic: size, jump and start of every layer's units, per spatial dim.

The lectures' recurrence ("Receptive field", Introduction to ConvNets): a layer with kernel k,
dilation d (effective kernel ``k' = d (k - 1) + 1``), stride s and low-side padding ``pad_lo``
maps the previous layer's receptive field size r, jump j (distance in input pixels between two
adjacent units, the "effective stride") and start (input coordinate of the centre of the first
unit's receptive field) to::

    r_out     = r_in + (k' - 1) j_in
    j_out     = j_in s
    start_out = start_in + ((k' - 1) / 2 - pad_lo) j_in

from ``r = 1, j = 1, start = 0`` at the input. Coordinates are pixel indices (the first input
pixel's centre is 0; add 0.5 for the convention in which pixel centres are half-integers). Unit
``i`` of a layer is centred at ``start + i j``: with ``floor(k / 2)`` padding on every odd-kernel
layer, ``start`` stays 0 and unit ``x`` is centred at ``S x`` (S the product of the strides), as
the lecture states. The receptive field near the border extends into the zero padding; only its
part inside the image is connected.

Two entry points:

* ``receptive_field(specs)`` over an explicit list of ``LayerSpec`` (kernel, stride, padding on
  the low side, dilation), for any network, written down by hand;
* ``specs_from_model(model, input_shape)``, which reads the specs off a model built with
  ``fconv.layers`` once layers carry their configuration in ``layer.meta`` (see that function).

``format_table(rows)`` renders the result as a Markdown table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from fconv.ops import _canon

__all__ = ["LayerSpec", "RFRow", "format_table", "receptive_field", "specs_from_model"]

Ints = int | Sequence[int]


class LayerSpec(NamedTuple):
    """The geometry of one layer with a spatial effect (a convolution or a pooling).

    Each size is an int (every spatial dim) or one int per spatial dim.

    Attributes:
      name: a label for the table.
      kernel: kernel (window) size k.
      stride: stride s. Default 1.
      padding_lo: padding before the first input cell (the low side). Default 0. For ``"SAME"``
        this is ``floor(total / 2)`` (the odd pixel goes on the high side); for ``"FULL"``
        ``k' - 1``.
      dilation: kernel dilation d. Default 1.
      out_size: the layer's output spatial size, when known (shown in the table). Default None.
      note: a remark for the table (e.g. "residual: main branch"). Default "".
    """

    name: str
    kernel: Ints
    stride: Ints = 1
    padding_lo: Ints = 0
    dilation: Ints = 1
    out_size: tuple[int, ...] | None = None
    note: str = ""


class RFRow(NamedTuple):
    """One layer of ``receptive_field``'s result; tuples hold one entry per spatial dim.

    Attributes:
      name, out_size, note: from the ``LayerSpec``.
      kernel: effective kernel ``k' = d (k - 1) + 1``.
      stride: the layer's stride s.
      padding_lo: the layer's low-side padding.
      rf: receptive field size r in input pixels.
      jump: distance j in input pixels between adjacent units (product of the strides so far).
      start: input coordinate of the centre of unit 0's receptive field.
    """

    name: str
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding_lo: tuple[int, ...]
    rf: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]
    out_size: tuple[int, ...] | None = None
    note: str = ""

    def center(self, index: Ints) -> tuple[float, ...]:
        """Input coordinate of the centre of unit ``index``'s receptive field: start + i j."""
        idx = _canon.ntuple(index, len(self.jump), "index", minimum=0)
        return tuple(st + i * j for st, i, j in zip(self.start, idx, self.jump))


def _infer_ndim(specs: Sequence[LayerSpec]) -> int | None:
    lengths = set()
    for spec in specs:
        for value in (spec.kernel, spec.stride, spec.padding_lo, spec.dilation):
            if isinstance(value, Sequence) and not isinstance(value, str):
                lengths.add(len(value))
    if len(lengths) > 1:
        raise ValueError(
            f"LayerSpec sizes must all have the same number of spatial dims, got lengths "
            f"{sorted(lengths)}."
        )
    return lengths.pop() if lengths else None


def _spec_tuple(value: Any, n: int, name: str, spec: LayerSpec, minimum: int) -> tuple[int, ...]:
    try:
        return _canon.ntuple(value, n, name, minimum=minimum)
    except (TypeError, ValueError) as e:
        raise type(e)(f"LayerSpec {spec.name!r}: {e}") from None


def receptive_field(specs: Sequence[LayerSpec], *, ndim: int | None = None) -> list[RFRow]:
    """Receptive field size, jump and start after each layer of ``specs``, in order.

    Args:
      specs: the layers with a spatial effect, input to output (``LayerSpec``).
      ndim: number of spatial dims. Default None: the length of the sizes given as tuples, or 2
        when every size is an int.

    Returns:
      One ``RFRow`` per spec.

    Raises:
      TypeError: a spec that is not a ``LayerSpec``, non-int sizes.
      ValueError: sizes with different numbers of dims, kernel/stride/dilation ``< 1``, negative
        padding.

    >>> rows = receptive_field([LayerSpec("conv3", 3, padding_lo=1), LayerSpec("pool2", 2, 2)])
    >>> [(r.name, r.rf, r.jump, r.start) for r in rows]
    [('conv3', (3, 3), (1, 1), (0.0, 0.0)), ('pool2', (4, 4), (2, 2), (0.5, 0.5))]
    """
    for i, spec in enumerate(specs):
        if not isinstance(spec, LayerSpec):
            raise TypeError(f"`specs` entry {i} must be a LayerSpec, got {spec!r}.")
    inferred = _infer_ndim(specs)
    if ndim is None:
        ndim = 2 if inferred is None else inferred
    elif inferred is not None and inferred != ndim:
        raise ValueError(f"`ndim` (={ndim}) disagrees with the specs' {inferred} spatial dims.")
    r, j, start = (1,) * ndim, (1,) * ndim, (0.0,) * ndim
    rows = []
    for spec in specs:
        k = _spec_tuple(spec.kernel, ndim, "kernel", spec, 1)
        s = _spec_tuple(spec.stride, ndim, "stride", spec, 1)
        lo = _spec_tuple(spec.padding_lo, ndim, "padding_lo", spec, 0)
        d = _spec_tuple(spec.dilation, ndim, "dilation", spec, 1)
        eff = tuple(di * (ki - 1) + 1 for ki, di in zip(k, d))
        start = tuple(
            st + ((e - 1) / 2 - p) * jj for st, e, p, jj in zip(start, eff, lo, j, strict=True)
        )
        r = tuple(ri + (e - 1) * jj for ri, e, jj in zip(r, eff, j))
        j = tuple(jj * si for jj, si in zip(j, s))
        out = None if spec.out_size is None else tuple(spec.out_size)
        rows.append(RFRow(spec.name, eff, s, lo, r, j, start, out, spec.note))
    return rows


def _cell(values: Any) -> str:
    if values is None:
        return ""
    if len(set(values)) == 1:
        values = values[:1]
    return "×".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def format_table(rows: Sequence[RFRow]) -> str:
    """A Markdown table of ``receptive_field``'s rows, one line per layer, readable as text.

    A value equal in every spatial dim is printed once (``3``), otherwise per dim (``3×5``).

    >>> print(format_table(receptive_field([LayerSpec("conv3", 3, padding_lo=1)])))
    | layer | k' | s | pad lo | RF | jump | start | size | note |
    |-------|----|---|--------|----|------|-------|------|------|
    | conv3 | 3  | 1 | 1      | 3  | 1    | 0     |      |      |
    """
    header = ["layer", "k'", "s", "pad lo", "RF", "jump", "start", "size", "note"]
    body = [
        [
            row.name,
            _cell(row.kernel),
            _cell(row.stride),
            _cell(row.padding_lo),
            _cell(row.rf),
            _cell(row.jump),
            _cell(row.start),
            _cell(row.out_size),
            row.note,
        ]
        for row in rows
    ]
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(b) for b in body)])


# ---------------------------------------------------------------------------------------------
# Reading the specs off a model: needs ``layer.meta`` / ``layer.children``.
# ---------------------------------------------------------------------------------------------
#
# Expected metadata (the proposal for fconv.layers; absent attributes read as None / ()):
#   Conv, Im2colConv, LocallyConnected, TiledConv:
#       meta = {"kind": "conv", "name": ..., "kernel": kernel_size, "stride": stride,
#               "padding": padding, "dilation": dilation, "layout": layout}
#   MaxPool, AvgPool, LpPool:  meta = {"kind": "pool", ..., "stride": stride or window,
#                                      "dilation": 1}
#   GlobalAvgPool, GlobalMaxPool:  {"kind": "global_pool", "name": ..., "layout": layout}
#   AdaptiveAvgPool, AdaptiveMaxPool:  {"kind": "adaptive_pool", "name": ...,
#                                       "output_size": output_size}
#   ConvTranspose: {"kind": "conv_transpose", ...}; SpatialPyramidPool: {"kind": "spp", ...}
#   serial(...):   meta = {"kind": "serial"},   children = the layers
#   parallel(...): meta = {"kind": "parallel"}, children = the layers
#   residual(block, shortcut): meta = {"kind": "residual"}, children = (block, shortcut)
#   every other leaf: meta None; it must keep the spatial size (activations, norms, dropout,
#   maxout) or drop the spatial dims altogether (Flatten, Dense after it), where the walk stops.

_STOP = object()


def _spatial(shape: Sequence[int], layout: str | None) -> tuple[int, ...]:
    return tuple(shape[1:-1]) if layout == "channels_last" else tuple(shape[2:])


def _output_shape(layer: Any, shape: Any) -> Any:
    from fconv.layers import output_shape  # local import: fconv.layers does not need this module

    return output_shape(layer, shape)


def _leaf_spec(meta: dict, path: str, in_shape: Any, out_shape: Any, note: str) -> LayerSpec:
    kind = meta.get("kind")
    name = f"{path}:{meta.get('name', kind)}" if path else str(meta.get("name", kind))
    layout = meta.get("layout")
    spatial = _spatial(in_shape, layout)
    n = len(spatial)
    out_size = _spatial(out_shape, layout) if len(out_shape) == len(in_shape) else None
    if kind in ("conv", "pool"):
        k = _canon.ntuple(meta["kernel"], n, "kernel")
        s = _canon.ntuple(meta.get("stride") or meta["kernel"], n, "stride")
        d = _canon.ntuple(meta.get("dilation", 1), n, "dilation")
        eff = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
        pads = _canon.resolve_padding(meta.get("padding", "VALID"), spatial, eff, s)
        lo = tuple(p[0] for p in pads)
        return LayerSpec(name, k, s, lo, d, out_size, note)
    if kind == "global_pool":  # one window over the whole map; the walk stops after it
        return LayerSpec(name, spatial, 1, 0, 1, (1,) * n, note)
    if kind == "adaptive_pool":
        m = _canon.ntuple(meta["output_size"], n, "output_size")
        if any(size % mi for size, mi in zip(spatial, m)):
            raise NotImplementedError(
                f"{name}: adaptive pooling of {spatial} to {m} has bins of unequal size (an "
                "output size that does not divide the input size); its receptive field differs "
                "from unit to unit. Describe it with explicit LayerSpecs."
            )
        k = tuple(size // mi for size, mi in zip(spatial, m))
        return LayerSpec(name, k, k, 0, 1, m, note)
    raise NotImplementedError(
        f"{name}: no receptive-field rule for a layer of kind {kind!r} (transposed convolutions "
        "upsample, giving fractional jumps; spatial pyramid and ROI pooling pool several regions "
        "of different sizes). Describe the network up to it with explicit LayerSpecs."
    )


def _walk(layer: Any, shape: Any, path: str, note: str, specs: list[LayerSpec]) -> Any:
    """Appends the specs of ``layer`` applied to ``shape``; returns its output shape (or _STOP)."""
    meta = getattr(layer, "meta", None) or {}
    children = tuple(getattr(layer, "children", ()) or ())
    kind = meta.get("kind")
    if kind == "serial":
        for i, child in enumerate(children):
            shape = _walk(child, shape, f"{path}.{i}" if path else str(i), note, specs)
            if shape is _STOP:
                return _STOP
        return shape
    if kind == "residual":
        branch = "residual main branch" if not note else f"{note}; residual main branch"
        _walk(children[0], shape, f"{path}.main" if path else "main", branch, specs)
        return _output_shape(layer, shape)
    if kind == "parallel":
        raise NotImplementedError(
            f"{path or 'model'}: parallel branches have one receptive field each; only "
            "residual(...) blocks are followed (along their main branch)."
        )
    out = _output_shape(layer, shape)
    if not isinstance(out, tuple) or not all(isinstance(d, int) for d in out):
        raise NotImplementedError(f"{path or 'model'}: tuple outputs are not followed.")
    if kind is None:
        if len(out) < 3:
            return _STOP  # Flatten / Dense: every later unit sees the whole input
        if tuple(out[2:]) != tuple(shape[2:]) and tuple(out[1:-1]) != tuple(shape[1:-1]):
            raise ValueError(
                f"layer {path or 'model'} changes the spatial size ({shape} -> {out}) but carries "
                "no receptive-field metadata (`layer.meta`); give it one or use LayerSpecs."
            )
        return out
    specs.append(_leaf_spec(meta, path, shape, out, note))
    return _STOP if len(out) < 3 else out


def specs_from_model(model: Any, input_shape: Sequence[int]) -> list[LayerSpec]:
    """The ``LayerSpec`` list of a model built from ``fconv.layers``, for ``receptive_field``.

    Walks ``serial`` containers in order, resolving ``"SAME"`` padding on each layer's real input
    size (traced with ``fconv.layers.output_shape``, nothing computed). Layers without a spatial
    effect (activations, normalisation, dropout, maxout) are skipped; the walk stops where the
    spatial dims end (``Flatten``, a global pool). A ``residual`` block is followed along its
    main branch (the block, not the shortcut; rows are marked "residual main branch"): the
    shortcut's receptive field is smaller, so the block's is that of the sum.

    It needs each layer's configuration: ``layer.meta`` (a dict with keys ``kind``, ``kernel``,
    ``stride``, ``padding``, ``dilation``, ``layout``) and ``layer.children`` (the layers of a
    combinator), as described in this module's source. A model without them raises.

    Args:
      model: a ``Layer`` (or anything with ``init`` and the two attributes).
      input_shape: the input's shape with the batch axis, e.g. ``(-1, 3, 32, 32)``.

    Returns:
      A list of ``LayerSpec`` with ``out_size`` filled in.

    Raises:
      TypeError: a model without ``meta`` (fconv.layers does not record it yet).
      NotImplementedError: parallel branches outside ``residual``, transposed convolutions, SPP,
        ROI pooling, adaptive pooling with unequal bins.
      ValueError: a layer without metadata that changes the spatial size.
    """
    if getattr(model, "meta", None) is None:
        raise TypeError(
            "specs_from_model needs layers that record their configuration in `layer.meta` (and "
            "`layer.children` for combinators); this model has none. Pass receptive_field an "
            "explicit list of LayerSpec(name, kernel, stride, padding_lo, dilation) instead."
        )
    shape = tuple(input_shape)
    specs: list[LayerSpec] = []
    _walk(model, shape, "", "", specs)
    return specs
