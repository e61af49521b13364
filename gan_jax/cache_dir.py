"""Where gan_jax caches what it computes once: FID reference statistics
(`gan_jax.metrics.reference`), decoded image folders (`gan_jax.data.image_folder`) and, for
the `gan-jax` commands, XLA's compiled programs (`use_compilation_cache`).

A module of its own, below both, so neither imports the other for it.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def cache_root(cache_dir: str | None = None) -> str:
  """The cache folder: `cache_dir`, else $GAN_JAX_CACHE_DIR, $XDG_CACHE_HOME/gan_jax, or
  ~/.cache/gan_jax (user-expanded, absolute)."""
  root = (
    cache_dir
    or os.environ.get('GAN_JAX_CACHE_DIR')
    or os.path.join(os.environ.get('XDG_CACHE_HOME') or '~/.cache', 'gan_jax')
  )
  return os.path.abspath(os.path.expanduser(root))


# JAX's own settings (environment variables, read when jax is imported) for the compiled-program
# cache, and gan_jax's switch for it.
XLA_CACHE_SWITCH = 'GAN_JAX_XLA_CACHE'
XLA_CACHE_MAX_BYTES = 2 * 2**30
_OFF = ('0', 'off', 'false', 'no')


def use_compilation_cache(cache_dir: str | None = None) -> str | None:
  """Turns on JAX's persistent compilation cache in `<cache_root()>/xla`, unless it is set.

  A program compiled once (the train step, the model's init, sampling, the metrics' feature
  networks) is then loaded from disk by every later run with the same shapes and config: a
  resumed run, a sweep's other seeds, `gan-jax eval` and `sample` on a run. A hit loads the
  executable XLA compiled before, so results are bit for bit those of a compile; the process
  also skips LLVM's memory for compiling (DCGAN-28's peak RSS: ~750 -> ~530 MiB, see
  docs/performance.md). Every program is cached however short its compile (a run's ~70 small
  eager programs too); the folder is capped at 2 GiB, least recently used entries first
  (where the `filelock` package, which JAX needs for the cap, is installed).

  Called by the `gan-jax` commands at start. Library users call it themselves (importing
  gan_jax changes no JAX setting). Nothing changes where a cache folder is set already
  (`JAX_COMPILATION_CACHE_DIR`, `jax.config`), or where $GAN_JAX_XLA_CACHE is 0/off/false/no.
  Before jax is imported it sets JAX's environment variables (so that child processes, such as
  a sweep's runs, share the cache); after, `jax.config` (effective only before the first
  compile).

  Args:
    cache_dir: the cache root (see `cache_root`); the programs go to its `xla` folder.

  Returns:
    The folder in use (ours or the one set before), or None where the cache is off.
  """
  if os.environ.get(XLA_CACHE_SWITCH, '').strip().lower() in _OFF:
    return None
  folder = os.path.join(cache_root(cache_dir), 'xla')
  # JAX enforces the size cap with `filelock` (a gan_jax dependency); without it, a cap makes
  # every cache read and write fail (with a warning each), so the cache is then uncapped.
  capped = importlib.util.find_spec('filelock') is not None
  if 'jax' not in sys.modules:
    if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
      return os.environ['JAX_COMPILATION_CACHE_DIR']
    os.environ['JAX_COMPILATION_CACHE_DIR'] = folder
    os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
    if capped:
      os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(XLA_CACHE_MAX_BYTES))
    return folder
  import jax  # pylint: disable=g-import-not-at-top

  if jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  jax.config.update('jax_compilation_cache_dir', folder)
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  if capped and 'JAX_COMPILATION_CACHE_MAX_SIZE' not in os.environ:
    jax.config.update('jax_compilation_cache_max_size', XLA_CACHE_MAX_BYTES)
  return folder
