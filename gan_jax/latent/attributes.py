"""Attributes of generated images (`gan_jax.latent`, section 3 of its docstring): ink, a
classifier's belief in a class, and latents labelled by an attribute of their images.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.latent.generator import ArrayLike, generator_params, generator_stats, run_g
from gan_jax.core.state import GAN, GANState

AttributeFn = Callable[[jax.Array], jax.Array]


def ink_mass(images: jax.Array) -> jax.Array:
  """Stroke thickness as the mean ink: mean over pixels of (x + 1) / 2.

  Args:
    images: float `[B, H, W, C]` in [-1, 1] (-1 = black background of MNIST).

  Returns:
    float32 `[B]` in [0, 1] (mean brightness for RGB images).
  """
  return jnp.mean((jnp.asarray(images, jnp.float32) + 1.0) / 2.0, axis=(1, 2, 3))


def _logits_of(classifier: Any) -> Callable[[jax.Array], jax.Array]:
  apply = getattr(classifier, 'apply', None)
  if apply is not None:  # a gan_jax.metrics.features.FeatureNet: (features, logits)
    return lambda images: apply(images)[1]
  return classifier


def class_attribute(classifier: Any, k: int, kind: str = 'prob') -> AttributeFn:
  """An attribute function: a classifier's belief that an image is of class k.

  Args:
    classifier: a `FeatureNet` (e.g. `gan_jax.metrics.lenet.load_lenet('mnist')`, whose
      `apply` returns (features, logits)) or any jittable `f(images) -> logits [B, K]`.
    k: the class, 0 <= k < K.
    kind: 'prob' (softmax probability of k, in [0, 1]), 'log_odds' (logit_k - logsumexp of
      the other logits, real) or 'decision' (1.0 where argmax is k, else 0.0: a binary
      attribute).

  Returns:
    `attribute(images float32 [B, H, W, C] in [-1, 1]) -> float32 [B]`, jittable.

  Raises:
    ValueError: unknown kind or a negative k (k >= K raises when first called).
  """
  if kind not in ('prob', 'log_odds', 'decision'):
    raise ValueError(f"kind={kind!r} must be 'prob', 'log_odds' or 'decision'.")
  if k < 0:
    raise ValueError(f'class k={k} must be >= 0.')
  logits_fn = _logits_of(classifier)

  def attribute(images: jax.Array) -> jax.Array:
    logits = jnp.asarray(logits_fn(images), jnp.float32)
    if k >= logits.shape[-1]:
      raise ValueError(f'class k={k} but the classifier has {logits.shape[-1]} classes.')
    if kind == 'prob':
      return jax.nn.softmax(logits, axis=-1)[:, k]
    if kind == 'decision':
      return (jnp.argmax(logits, axis=-1) == k).astype(jnp.float32)
    others = jnp.delete(logits, k, axis=-1, assume_unique_indices=True)
    return logits[:, k] - jax.nn.logsumexp(others, axis=-1)

  return attribute


@functools.partial(jax.jit, static_argnames=('gan', 'attribute_fn'))
def _attributes_of(gan: GAN, params, stats, z, labels, attribute_fn):
  images = run_g(gan, params, stats, z, labels)
  return jnp.asarray(attribute_fn(images), jnp.float32)


def sample_attributes(
  gan: GAN,
  state: GANState,
  attribute_fn: AttributeFn,
  key: jax.Array,
  num: int,
  *,
  batch_size: int = 500,
  use_ema: bool = True,
  labels: ArrayLike | None = None,
  batch_stats: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Draws z ~ N(0, I) and labels each by an attribute of G(z) (InterFaceGAN's data).

  Args:
    gan: the static G/D definitions.
    state: the run's state.
    attribute_fn: jittable `f(images float32 [B, H, W, C] in [-1, 1]) -> [B]` (binary 0/1
      or continuous), e.g. `ink_mass` or `class_attribute(net, 3)`. Pass the same function
      object again to reuse its compilation.
    key: PRNG key of the latents.
    num: number of latents, >= 2.
    batch_size: latents per jitted call (the last batch is padded).
    use_ema: use the EMA generator.
    labels: int32 `[num]` class labels of a class-conditional G.
    batch_stats: G's BatchNorm statistics (None: `state.g_batch_stats`; see
      `gan_jax.latent.generator.generate`).

  Returns:
    (z float32 `[num, d]`, values float32 `[num]`), numpy arrays.
  """
  if num < 2:
    raise ValueError(f'num={num} must be >= 2.')
  z = np.asarray(gan.sample_latents(key, num))
  y = None if labels is None else np.asarray(labels, np.int32)
  params, stats = generator_params(state, use_ema), generator_stats(state, batch_stats)
  chunk = min(batch_size, num)
  values = []
  for lo in range(0, num, chunk):
    hi = min(lo + chunk, num)
    idx = np.concatenate([np.arange(lo, hi), np.full(chunk - (hi - lo), lo)])
    v = _attributes_of(
      gan, params, stats, z[idx], None if y is None else y[idx], attribute_fn=attribute_fn
    )
    values.append(np.asarray(v)[: hi - lo])
  return z, np.concatenate(values)


def attribute_names(dataset: str, image_shape: Sequence[int]) -> list[str]:
  """The attribute names `gan-jax edit --attribute` knows for a run: 'ink' always, and
  'class_0'..'class_9' when a pinned LeNet classifies its images (MNIST, Fashion-MNIST at
  28x28x1)."""
  from gan_jax.metrics import lenet  # pylint: disable=g-import-not-at-top

  names = ['ink']
  if dataset in lenet.WEIGHTS and tuple(image_shape) == lenet.IMAGE_SHAPE:
    names += [f'class_{k}' for k in range(lenet.NUM_CLASSES)]
  return names
