"""Interpolation between latents (`gan_jax.latent`, section 1 of its docstring): `lerp`,
`slerp` (Shoemake 1985; White 2016) and grids of images along the paths.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.latent.generator import ArrayLike, check_latents, generate
from gan_jax.core.state import GAN, GANState


@jax.jit
def lerp(z0: ArrayLike, z1: ArrayLike, t: ArrayLike) -> jax.Array:
  """Linear interpolation (1 - t) z0 + t z1.

  Args:
    z0: float `[..., d]` start latents.
    z1: float `[..., d]` end latents (broadcastable against z0).
    t: float scalar or array broadcastable against the batch shape `[...]` of z0 / z1, e.g.
      `[T]` with z0, z1 `[R, 1, d]` gives an `[R, T, d]` grid. t = 0 gives z0, t = 1 z1;
      values outside [0, 1] extrapolate.

  Returns:
    float32 `[broadcast(..., t.shape), d]`.
  """
  z0 = jnp.asarray(z0, jnp.float32)
  z1 = jnp.asarray(z1, jnp.float32)
  t = jnp.asarray(t, jnp.float32)[..., None]
  return z0 + t * (z1 - z0)


# sin(angle) below which endpoints with cos < 0 count as antiparallel (see `slerp`): 25x the
# float32 rounding noise of sin for exactly antiparallel endpoints (measured <= 4e-7, d 2-4096).
_ANTIPARALLEL_SIN = 1e-5


def _orthogonal(x: jax.Array, u: jax.Array) -> jax.Array:
  """x minus its component along the unit vectors u (both float `[..., d]`)."""
  return x - jnp.sum(x * u, axis=-1, keepdims=True) * u


@functools.partial(jax.jit, static_argnames=('eps',))
def slerp(z0: ArrayLike, z1: ArrayLike, t: ArrayLike, eps: float = 1e-7) -> jax.Array:
  """Spherical linear interpolation (Shoemake 1985; White 2016, "Sampling Generative Networks").

  For endpoints of equal norm r this is Shoemake's slerp,
  `z(t) = [sin((1 - t) w) z0 + sin(t w) z1] / sin(w)` with w = angle(z0, z1): the shorter
  great-circle arc, at constant norm r and constant angular speed. That formula has no
  limit for antiparallel endpoints (w = pi) of unequal norms, so this function computes the
  equivalent, numerically stable form

      z(t) = ((1 - t) |z0| + t |z1|) (cos(t w) u + sin(t w) v),

  with u = z0 / |z0| and v the unit vector orthogonal to u in the plane of z0 and z1: the
  direction moves along the great circle and the norm linearly (identical to Shoemake for
  equal norms, and to `lerp` for parallel endpoints). Special cases:

  * (nearly) parallel endpoints, sin(w) <= eps: w ~ 0 and z(t) = lerp(z0, z1, t);
  * (nearly) antiparallel endpoints, cos(w) < 0 and sin(w) <= max(eps, 1e-5): the great
    circle is not unique (and float32 rounding alone leaves sin(w) ~ 4e-7 for z1 = -c z0, a
    direction of pure noise); w = pi and v is taken orthogonal to u from the coordinate axis
    least aligned with u (deterministic), so the path keeps its interpolated norm instead of
    passing through the origin as `lerp` would; z(1) is then -|z1| u, within 1e-5 |z1| of z1;
  * a zero endpoint (|z0| or |z1| <= eps): there is no angle; `lerp` is returned.

  In every case v is made orthogonal to u once more after normalising, so the norm of z(t)
  is ((1 - t) |z0| + t |z1|) up to float32 rounding.

  Args:
    z0: float `[..., d]` start latents.
    z1: float `[..., d]` end latents (broadcastable against z0).
    t: float scalar or array broadcastable against the batch shape `[...]` (see `lerp`).
    eps: tolerance of the special cases above.

  Returns:
    float32 `[broadcast(..., t.shape), d]`; z(0) = z0 and z(1) = z1.
  """
  z0 = jnp.asarray(z0, jnp.float32)
  z1 = jnp.asarray(z1, jnp.float32)
  z0, z1 = jnp.broadcast_arrays(z0, z1)
  t = jnp.asarray(t, jnp.float32)[..., None]
  r0 = jnp.linalg.norm(z0, axis=-1, keepdims=True)
  r1 = jnp.linalg.norm(z1, axis=-1, keepdims=True)
  degenerate = (r0 <= eps) | (r1 <= eps)
  u = z0 / jnp.where(degenerate, 1.0, r0)
  w = z1 / jnp.where(degenerate, 1.0, r1)
  cos = jnp.clip(jnp.sum(u * w, axis=-1, keepdims=True), -1.0, 1.0)
  perp = _orthogonal(w - cos * u, u)  # twice: rounding leaves w - cos u a little along u
  sin = jnp.linalg.norm(perp, axis=-1, keepdims=True)
  omega = jnp.arctan2(sin, cos)
  # Fallback v for (anti)parallel endpoints: the axis least aligned with u, made orthogonal.
  axis = jax.nn.one_hot(jnp.argmin(jnp.abs(u), axis=-1), u.shape[-1], dtype=u.dtype)
  v_fb = _orthogonal(axis, u)
  v_fb = v_fb / jnp.maximum(jnp.linalg.norm(v_fb, axis=-1, keepdims=True), eps)
  # Antiparallel needs a wider tolerance than eps: there sin is float32 noise (~4e-7).
  ok = jnp.where(cos > 0, sin > eps, sin > max(eps, _ANTIPARALLEL_SIN))
  v = jnp.where(ok, perp / jnp.where(ok, sin, 1.0), v_fb)
  v = _orthogonal(v, u)
  omega = jnp.where(ok, omega, jnp.where(cos > 0, 0.0, jnp.pi))
  radius = (1.0 - t) * r0 + t * r1
  out = radius * (jnp.cos(t * omega) * u + jnp.sin(t * omega) * v)
  return jnp.where(degenerate, lerp(z0, z1, t[..., 0]), out)


def _pairs(gan: GAN, z_pairs_or_keys: Any, rows: int) -> tuple[jax.Array, jax.Array]:
  """(z0 [R, d], z1 [R, d]) from pairs of latents, one PRNG key, or R PRNG keys."""
  if isinstance(z_pairs_or_keys, (tuple, list)) and len(z_pairs_or_keys) == 2:
    z0, z1 = (check_latents(gan, z) for z in z_pairs_or_keys)
    if z0.shape != z1.shape:
      raise ValueError(f'z0 and z1 differ in shape: {z0.shape} vs {z1.shape}.')
    return z0, z1
  x = z_pairs_or_keys
  if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    key_dims = 0  # typed keys: shape [] or [R]
  else:
    x, key_dims = jnp.asarray(x), 1  # raw uint32 keys: shape [2] or [R, 2]
  if x.dtype == jnp.uint32 or key_dims == 0:
    batch = x.shape[: x.ndim - key_dims]
    if (key_dims and x.shape[-1:] != (2,)) or len(batch) > 1:
      raise ValueError(f'PRNG keys must be one key or [R] keys, got shape {x.shape}.')
    if not batch:  # one key: `rows` pairs
      z = gan.sample_latents(x, 2 * rows).reshape(rows, 2, gan.latent_dim)
    else:  # one pair per key
      z = jax.vmap(lambda k: gan.sample_latents(k, 2))(x)
    return z[:, 0], z[:, 1]
  if x.ndim == 3 and x.shape[1] == 2 and x.shape[2] == gan.latent_dim:
    x = x.astype(jnp.float32)
    return x[:, 0], x[:, 1]
  raise ValueError(
    'z_pairs_or_keys must be a PRNG key, [R] PRNG keys, a pair (z0, z1) of [R, d] latents or '
    f'an [R, 2, d] array with d = {gan.latent_dim}; got {type(z_pairs_or_keys).__name__} of '
    f'shape {tuple(np.shape(z_pairs_or_keys))}.'
  )


def interpolation_grid(
  gan: GAN,
  state: GANState,
  z_pairs_or_keys: Any,
  steps: int = 8,
  method: str = 'slerp',
  *,
  rows: int = 8,
  use_ema: bool = True,
  labels: ArrayLike | None = None,
  batch_stats: Any = None,
) -> jax.Array:
  """Images along interpolation paths between pairs of latents.

  Args:
    gan: the static G/D definitions.
    state: the run's state.
    z_pairs_or_keys: the endpoints: a pair `(z0, z1)` of float `[R, d]` arrays, a float
      `[R, 2, d]` array, R PRNG keys (typed `[R]` or raw uint32 `[R, 2]`; key r draws the
      pair of row r), or one PRNG key (typed, or raw uint32 `[2]`) from which `rows` pairs
      z0, z1 ~ N(0, I) are drawn.
    steps: T >= 2 points per path, t = linspace(0, 1, T) (both endpoints included).
    method: 'slerp' (default, White 2016) or 'lerp'.
    rows: number of pairs drawn when `z_pairs_or_keys` is one key.
    use_ema: use the EMA generator.
    labels: int32 `[R]` class labels of a class-conditional G (one per path).
    batch_stats: G's BatchNorm statistics (None: `state.g_batch_stats`; see `generate`).

  Returns:
    float32 `[R, T, H, W, C]` in [-1, 1]; `[:, 0]` is G(z0) and `[:, -1]` is G(z1).

  Raises:
    ValueError: for an unknown method, steps < 2, or endpoints of the wrong shape.
  """
  if method not in ('slerp', 'lerp'):
    raise ValueError(f"method={method!r} must be 'slerp' or 'lerp'.")
  if steps < 2:
    raise ValueError(f'steps={steps} must be >= 2 (both endpoints are included).')
  z0, z1 = _pairs(gan, z_pairs_or_keys, rows)
  t = jnp.linspace(0.0, 1.0, steps)
  path = (slerp if method == 'slerp' else lerp)(z0[:, None], z1[:, None], t)  # [R, T, d]
  r = path.shape[0]
  flat_labels = None if labels is None else jnp.repeat(jnp.asarray(labels), steps)
  images = generate(
    gan,
    state,
    path.reshape(r * steps, -1),
    use_ema=use_ema,
    labels=flat_labels,
    batch_stats=batch_stats,
  )
  return images.reshape((r, steps) + images.shape[1:])


def save_interpolation_grid(path: str, images: ArrayLike, scale: int = 2) -> str:
  """Writes an `interpolation_grid` result as a PNG: one path per row, t left to right.

  Args:
    path: PNG file to write (folders are created).
    images: float `[R, T, H, W, C]` in [-1, 1].
    scale: nearest-neighbour upscaling of the picture.

  Returns:
    the path written.

  Raises:
    ValueError: if images is not 5-D with 1 or 3 channels.
  """
  from gan_jax.core.sampling import save_grid  # pylint: disable=g-import-not-at-top

  images = np.asarray(images)
  if images.ndim != 5:
    raise ValueError(f'images must be [R, T, H, W, C], got shape {images.shape}.')
  r, t = images.shape[:2]
  return save_grid(path, images.reshape((r * t,) + images.shape[2:]), ncol=t, scale=scale)
