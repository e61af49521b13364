"""Frechet distance between two Gaussians fitted to features (Heusel et al. 2017, eq. 6).

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

The matrix square root is `scipy.linalg.sqrtm`, with pytorch-fid's handling of its numerical
failures: a non-finite result is retried with `eps` added to both diagonals, and an imaginary
part (from rounding; the exact product of two PSD matrices has a real, non-negative spectrum)
is dropped when its diagonal is below `imag_tol`, else reported as an error.

Which features: "FID (Inception)" uses the pool3 features of the pytorch-fid InceptionV3 and
is comparable with published numbers; "FID (LeNet)" uses a domain classifier's penultimate
layer and is comparable only with other FID (LeNet) numbers from the same pinned weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from gan_jax.metrics.stats import FeatureStats


def _check_moments(mu: np.ndarray, sigma: np.ndarray, which: str) -> tuple[np.ndarray, np.ndarray]:
  mu = np.atleast_1d(np.asarray(mu, np.float64))
  sigma = np.atleast_2d(np.asarray(sigma, np.float64))
  if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
    raise ValueError(
      f'{which}: mean must be [D] and covariance [D, D], got {mu.shape} and {sigma.shape}.'
    )
  if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
    raise ValueError(f'{which}: mean or covariance contains NaN or infinite values.')
  return mu, sigma


def frechet_distance(
  mu1: np.ndarray,
  sigma1: np.ndarray,
  mu2: np.ndarray,
  sigma2: np.ndarray,
  *,
  eps: float = 1e-6,
  imag_tol: float = 1e-3,
) -> float:
  """Frechet (2-Wasserstein) distance squared between N(mu1, sigma1) and N(mu2, sigma2).

  Args:
    mu1, mu2: means, float [D].
    sigma1, sigma2: covariances, float [D, D], symmetric positive semi-definite.
    eps: diagonal offset used only if the plain square root is not finite (pytorch-fid).
    imag_tol: largest imaginary part allowed on the diagonal of sqrtm's result.

  Returns:
    The distance as a Python float >= 0 (tiny negative rounding is clipped to 0).

  Raises:
    ValueError: mismatched shapes, non-finite inputs, or an imaginary component above
      `imag_tol` (the covariances are not PSD or are badly conditioned).
  """
  mu1, sigma1 = _check_moments(mu1, sigma1, 'first distribution')
  mu2, sigma2 = _check_moments(mu2, sigma2, 'second distribution')
  if mu1.shape != mu2.shape:
    raise ValueError(
      f'the two feature sets have different dimensions ({mu1.shape[0]} and {mu2.shape[0]}); '
      'compute both with the same feature network.'
    )
  diff = mu1 - mu2
  with warnings.catch_warnings():  # a singular product is handled just below
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
    if max_imag > imag_tol:
      raise ValueError(
        f'sqrtm(sigma1 @ sigma2) has an imaginary component of {max_imag:.3g} on its diagonal '
        f'(tolerance {imag_tol}); the covariances are not positive semi-definite or are too '
        'ill-conditioned: use more samples than feature dimensions.'
      )
    covmean = covmean.real
  fid = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
  return max(float(fid), 0.0)


def fid_from_stats(a: FeatureStats, b: FeatureStats, **kwargs) -> float:
  """FID between two `FeatureStats`; refuses statistics of fewer samples than dimensions.

  Raises:
    ValueError: either set has count <= D (its covariance is singular, so FID is unreliable;
      the message says how many samples are needed), or as in `frechet_distance`.
  """
  for which, s in (('first', a), ('second', b)):
    if 0 < s.count <= s.dim:
      raise ValueError(
        f'the {which} feature set has {s.count} samples for {s.dim} feature dimensions; FID '
        f'needs more samples than dimensions (at least {s.dim + 1}, and 10,000 or more for '
        'numbers comparable with published ones).'
      )
  return frechet_distance(a.mean, a.cov, b.mean, b.cov, **kwargs)
