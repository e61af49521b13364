"""The timing loop the JAX benchmark scripts share (not part of the gan_jax package).

`ingredients.py`, `r3gan_cost.py` and `throughput.py` time a compiled train step the same way:
call it on a fixed batch, wait with `jax.block_until_ready` on its metrics, read
`time.perf_counter()` around each call. The scripts are plain files, not a package: they put
this folder on `sys.path` and `import step_timing`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax

Step = Callable[[Any, Any], tuple[Any, Any]]


def warm_up(compiled: Step, state: Any, batch: Any, n: int) -> tuple[Any, Any, float]:
  """Runs `n` >= 1 untimed steps; returns (state, metrics, seconds of the first step).

  The first step is timed on its own (it includes any first-call work, e.g. buffer
  allocation); the other n - 1 are dispatched back to back and waited for at the end.
  """
  t0 = time.perf_counter()
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  first_step_s = time.perf_counter() - t0
  for _ in range(n - 1):
    state, metrics = compiled(state, batch)
  jax.block_until_ready((state, metrics))
  return state, metrics, first_step_s


def timed_steps(compiled: Step, state: Any, batch: Any, n: int) -> tuple[Any, Any, list[float]]:
  """Runs `n` steps, each waited for; returns (state, last metrics, step times in seconds)."""
  times, metrics = [], None
  for _ in range(n):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return state, metrics, times
