"""Data-parallel training on one host or many, on JAX's own SPMD and distributed runtime.

The model is replicated and the batch split: a 1-D :class:`jax.sharding.Mesh` with the axis
``"batch"`` spans the devices, every batch is sharded along its first axis
(``NamedSharding(mesh, P("batch"))``: device ``k`` of ``n`` holds rows ``[k*B/n, (k+1)*B/n)``)
and the :class:`fconv.train.TrainState` -- parameters, optimizer state, BatchNorm statistics --
is replicated (``P()``). The step is :func:`fconv.train.make_train_step_fn`, unchanged, jitted
with those shardings: it still computes the mean loss over the *global* batch, so XLA's SPMD
partitioner inserts the all-reduces that average the gradients (and that give BatchNorm the
statistics of the whole batch). One step on ``n`` devices therefore equals the single-device
step on the same batch, up to floating-point summation order.

Batch sizes not divisible by the number of devices are refused with a ``ValueError`` (naming
both) rather than padded or given unequal shards: padding would change the mean loss and the
BatchNorm statistics, and unequal shards are not expressible as a ``NamedSharding``.

Several processes (hosts): call :func:`initialize_distributed` first in every process, before
any other JAX call. :func:`make_mesh` then spans the devices of all processes, ordered by
process, so process ``i`` of ``P`` feeds rows ``[i*B/P, (i+1)*B/P)`` of each global batch
(:func:`local_rows`); it loads only those rows and :func:`shard_local_batch` assembles the
global array with :func:`jax.make_array_from_process_local_data`. Every process runs the same
program on the same (deterministic) global batch order; :func:`fconv.train.fit` lets only
process 0 write checkpoints and metrics.

Example (one host, every device):
    >>> from fconv import models, optim, train
    >>> mesh = make_mesh()
    >>> model = models.lenet5(4, (1, 8, 8))
    >>> opt = optim.sgd(0.1)
    >>> state = replicate(train.init_train_state(model, opt, (1, 8, 8), seed=0), mesh)
    >>> step = make_parallel_train_step(model, opt, mesh)
    >>> batch = shard_batch((np.zeros((8, 1, 8, 8), np.float32), np.zeros(8, np.int32)), mesh)
    >>> state, metrics = step(state, batch)
    >>> x = batch[0]
    >>> int(state.step), x.sharding.spec == P("batch"), len(x.addressable_shards) == mesh.size
    (1, True, True)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fconv import optim, train
from fconv.losses import softmax_cross_entropy
from fconv.train_state import _check_int

__all__ = [
    "BATCH_AXIS",
    "initialize_distributed",
    "is_main_process",
    "make_mesh",
    "batch_sharding",
    "replicated_sharding",
    "local_rows",
    "shard_batch",
    "shard_local_batch",
    "replicate",
    "host_local",
    "make_parallel_train_step",
    "make_parallel_eval_step",
]

#: Name of the mesh axis the batch is split along.
BATCH_AXIS = "batch"

_ADDRESS_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d+)$")


# --------------------------------------------------------------------------------------------
# Processes.


def initialize_distributed(
    coordinator: str, num_processes: int, process_id: int, *, timeout: int = 300
) -> None:
    """Joins this process to a multi-process JAX job (:func:`jax.distributed.initialize`).

    Call it in every process, first thing -- before any other JAX computation or device query.
    Process 0 also runs the coordinator service at ``coordinator``; the others connect to it.
    On CPU the cross-process collectives are gloo over TCP (``jax_cpu_collectives_implementation
    = "gloo"`` is set here; GPUs use NCCL and TPUs their interconnect, whatever this option
    says). Afterwards :func:`jax.devices` lists the devices of every process and
    :func:`jax.local_devices` this process's own.

    Args:
        coordinator: ``"HOST:PORT"`` of process 0, reachable from every process (an IPv6 host
            in brackets, ``"[::1]:1234"``).
        num_processes: Number of processes in the job, >= 1.
        process_id: This process's index, ``0 <= process_id < num_processes``.
        timeout: Seconds to wait for all processes to join; default 300.

    Raises:
        ValueError: For a malformed address or out-of-range counts.
        RuntimeError: From JAX, if it was already initialised or a computation already ran.
    """
    num_processes = _check_int("num_processes", num_processes, lo=1)
    process_id = _check_int("process_id", process_id, lo=0)
    if process_id >= num_processes:
        raise ValueError(
            f"`process_id` must be < `num_processes` ({num_processes}), got {process_id}"
        )
    m = _ADDRESS_RE.match(str(coordinator))
    if m is None or not 1 <= int(m.group(1)) <= 65535:
        raise ValueError(f"`coordinator` must be HOST:PORT (port 1-65535), got {coordinator!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=_check_int("timeout", timeout, lo=1),
    )


def is_main_process() -> bool:
    """True in process 0, the one that writes files and prints (always True in one process)."""
    return jax.process_index() == 0


# --------------------------------------------------------------------------------------------
# Mesh and shardings.


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh with the axis ``"batch"`` over all devices, or the first ``num_devices``.

    Devices are ordered by (process index, device id), so each process's devices are
    contiguous. With several processes, ``num_devices`` is the total over all of them and
    each process contributes its first ``num_devices / process_count`` local devices.

    Args:
        num_devices: Number of devices, ``1 <= num_devices <= jax.device_count()`` and a
            multiple of ``jax.process_count()``; default None takes them all.

    Returns:
        The :class:`jax.sharding.Mesh`.

    Raises:
        TypeError: If ``num_devices`` is not an int.
        ValueError: If it is out of range or not a multiple of the number of processes.
    """
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if num_devices is None:
        return Mesh(np.array(devices), (BATCH_AXIS,))
    n = _check_int("num_devices", num_devices, lo=1)
    if n > len(devices):
        raise ValueError(
            f"the number of devices asked for ({n}) must be <= the number available "
            f"({len(devices)}); on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N (set "
            f"before JAX starts) makes N"
        )
    procs = jax.process_count()
    if n % procs:
        raise ValueError(
            f"the number of devices asked for ({n}) must be a multiple of the number of "
            f"processes ({procs}): every process feeds the same number of devices"
        )
    per_process = n // procs
    chosen = []
    for p in range(procs):
        own = [d for d in devices if d.process_index == p]
        if len(own) < per_process:
            raise ValueError(
                f"{n} devices need {per_process} in each process, but process {p} has {len(own)}"
            )
        chosen.extend(own[:per_process])
    return Mesh(np.array(chosen), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """``NamedSharding(mesh, P("batch"))``: the first axis split over the mesh."""
    return NamedSharding(mesh, P(BATCH_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """``NamedSharding(mesh, P())``: a full copy on every device of the mesh."""
    return NamedSharding(mesh, P())


def _check_divisible(batch_size: int, mesh: Mesh) -> None:
    if batch_size % mesh.size:
        raise ValueError(
            f"batch_size ({batch_size}) must be divisible by the number of devices "
            f"({mesh.size}): each device takes an equal share of every batch; choose another "
            f"batch size or number of devices"
        )


def local_rows(batch_size: int, mesh: Mesh) -> slice:
    """The rows of each global batch that this process's devices hold.

    With ``P`` processes of equally many devices, process ``i`` holds rows
    ``[i * B / P, (i + 1) * B / P)``; in a single process, all of them.

    Args:
        batch_size: The global batch size ``B``, divisible by ``mesh.size``.
        mesh: A mesh from :func:`make_mesh`.

    Returns:
        ``slice(start, stop)``.

    Raises:
        ValueError: If ``batch_size`` is not divisible by the number of devices, or this
            process has no device in ``mesh``.
    """
    batch_size = _check_int("batch_size", batch_size, lo=1)
    _check_divisible(batch_size, mesh)
    index_map = batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
    if not index_map:
        raise ValueError(f"process {jax.process_index()} has no device in the mesh")
    bounds = sorted(idx[0].indices(batch_size)[:2] for idx in index_map.values())
    start, stop = bounds[0][0], bounds[-1][1]
    if sum(b - a for a, b in bounds) != stop - start:  # pragma: no cover - make_mesh orders
        raise ValueError("this process's devices do not hold contiguous rows of the batch")
    return slice(start, stop)


def _leading_sizes(tree: Any) -> set[int]:
    return {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in jax.tree.leaves(tree)}


def shard_local_batch(local_batch: Any, mesh: Mesh, batch_size: int) -> Any:
    """Global batch arrays from this process's rows (:func:`local_rows`) of each leaf.

    Args:
        local_batch: A pytree (e.g. ``(x, y)``) of host arrays whose first axis holds rows
            ``local_rows(batch_size, mesh)`` of the global batch: ``x`` ``(B / P, C, H, W)``,
            ``y`` ``(B / P,)`` with ``P`` processes (``B`` rows in a single process).
        mesh: A mesh from :func:`make_mesh`.
        batch_size: The global batch size ``B``.

    Returns:
        The same pytree of global :class:`jax.Array` s of first axis ``B``, sharded
        ``P("batch")``.

    Raises:
        ValueError: If ``batch_size`` is not divisible by the number of devices or a leaf does
            not have ``len(local_rows(...))`` rows.
    """
    rows = local_rows(batch_size, mesh)
    want = rows.stop - rows.start
    sizes = _leading_sizes(local_batch)
    if sizes != {want}:
        raise ValueError(
            f"every leaf of local_batch must have {want} rows (this process's share of "
            f"batch_size {batch_size}), got leading sizes {sorted(sizes)}"
        )
    sharding = batch_sharding(mesh)
    if sharding.is_fully_addressable:
        return jax.device_put(local_batch, sharding)
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(
            sharding, np.asarray(a), (batch_size, *np.shape(a)[1:])
        ),
        local_batch,
    )


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """A global batch, the same in every process, split along its first axis over ``mesh``.

    Each process places only the rows its own devices hold (:func:`local_rows`).

    Args:
        batch: A pytree (e.g. ``(x, y)``) of arrays with the same first axis ``B``: ``x``
            ``(B, C, H, W)``, ``y`` ``(B,)``.
        mesh: A mesh from :func:`make_mesh`.

    Returns:
        The pytree of :class:`jax.Array` s sharded ``P("batch")``: device ``k`` of ``n`` holds
        rows ``[k * B / n, (k + 1) * B / n)``.

    Raises:
        ValueError: If the leaves differ in their first axis, or ``B`` is not divisible by the
            number of devices (naming both).
    """
    sizes = _leading_sizes(batch)
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"every leaf of batch must have the same first (batch) axis, got sizes {sorted(sizes)}"
        )
    batch_size = sizes.pop()
    rows = local_rows(batch_size, mesh)
    return shard_local_batch(jax.tree.map(lambda a: a[rows], batch), mesh, batch_size)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """A copy of ``tree`` on every device of ``mesh`` (sharding ``P()``).

    With several processes ``tree`` must hold the same values in every process (as a state
    from :func:`fconv.train.init_train_state` with the same seed does).

    Args:
        tree: A pytree of arrays (e.g. a :class:`fconv.train.TrainState`).
        mesh: A mesh from :func:`make_mesh`.

    Returns:
        The same pytree of replicated :class:`jax.Array` s.
    """
    sharding = replicated_sharding(mesh)
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def place(a):
        if isinstance(a, jax.Array) and a.sharding.is_equivalent_to(sharding, a.ndim):
            return a  # already replicated over this mesh (e.g. a train step's output state)
        return jax.make_array_from_process_local_data(sharding, np.asarray(a))

    return jax.tree.map(place, tree)


def host_local(tree: Any) -> Any:
    """Replicated multi-device arrays in ``tree`` as single-device arrays of this process.

    Returns each fully replicated :class:`jax.Array` leaf's copy on this process's first
    device of its mesh (no transfer), so it can be used by single-device code -- evaluation,
    ``np.asarray``, checkpointing -- in any process. Other leaves are returned unchanged.
    """

    def local(a):
        multi_device = isinstance(a, jax.Array) and len(a.sharding.device_set) > 1
        return a.addressable_data(0) if multi_device and a.is_fully_replicated else a

    return jax.tree.map(local, tree)


# --------------------------------------------------------------------------------------------
# The step.


def make_parallel_eval_step(
    model: Any, mesh: Mesh, *, loss: train.Loss = softmax_cross_entropy
) -> Callable[[Any, Any, tuple[Any, Any]], dict[str, jax.Array]]:
    """:func:`fconv.train.make_eval_step` run SPMD over ``mesh``: batch split, params replicated.

    The body is :func:`fconv.train.make_eval_step_fn`, jitted with ``in_shardings``
    ``(P(), P(), P("batch"))``; the per-example outputs come back replicated (``P()``), so every
    process can read all of them (:func:`host_local`).

    Args:
        model, loss: As for :func:`fconv.train.make_eval_step`.
        mesh: A mesh from :func:`make_mesh`.

    Returns:
        ``eval_step(params, model_state, batch) -> {"logits", "loss", "correct"}``, with
        ``params`` and ``model_state`` from :func:`replicate` and ``batch`` from
        :func:`shard_batch` (its size divisible by the number of devices).
    """
    replicated = replicated_sharding(mesh)
    return jax.jit(
        train.make_eval_step_fn(model, loss=loss),
        in_shardings=(replicated, replicated, batch_sharding(mesh)),
        out_shardings=replicated,
    )


def make_parallel_train_step(
    model: Any,
    optimizer: optim.Optimizer,
    mesh: Mesh,
    *,
    weight_decay: float = 0.0,
    loss: train.Loss = softmax_cross_entropy,
    augment: train.Augment | None = None,
) -> Callable[[train.TrainState, tuple[Any, Any]], tuple[train.TrainState, dict[str, jax.Array]]]:
    """:func:`fconv.train.make_train_step` run SPMD over ``mesh``: batch split, state replicated.

    The step body is :func:`fconv.train.make_train_step_fn`, jitted with ``in_shardings``
    ``(P(), P("batch"))`` and ``out_shardings`` ``(P(), P())``, the state donated. Its loss is
    the mean over the global batch, so the gradients XLA computes are averaged over all devices
    (an all-reduce), BatchNorm normalises with the statistics of the global batch, and dropout
    and augmentation draw the same numbers as on one device (JAX's partitionable threefry).

    Args:
        model, optimizer, weight_decay, loss, augment: As for
            :func:`fconv.train.make_train_step`.
        mesh: A mesh from :func:`make_mesh`.

    Returns:
        ``train_step(state, batch) -> (state, metrics)``. ``state`` comes from :func:`replicate`
        and ``batch``, ``(x, y)``, from :func:`shard_batch` (in a single process, host arrays
        are also sharded on the way in); the returned state and metrics are replicated. The
        jitted function itself is ``train_step.jitted`` (for ``.lower`` and the like).

    Raises:
        ValueError: If ``weight_decay`` is negative; from ``train_step``, if the batch size is
            not divisible by the number of devices.
    """
    body = train.make_train_step_fn(
        model, optimizer, weight_decay=weight_decay, loss=loss, augment=augment
    )
    replicated = replicated_sharding(mesh)
    jitted = jax.jit(
        body,
        in_shardings=(replicated, batch_sharding(mesh)),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )

    @functools.wraps(body)
    def train_step(state, batch):
        for size in _leading_sizes(batch):
            if size >= 0:
                _check_divisible(size, mesh)
        return jitted(state, batch)

    train_step.jitted = jitted  # type: ignore[attr-defined]
    return train_step
