"""The test run's XLA optimisation setting (tests/conftest.py).

The tests run with `jax_disable_most_optimizations` (compiling is most of their time), and
tests marked `xla_optimized` with XLA's default optimisations. A small gradient whose float32
rounding differs between the two tells them apart; each in-process result must equal a fresh
interpreter's with the same setting, in the test and in the subprocesses it starts.
"""

from __future__ import annotations

import os

import pytest

from conftest import run_python

# Prints the SHA-256 (16 hex digits) of the gradients of a strided convolution and a
# reduction, compiled by a function defined here (so no earlier compile of it is reused).
_PROBE = r"""
import hashlib
import jax, jax.numpy as jnp, numpy as np

def probe():
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  k = jax.random.normal(jax.random.key(1), (4, 4, 3, 5))

  def f(x, k):
    y = jax.lax.conv_general_dilated(
      x, k, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.tanh(y).sum() + jnp.sum(jnp.sin(x) * jnp.cos(x) ** 2)

  grads = jax.jit(jax.grad(f, argnums=(0, 1)))(x, k)
  return hashlib.sha256(b''.join(np.asarray(g).tobytes() for g in grads)).hexdigest()[:16]
"""


def _in_process() -> str:
  namespace = {}
  exec(_PROBE, namespace)  # pylint: disable=exec-used
  return namespace['probe']()


def _subprocess(disable: str | None = None) -> str:
  env = None if disable is None else {'JAX_DISABLE_MOST_OPTIMIZATIONS': disable}
  res = run_python(_PROBE + '\nprint(probe())', env)
  assert res.returncode == 0, res.stderr[-2000:]
  return res.stdout.strip()


needs_default_setting = pytest.mark.skipif(
  os.environ.get('JAX_DISABLE_MOST_OPTIMIZATIONS') != '1',
  reason='the run turned jax_disable_most_optimizations off (JAX_DISABLE_MOST_OPTIMIZATIONS)',
)


@needs_default_setting
def test_tests_and_their_subprocesses_run_without_most_optimisations():
  import jax  # pylint: disable=g-import-not-at-top

  assert jax.config.read('jax_disable_most_optimizations') is True
  assert _in_process() == _subprocess() == _subprocess('1')


@needs_default_setting
@pytest.mark.xla_optimized
def test_a_marked_test_and_its_subprocesses_get_the_default_optimisations():
  import jax  # pylint: disable=g-import-not-at-top

  assert jax.config.read('jax_disable_most_optimizations') is False
  assert os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] == '0'
  optimised = _in_process()
  assert optimised == _subprocess() == _subprocess('0')
  assert optimised != _subprocess('1')  # the probe does tell the two apart
