"""fconv.testing.check_vjp catches wrong backward rules and reports per-argument errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fconv.ops import conv
from fconv.testing import VJPCheckError, check_vjp


def _square_with_bwd(scale):
    @jax.custom_vjp
    def f(x):
        return x**2

    f.defvjp(lambda x: (x**2, x), lambda x, g: (scale * 2 * x * g,))
    return f


def test_correct_rule_passes_and_report_has_one_row_per_argument():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    f = functools.partial(conv, stride=2, padding="SAME")
    report = check_vjp(f, functools.partial(f, vjp="autodiff"), x, w)
    assert report.ok
    assert report.argnums == (0, 1)
    assert max(report.rel_err) <= 1e-5 and max(report.fd_rel_err) <= 1e-6
    assert "rel err vs finite diff" in str(report)


def test_wrong_rule_is_caught_against_reference_and_finite_differences():
    x = jnp.linspace(-1.0, 1.0, 7)
    with pytest.raises(VJPCheckError, match="out of tolerance") as err:
        check_vjp(_square_with_bwd(1.5), lambda x: x**2, x)
    report = err.value.report
    assert report.rel_err[0] == pytest.approx(0.5, rel=1e-6)
    assert report.fd_rel_err[0] > 0.1


def test_no_raise_mode_and_jacfwd_reference():
    x = jnp.linspace(-1.0, 1.0, 5)
    report = check_vjp(
        _square_with_bwd(2.0), lambda x: x**2, x, reference="jacfwd", raise_on_failure=False
    )
    assert not report.ok and report.rel_err[0] == pytest.approx(1.0, rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`reference`"):
        check_vjp(jnp.sin, jnp.sin, jnp.ones(3), reference="fd")
    with pytest.raises(ValueError, match="`argnums`"):
        check_vjp(jnp.sin, jnp.sin, jnp.ones(3), argnums=(1,))


def test_finite_differences_that_leave_the_domain_fail_instead_of_scoring_zero():
    @jax.custom_vjp
    def wrong_sqrt(x):
        return jnp.sqrt(x)

    # d sqrt(x)/dx is 0.5 / sqrt(x): 0.6 is wrong, and both sides of the reference agree on it.
    wrong_sqrt.defvjp(lambda x: (jnp.sqrt(x), x), lambda x, g: (g * 0.6 / jnp.sqrt(x),))
    x = jnp.linspace(0.5, 2.0, 16).at[0].set(1e-7)  # x - eps v < 0: sqrt gives NaN there
    report = check_vjp(wrong_sqrt, wrong_sqrt, x, raise_on_failure=False)
    assert report.fd_rel_err == (float("inf"),) and not report.ok
