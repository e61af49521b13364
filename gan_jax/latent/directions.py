"""Attribute directions (InterFaceGAN; `gan_jax.latent`, section 3 of its docstring): fitting
a hyperplane's unit normal in z, editing along it, holding other attributes, saving it.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.latent.attributes import AttributeFn, sample_attributes
from gan_jax.latent.generator import ArrayLike
from gan_jax.latent.inversion import invert
from gan_jax.core.state import GAN, GANState

METHODS = ('svm', 'logistic', 'mean_diff')


def binary_labels(values: ArrayLike, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
  """Turns attribute values into the two classes a hyperplane separates.

  Binary values (booleans, or only 0 and 1, or only -1 and 1) are used as they are. For
  continuous values InterFaceGAN keeps only the clearest examples: here the `fraction` of
  samples with the highest values (positive) and the `fraction` with the lowest (negative).

  Args:
    values: `[n]` attribute values.
    fraction: 0 < fraction <= 0.5, for continuous values.

  Returns:
    (indices int64 `[m]` of the samples used, labels bool `[m]`, True = positive).

  Raises:
    ValueError: fraction out of range, non-finite values, or a class without samples.
  """
  v = np.asarray(values)
  if v.ndim != 1:
    raise ValueError(f'attribute values must be [n], got shape {v.shape}.')
  if not np.all(np.isfinite(v.astype(np.float64))):
    raise ValueError('attribute values must be finite.')
  uniq = set(np.unique(v).tolist())
  if v.dtype == bool or uniq <= {0, 1} or uniq <= {-1, 1}:
    idx, lab = np.arange(v.shape[0]), v > 0
  else:
    if not 0 < fraction <= 0.5:
      raise ValueError(f'fraction={fraction} must be in (0, 0.5].')
    m = max(1, int(round(fraction * v.shape[0])))
    order = np.argsort(v, kind='stable')
    idx = np.concatenate([order[:m], order[-m:]])
    lab = np.concatenate([np.zeros(m, bool), np.ones(m, bool)])
  if lab.all() or not lab.any():
    raise ValueError(
      f'the attribute has only {"positive" if lab.all() else "negative"} samples among '
      f'{v.shape[0]}; sample more latents or choose another attribute.'
    )
  return idx, lab


def _fit_linear(x: np.ndarray, y: np.ndarray, loss: str, c: float) -> np.ndarray:
  """Weights w (and bias) of an L2-regularised linear classifier, by L-BFGS (scipy).

  Objective (class-balanced sample weights s_i = n / (2 n_class)):
    logistic:  1/2 |w|^2 + C sum_i s_i log(1 + exp(-y_i (w.x_i + b)))
    svm:       1/2 |w|^2 + C sum_i s_i max(0, 1 - y_i (w.x_i + b))^2   (LinearSVC's default
               squared hinge)
  with y_i in {-1, +1}. Returns w `[d]` (float64).
  """
  from scipy import optimize  # pylint: disable=g-import-not-at-top

  n, d = x.shape
  s = np.where(y > 0, 1.0, -1.0)
  n_pos = np.sum(s > 0)
  weight = np.where(s > 0, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))

  def objective(theta):
    w, b = theta[:d], theta[d]
    margin = s * (x @ w + b)
    if loss == 'logistic':
      value = np.sum(weight * np.logaddexp(0.0, -margin))
      dmargin = -weight / (1.0 + np.exp(np.clip(margin, -50, 50)))
    else:
      slack = np.maximum(0.0, 1.0 - margin)
      value = np.sum(weight * slack**2)
      dmargin = -2.0 * weight * slack
    g = dmargin * s
    grad = np.concatenate([c * (x.T @ g) + w, [c * np.sum(g)]])
    return 0.5 * w @ w + c * value, grad

  res = optimize.minimize(
    objective, np.zeros(d + 1), jac=True, method='L-BFGS-B', options={'maxiter': 1000}
  )
  return res.x[:d]


def fit_direction(
  z: ArrayLike,
  values: ArrayLike,
  method: str = 'svm',
  *,
  fraction: float = 0.2,
  c: float = 1.0,
) -> np.ndarray:
  """The unit normal of a hyperplane in z that separates an attribute (InterFaceGAN).

  Shen et al. 2020 (sec. 2.2-2.3) assume that for a binary attribute there is a hyperplane
  with unit normal n in the latent space such that the attribute changes across it, and
  that moving z along n changes the attribute (`edit`). The normal is fitted on latents
  labelled by the attribute (`binary_labels`):

  * 'svm': a linear SVM, as in the paper: scikit-learn's `LinearSVC(C=c,
    class_weight='balanced')` when scikit-learn is installed, else the same objective (L2
    regularisation, squared hinge loss, a bias) minimised with scipy's L-BFGS;
  * 'logistic': L2-regularised logistic regression (scipy L-BFGS);
  * 'mean_diff': the difference of the two classes' mean latents (for z ~ N(0, I) and a
    linear attribute this is the optimal direction up to sampling noise, with no solver).

  Classes are weighted to equal total weight, so a rare attribute (a class of 10) still
  decides the normal.

  Args:
    z: float `[n, d]` latents.
    values: `[n]` attribute values (binary, or continuous: see `binary_labels`).
    method: 'svm', 'logistic' or 'mean_diff'.
    fraction: for continuous values, the top and bottom fraction of samples used.
    c: inverse regularisation strength of 'svm' and 'logistic'.

  Returns:
    float32 `[d]`, unit norm, pointing towards the positive (higher-valued) side.

  Raises:
    ValueError: unknown method, mismatched shapes, a class without samples, or a
      degenerate (zero) normal.
  """
  if method not in METHODS:
    raise ValueError(f'method={method!r} must be one of {", ".join(METHODS)}.')
  x = np.asarray(z, np.float64)
  if x.ndim != 2 or x.shape[0] != np.shape(values)[0]:
    raise ValueError(
      f'z must be [n, d] and values [n], got shapes {x.shape} and {np.shape(values)}.'
    )
  idx, lab = binary_labels(values, fraction)
  x = x[idx]
  if method == 'mean_diff':
    w = x[lab].mean(0) - x[~lab].mean(0)
  elif method == 'svm' and _sklearn_svc() is not None:
    svc = _sklearn_svc()(C=c, class_weight='balanced', dual='auto', max_iter=10000)
    svc.fit(x, lab.astype(np.int64))
    w = np.asarray(svc.coef_, np.float64).reshape(-1)
  else:
    w = _fit_linear(x, lab, 'logistic' if method == 'logistic' else 'svm', c)
  norm = np.linalg.norm(w)
  if not np.isfinite(norm) or norm < 1e-12:
    raise ValueError('the fitted normal is zero: the attribute does not depend on z linearly.')
  return (w / norm).astype(np.float32)


def _sklearn_svc():
  try:
    from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return LinearSVC


def fit_attribute_direction(
  gan: GAN,
  state: GANState,
  attribute_fn: AttributeFn,
  key: jax.Array,
  *,
  num_latents: int = 5000,
  method: str = 'svm',
  fraction: float = 0.2,
  c: float = 1.0,
  batch_size: int = 500,
  use_ema: bool = True,
  labels: ArrayLike | None = None,
  batch_stats: Any = None,
) -> np.ndarray:
  """InterFaceGAN end to end: `sample_attributes`, then `fit_direction`.

  Args:
    gan, state: the run.
    attribute_fn: jittable `f(images [B, H, W, C]) -> [B]` (see `sample_attributes`).
    key: PRNG key of the latents.
    num_latents: latents sampled (InterFaceGAN used 500k for StyleGAN faces; a few
      thousand suffice for an MNIST DCGAN's 100-d z).
    method, fraction, c: as in `fit_direction`.
    batch_size, use_ema, labels, batch_stats: as in `sample_attributes`.

  Returns:
    float32 `[d]` unit normal, pointing towards higher attribute values.
  """
  z, values = sample_attributes(
    gan,
    state,
    attribute_fn,
    key,
    num_latents,
    batch_size=batch_size,
    use_ema=use_ema,
    labels=labels,
    batch_stats=batch_stats,
  )
  return fit_direction(z, values, method, fraction=fraction, c=c)


def fit_direction_from_images(
  gan: GAN,
  state: GANState,
  images: ArrayLike,
  labels: ArrayLike,
  *,
  key: jax.Array,
  method: str = 'svm',
  fraction: float = 0.2,
  c: float = 1.0,
  **invert_kwargs: Any,
) -> np.ndarray:
  """An attribute direction from real labelled images: invert them, fit on their latents.

  For attributes that no classifier at hand recognises but a dataset labels (CelebA's 40
  binary attributes, `load_celeba_attribute`): every image is inverted (`invert`) and the
  hyperplane is fitted on the inverted latents with the dataset's labels.

  Args:
    gan, state: the run.
    images: float32 `[N, H, W, C]` in [-1, 1].
    labels: `[N]` attribute values (binary, or continuous: see `binary_labels`).
    key: PRNG key of the inversion's random starts.
    method, fraction, c: as in `fit_direction`.
    **invert_kwargs: passed to `invert` (steps, restarts, lr, feature_fn, ...).

  Returns:
    float32 `[d]` unit normal, pointing towards the positive label.
  """
  inv = invert(gan, state, images, key=key, **invert_kwargs)
  return fit_direction(inv.z, np.asarray(labels), method, fraction=fraction, c=c)


@jax.jit
def edit(z: ArrayLike, direction: ArrayLike, strength: ArrayLike) -> jax.Array:
  """Moves latents along a direction: z + strength * direction (Shen et al. 2020, eq. 3).

  Args:
    z: float `[..., d]` latents.
    direction: float `[d]`, usually a unit normal from `fit_direction`.
    strength: scalar or array broadcastable against the batch shape `[...]` (e.g. `[S]`
      with z `[N, 1, d]` gives `[N, S, d]`); in units of |direction|.

  Returns:
    float32 `[broadcast(..., strength.shape), d]`.
  """
  z = jnp.asarray(z, jnp.float32)
  direction = jnp.asarray(direction, jnp.float32)
  return z + jnp.asarray(strength, jnp.float32)[..., None] * direction


def orthogonalize(direction: ArrayLike, others: ArrayLike, eps: float = 1e-6) -> np.ndarray:
  """Conditional manipulation: removes from `direction` its component along other attributes.

  Shen et al. 2020, eq. 5, for one other attribute n2: n1 - (n1 . n2) n2. For several,
  the projection onto the orthogonal complement of span(others), found by least squares
  (`numpy.linalg.lstsq`, which also handles linearly dependent `others`): r = n - A c with
  c = argmin |A c - n|, A = others^T. Editing along r changes the first attribute while
  holding the others (to first order: their linear scores n_j . z do not move).

  Args:
    direction: float `[d]`.
    others: float `[k, d]` (or `[d]` for one) directions to hold; k = 0 is allowed.

  Returns:
    float32 `[d]`, unit norm, orthogonal to every row of `others`; `direction / |direction|`
    when it is already orthogonal to them.

  Raises:
    ValueError: mismatched shapes, or a direction that lies in span(others) (nothing left).
  """
  n = np.asarray(direction, np.float64)
  a = np.asarray(others, np.float64)
  if a.ndim == 1:
    a = a[None]
  if n.ndim != 1 or a.ndim != 2 or (a.shape[0] and a.shape[1] != n.shape[0]):
    raise ValueError(
      f'direction must be [d] and others [k, d], got {n.shape} and {np.shape(others)}.'
    )
  if a.shape[0]:
    coef, *_ = np.linalg.lstsq(a.T, n, rcond=None)
    r = n - a.T @ coef
  else:
    r = n
  norm = np.linalg.norm(r)
  if norm <= eps * max(np.linalg.norm(n), 1e-30):
    raise ValueError('the direction lies in the span of the others: nothing is left to edit.')
  return (r / norm).astype(np.float32)


def save_direction(path: str, direction: ArrayLike, **meta: Any) -> str:
  """Writes a direction (float32 `[d]`) and scalar metadata to an .npz file; returns path."""
  import os  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp.npz'
  np.savez(tmp, direction=np.asarray(direction, np.float32), **meta)
  os.replace(tmp, path)
  return path


def load_direction(path: str) -> tuple[np.ndarray, dict[str, Any]]:
  """Reads `save_direction`'s file: (direction float32 `[d]`, metadata dict).

  Raises:
    FileNotFoundError: no such file. ValueError: the file is no .npz archive (garbled, cut
      short), holds no 1-D 'direction', or its direction is non-finite or zero (it would
      turn every edit into NaN or into no edit).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such file.')
  try:
    f = np.load(path)
  except (EOFError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f'{path} is not a readable .npz file ({type(e).__name__}: {e}).') from None
  if not isinstance(f, np.lib.npyio.NpzFile):
    raise ValueError(f'{path} is a .npy array, not the .npz file save_direction writes.')
  try:
    with f:
      if 'direction' not in f or f['direction'].ndim != 1:
        raise ValueError(f'{path} holds no 1-D array named "direction".')
      meta = {k: f[k].item() for k in f.files if k != 'direction' and f[k].ndim == 0}
      direction = np.asarray(f['direction'], np.float32)
  except (EOFError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f'{path} is not a readable .npz file ({type(e).__name__}: {e}).') from None
  if not np.all(np.isfinite(direction)) or not np.any(direction):
    raise ValueError(f'{path}: the direction is non-finite or zero; fit it again.')
  return direction, meta
