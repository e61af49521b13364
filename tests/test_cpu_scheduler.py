"""train.cpu_scheduler: XLA's memory-optimised CPU scheduler runs the same step bit for bit
with less temporary memory; a bad value is one clear error."""

import jax
import numpy as np
import pytest

from gan_jax import config as config_lib
from gan_jax.core.losses import get_loss
from gan_jax.core.sharding import batch_sharding, make_mesh, replicate
from gan_jax.core.state import create_state
from gan_jax.core.train_step import jit_train_step, make_train_step
from gan_jax.errors import ConfigError


def _steps(cpu_scheduler, n=2):
  c = config_lib.base_config()
  c.model.g_width = c.model.d_width = 8
  gan, state = create_state(c)
  mesh = make_mesh()
  step = jit_train_step(
    make_train_step(gan, get_loss('non_saturating'), n_critic=1, ema_decay=0.99),
    mesh,
    cpu_scheduler=cpu_scheduler,
  )
  state = replicate(state, mesh)
  rng = np.random.default_rng(0)
  batch = {'image': rng.uniform(-1, 1, (1, 32, 28, 28, 1)).astype(np.float32)}
  batch = jax.device_put(batch, batch_sharding(mesh))
  compiled = step.lower(state, batch).compile()
  for _ in range(n):
    state, metrics = step(state, batch)
  return jax.device_get(state), jax.device_get(metrics), compiled.memory_analysis()


def test_memory_scheduler_gives_the_same_step_bit_for_bit_with_no_more_temp_memory():
  s_conc, m_conc, mem_conc = _steps('concurrency')
  s_mem, m_mem, mem_mem = _steps('memory')
  for a, b in zip(jax.tree_util.tree_leaves(s_conc), jax.tree_util.tree_leaves(s_mem)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert m_conc == m_mem
  if mem_conc is not None and mem_mem is not None:
    assert mem_mem.temp_size_in_bytes <= mem_conc.temp_size_in_bytes


def test_bad_scheduler_is_one_line():
  with pytest.raises(ValueError, match="train.cpu_scheduler='fast'"):
    jit_train_step(lambda s, b: (s, {}), make_mesh(), cpu_scheduler='fast')
  c = config_lib.base_config()
  c.train.cpu_scheduler = 'fast'
  with pytest.raises(ConfigError, match="train.cpu_scheduler='fast' is invalid"):
    config_lib.validate(c)
