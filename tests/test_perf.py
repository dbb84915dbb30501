"""fconv.perf: the fast-CPU and deterministic switches set their XLA flags before the backend
starts, not after."""

from __future__ import annotations

import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

from fconv import perf


def _last_line_of_fresh_process(code: str) -> str:
    """Runs ``code`` in a new Python without XLA_FLAGS (XLA reads them once per process)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_enable_fast_cpu_refuses_once_jax_has_started():
    jnp.ones(1).block_until_ready()
    with pytest.raises(RuntimeError, match="before JAX runs anything"):
        perf.enable_fast_cpu()


def test_enable_fast_cpu_in_a_fresh_process_sets_the_flag_and_conv_still_matches():
    code = (
        "from fconv import perf; perf.enable_fast_cpu(); import jax, jax.numpy as jnp, numpy as np;"
        "from fconv.ops import conv; import os;"
        "x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 8, 8)), jnp.float32);"
        "w = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3, 3, 3)), jnp.float32);"
        "g = jax.grad(lambda x: (conv(x, w, padding='SAME') ** 2).sum())(x);"
        "r = jax.grad(lambda x: (conv(x, w, padding='SAME', vjp='autodiff') ** 2).sum())(x);"
        "assert perf.fast_cpu_enabled();"
        "print(float(jnp.abs(g - r).max() / jnp.abs(r).max()))"
    )
    assert float(_last_line_of_fresh_process(code)) < 1e-5


def test_enable_deterministic_refuses_once_jax_has_started():
    jnp.ones(1).block_until_ready()
    with pytest.raises(RuntimeError, match=r"enable_deterministic\(\) must be called before JAX"):
        perf.enable_deterministic()


def test_enable_deterministic_in_a_fresh_process_sets_the_flag_once_and_jax_still_runs():
    code = (
        "from fconv import perf; perf.enable_deterministic(); perf.enable_deterministic();"
        "import os, jax.numpy as jnp; assert perf.deterministic_enabled();"
        "assert os.environ['XLA_FLAGS'].count(perf.DETERMINISTIC_FLAG) == 1;"
        "assert not perf.fast_cpu_enabled(); print(float(jnp.arange(4.0).sum()))"
    )
    assert _last_line_of_fresh_process(code) == "6.0"


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("", False),
        ("--xla_gpu_deterministic_ops=true", True),
        ("--xla_gpu_deterministic_ops", True),  # a bare boolean flag means true
        ("--xla_gpu_deterministic_ops=true --xla_gpu_deterministic_ops=false", False),  # last wins
        ("--xla_gpu_deterministic_ops=false --xla_gpu_deterministic_ops=true", True),
        ("--xla_gpu_deterministic_ops=1", True),  # XLA's booleans also read 1 / 0
        ("--xla_gpu_deterministic_ops_extra=true", False),  # another flag with the same prefix
    ],
)
def test_flag_checks_read_xla_flags_as_xla_does(monkeypatch, flags, expected):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert perf.deterministic_enabled() is expected
    assert not perf.fast_cpu_enabled()


def test_a_flag_overridden_later_in_xla_flags_is_appended_again(monkeypatch):
    monkeypatch.setattr(perf, "_backend_started", lambda: False)
    flag = "--xla_gpu_deterministic_ops"
    monkeypatch.setenv("XLA_FLAGS", f"{flag}=1 {flag}=0")
    perf.enable_deterministic()
    assert perf.deterministic_enabled()
    perf.enable_deterministic()  # in effect now: nothing more is added
    assert os.environ["XLA_FLAGS"].endswith("=0 --xla_gpu_deterministic_ops=true")
