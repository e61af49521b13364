"""Improved precision and recall (Kynkaanniemi et al. 2019) and density and coverage
(Naeem et al. 2020), from k-nearest-neighbour balls in feature space.

Each real (generated) vector gets a ball whose radius is the distance to its k-th nearest
neighbour among the real (generated) vectors, itself excluded. k = 3 as in Kynkaanniemi et al.
is the default for all four; Naeem et al. use k = 5 for density and coverage (pass k=5 to
match their numbers):

- precision: share of generated vectors inside at least one real ball (Kynkaanniemi eq. 1-2);
- recall: share of real vectors inside at least one generated ball;
- density: (1/k) * mean over generated vectors of the number of real balls containing them
  (Naeem eq. 5; can exceed 1);
- coverage: share of real vectors whose ball contains at least one generated vector
  (Naeem eq. 6).

Ball membership uses `<=` for precision/recall (the authors' stylegan2-ada code) and `<` for
density/coverage (Naeem et al.'s `prdc` package). Distances are Euclidean, computed in float64
in blocks of `block_size` rows, so memory stays O(block_size * N).
"""

from __future__ import annotations

import numpy as np

from gan_jax.metrics.stats import check_features


def _sq_norms(x: np.ndarray) -> np.ndarray:
  return np.einsum('ij,ij->i', x, x)


def _distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
  d2 = _sq_norms(a)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
  return np.sqrt(np.maximum(d2, 0.0))


def knn_radii(x: np.ndarray, k: int, block_size: int = 1000) -> np.ndarray:
  """Distance from each row of x [N, D] to its k-th nearest other row; float64 [N].

  Raises:
    ValueError: k < 1 or N <= k.
  """
  n = x.shape[0]
  if k < 1 or n <= k:
    raise ValueError(f'k-NN radii need 1 <= k < N, got k={k} with N={n} vectors.')
  x_sq = _sq_norms(x)
  radii = np.empty(n, np.float64)
  for lo in range(0, n, block_size):
    d = _distances(x[lo : lo + block_size], x, x_sq)
    d[np.arange(d.shape[0]), np.arange(lo, lo + d.shape[0])] = 0.0  # exact self-distance
    # Index k of the sorted row: index 0 is the vector itself (distance 0).
    radii[lo : lo + block_size] = np.partition(d, k, axis=1)[:, k]
  return radii


def precision_recall_density_coverage(
  real: np.ndarray, fake: np.ndarray, *, k: int = 3, block_size: int = 1000
) -> dict[str, float]:
  """Precision, recall (Kynkaanniemi et al. 2019) and density, coverage (Naeem et al. 2020).

  Args:
    real: float [N, D] features of real images (N > k).
    fake: float [M, D] features of generated images (M > k).
    k: the k of the k-NN balls (3 in Kynkaanniemi et al.).
    block_size: rows per distance block (memory ~ 8 * block_size * max(N, M) bytes).

  Returns:
    {'precision', 'recall', 'density', 'coverage'} as floats; the first, second and fourth
    in [0, 1], density >= 0.

  Raises:
    ValueError: mismatched D, NaN/Inf features, or fewer than k + 1 vectors in a set.
  """
  real = check_features(real, 'real features')
  fake = check_features(fake, 'generated features', dim=real.shape[1])
  real_r = knn_radii(real, k, block_size)
  fake_r = knn_radii(fake, k, block_size)
  fake_sq = _sq_norms(fake)
  in_real_ball = np.zeros(fake.shape[0], bool)  # precision
  real_ball_count = np.zeros(fake.shape[0], np.int64)  # density
  recalled = np.empty(real.shape[0], bool)
  covered = np.empty(real.shape[0], bool)
  for lo in range(0, real.shape[0], block_size):
    d = _distances(real[lo : lo + block_size], fake, fake_sq)  # [b, M]
    r = real_r[lo : lo + block_size, None]
    in_real_ball |= (d <= r).any(axis=0)
    real_ball_count += (d < r).sum(axis=0)
    recalled[lo : lo + block_size] = (d <= fake_r[None, :]).any(axis=1)
    covered[lo : lo + block_size] = d.min(axis=1) < real_r[lo : lo + block_size]
  return {
    'precision': float(in_real_ball.mean()),
    'recall': float(recalled.mean()),
    'density': float(real_ball_count.mean() / k),
    'coverage': float(covered.mean()),
  }
