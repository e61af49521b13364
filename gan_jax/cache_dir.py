"""Where gan_jax caches what it computes once: FID reference statistics
(`gan_jax.metrics.reference`) and decoded image folders (`gan_jax.data.image_folder`).

A module of its own, below both, so neither imports the other for it.
"""

from __future__ import annotations

import os


def cache_root(cache_dir: str | None = None) -> str:
  """The cache folder: `cache_dir`, else $GAN_JAX_CACHE_DIR, $XDG_CACHE_HOME/gan_jax, or
  ~/.cache/gan_jax (user-expanded, absolute)."""
  root = (
    cache_dir
    or os.environ.get('GAN_JAX_CACHE_DIR')
    or os.path.join(os.environ.get('XDG_CACHE_HOME') or '~/.cache', 'gan_jax')
  )
  return os.path.abspath(os.path.expanduser(root))
