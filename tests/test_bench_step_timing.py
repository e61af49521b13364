"""benchmarks/step_timing.py: the timing loop of the JAX benchmark scripts."""

import importlib.util
import sys

import jax.numpy as jnp

from conftest import REPO


def _load():
  sys.path.insert(0, str(REPO / 'benchmarks'))
  try:
    spec = importlib.util.spec_from_file_location(
      '_bench_step_timing', REPO / 'benchmarks' / 'step_timing.py'
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(str(REPO / 'benchmarks'))
  return module


def _step(state, batch):
  """state + batch, metrics = the state before the step (so the last call is visible)."""
  return state + batch, {'before': state}


def test_timed_steps_threads_state_and_times_every_step():
  m = _load()
  state, metrics, times = m.timed_steps(_step, jnp.float32(1.0), jnp.float32(2.0), 4)
  assert float(state) == 1.0 + 4 * 2.0  # four calls, each fed the previous state
  assert float(metrics['before']) == 1.0 + 3 * 2.0  # the last call's metrics
  assert len(times) == 4 and all(t > 0 for t in times)


def test_warm_up_runs_n_steps_and_times_the_first():
  m = _load()
  state, metrics, first_s = m.warm_up(_step, jnp.float32(0.0), jnp.float32(3.0), 3)
  assert float(state) == 9.0 and float(metrics['before']) == 6.0
  assert first_s > 0
  state, metrics, _ = m.warm_up(_step, jnp.float32(0.0), jnp.float32(3.0), 1)
  assert float(state) == 3.0 and float(metrics['before']) == 0.0
