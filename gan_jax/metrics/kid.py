"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs", sec. 3 and app. D).

KID is the unbiased estimate of the squared maximum mean discrepancy (Gretton et al. 2012,
eq. 4 (MMD_u^2)) with the cubic polynomial kernel

    k(x, y) = (x . y / D + 1)^3

averaged over `num_subsets` random subsets of `subset_size` vectors from each set (100 subsets
of 1,000, as in the paper's code and in clean-fid / stylegan2-ada), with the standard
deviation over subsets. Unlike FID it is unbiased, so its mean is 0 in expectation for two
samples of one distribution and may come out slightly negative.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gan_jax.metrics.stats import check_features


@dataclasses.dataclass(frozen=True)
class KIDResult:
  """KID over subsets.

  Attributes:
    mean: mean of the per-subset unbiased MMD^2 estimates.
    std: their standard deviation (ddof=0, over subsets; a spread, not a standard error).
    values: float64 [num_subsets], the per-subset estimates.
  """

  mean: float
  std: float
  values: np.ndarray


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """k(x, y) = (x . y / D + 1)^3 for x [N, D], y [M, D]; returns float64 [N, M]."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 with the cubic polynomial kernel (Gretton et al. 2012, eq. 4).

  Args:
    x: float [m, D]; y: float [n, D]; m, n >= 2.

  Returns:
    sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (n(n-1))
      - 2 sum_{i,j} k(x_i, y_j) / (mn).
  """
  m, n = x.shape[0], y.shape[0]
  kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  return float(
    (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    - 2.0 * kxy.mean()
  )


def kernel_inception_distance(
  real: np.ndarray,
  fake: np.ndarray,
  *,
  num_subsets: int = 100,
  subset_size: int = 1000,
  seed: int = 0,
) -> KIDResult:
  """KID between two feature sets (Binkowski et al. 2018).

  Args:
    real: float [N, D] features of real images.
    fake: float [M, D] features of generated images.
    num_subsets: subsets drawn (100 in the paper's code).
    subset_size: vectors per subset (1,000); reduced to min(N, M) when a set is smaller.
    seed: seeds the subset draws (numpy's PCG64), so a result is reproducible.

  Returns:
    `KIDResult(mean, std, values)`.

  Raises:
    ValueError: shapes differ in D, fewer than 2 vectors in a set, NaN/Inf features, or
      num_subsets < 1.
  """
  real = check_features(real, 'real features')
  fake = check_features(fake, 'generated features', dim=real.shape[1])
  if num_subsets < 1:
    raise ValueError(f'num_subsets={num_subsets} must be >= 1.')
  m = min(real.shape[0], fake.shape[0], subset_size)
  if m < 2:
    raise ValueError(
      f'KID needs at least 2 vectors in each set, got {real.shape[0]} real and '
      f'{fake.shape[0]} generated.'
    )
  rng = np.random.default_rng(seed)
  values = np.empty(num_subsets, np.float64)
  for i in range(num_subsets):
    x = real[rng.choice(real.shape[0], m, replace=False)]
    y = fake[rng.choice(fake.shape[0], m, replace=False)]
    values[i] = mmd2_unbiased(x, y)
  return KIDResult(float(values.mean()), float(values.std()), values)
