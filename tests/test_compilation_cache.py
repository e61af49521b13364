"""The `gan-jax` commands' persistent XLA compilation cache (`gan_jax.cache_dir.use_compilation_cache`).

Each case that needs JAX unimported, or a cache of its own, runs in a fresh interpreter
without the test session's JAX_COMPILATION_CACHE_DIR (tests/conftest.py sets one for the
whole run).
"""

from __future__ import annotations

import json
import os

from gan_jax import cache_dir

# A tiny MLP GAN train step on a fixed batch (the quickest to compile); prints the SHA-256 of
# the state after it and the cache settings JAX ended up with.
_STEP = r"""
import hashlib, json, os, sys
from gan_jax.cache_dir import use_compilation_cache
folder = use_compilation_cache()
import jax, numpy as np
sys.path.insert(0, 'tests')
from conftest import load_experiment
from gan_jax.core.losses import get_loss
from gan_jax.core.state import create_state
from gan_jax.core.train_step import make_train_step
config = load_experiment('mnist_mlp', 'tiny')
gan, state = create_state(config)
step = jax.jit(make_train_step(gan, get_loss(config.train.loss)))
batch = {'image': np.random.default_rng(0).uniform(-1, 1, (1, 16, 28, 28, 1)).astype(np.float32)}
state, _ = step(state, batch)
h = hashlib.sha256()
for leaf in jax.tree.leaves(jax.device_get(state)):
  h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
print(json.dumps({'folder': folder, 'jax_dir': jax.config.jax_compilation_cache_dir,
                  'min_s': jax.config.jax_persistent_cache_min_compile_time_secs,
                  'max_bytes': jax.config.jax_compilation_cache_max_size,
                  'hash': h.hexdigest()}))
"""


def _env_without_the_sessions_cache(root) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_')}
  env.pop(cache_dir.XLA_CACHE_SWITCH, None)
  return {**env, 'GAN_JAX_CACHE_DIR': str(root)}


def _python(code: str, env: dict[str, str]) -> str:
  """stdout of `python -c code` in a fresh interpreter with exactly `env`."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  proc = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=600,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def _run(env) -> dict:
  return json.loads(_python(_STEP, env).strip().splitlines()[-1])


def _entries(folder) -> set[str]:
  return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def test_a_warm_cache_loads_every_program_and_gives_the_same_bits(tmp_path):
  """Cold: the programs are compiled and written to <GAN_JAX_CACHE_DIR>/xla, every one
  however short its compile, with the 2 GiB cap. Warm: nothing new is written (every program
  was a hit) and the state after the step is bit for bit the cold run's."""
  env = _env_without_the_sessions_cache(tmp_path)
  folder = str(tmp_path / 'xla')
  cold = _run(env)
  assert cold['folder'] == cold['jax_dir'] == folder
  assert cold['min_s'] == 0 and cold['max_bytes'] == cache_dir.XLA_CACHE_MAX_BYTES
  written = _entries(folder)
  assert len(written) > 10  # the step, and the init's and the batch's small programs
  warm = _run(env)
  assert _entries(folder) == written
  assert warm['hash'] == cold['hash']


def test_the_switch_and_a_folder_set_before_are_respected(tmp_path):
  """GAN_JAX_XLA_CACHE=0 leaves JAX without a cache; a JAX_COMPILATION_CACHE_DIR set by the
  user is kept; with jax imported already, `jax.config` is set instead of the environment."""
  env = _env_without_the_sessions_cache(tmp_path)
  code = (
    'from gan_jax.cache_dir import use_compilation_cache as u; import os; f = u(); import jax; '
    'print(f, jax.config.jax_compilation_cache_dir, os.environ.get("JAX_COMPILATION_CACHE_DIR"))'
  )
  off = _python(code, {**env, cache_dir.XLA_CACHE_SWITCH: 'off'})
  assert off.split() == ['None'] * 3
  mine = str(tmp_path / 'mine')
  kept = _python(code, {**env, 'JAX_COMPILATION_CACHE_DIR': mine})
  assert kept.split() == [mine] * 3
  # jax imported first: the config, not the environment (which jax has read already).
  late = (
    'import jax, os; from gan_jax.cache_dir import use_compilation_cache as u; f = u(); '
    'print(f, jax.config.jax_compilation_cache_dir, '
    'jax.config.jax_persistent_cache_min_compile_time_secs, '
    'os.environ.get("JAX_COMPILATION_CACHE_DIR"))'
  )
  assert _python(late, env).split() == [str(tmp_path / 'xla')] * 2 + ['0.0', 'None']
