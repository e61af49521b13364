"""Streaming feature statistics: mean and covariance accumulated in float64, batch by batch.

FID needs the mean and covariance of 10,000-50,000 feature vectors of up to 2,048 dimensions.
`StreamingStats` folds each batch in with the pairwise update of Chan, Golub and LeVeque
(1979), in float64, so the samples never sit in memory at once and the result does not
depend (beyond float64 rounding, ~1e-12 relative) on the batch size or sample order.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureStats:
  """Mean and covariance of N feature vectors.

  Attributes:
    mean: float64 [D].
    cov: float64 [D, D], the unbiased sample covariance (divides by N - 1, as `np.cov` and
      pytorch-fid do).
    count: N, the number of vectors.
  """

  mean: np.ndarray
  cov: np.ndarray
  count: int

  @property
  def dim(self) -> int:
    return int(self.mean.shape[0])

  def save(self, path: str) -> None:
    """Writes the statistics to an `.npz` file (keys mu, sigma, count)."""
    np.savez(path, mu=self.mean, sigma=self.cov, count=np.int64(self.count))

  @classmethod
  def load(cls, path: str) -> FeatureStats:
    """Reads statistics written by `save` (or any `.npz` with `mu` and `sigma`, as
    pytorch-fid writes them; `count` then defaults to 0, meaning unknown)."""
    with np.load(path) as f:
      count = int(f['count']) if 'count' in f else 0
      return cls(np.asarray(f['mu'], np.float64), np.asarray(f['sigma'], np.float64), count)


def check_features(
  features: np.ndarray, name: str = 'features', dim: int | None = None
) -> np.ndarray:
  """Returns features as a float64 [N, D] array, or raises a ValueError saying what is wrong.

  Raises:
    ValueError: not 2-D, empty, D differs from `dim`, or any value NaN or infinite.
  """
  x = np.asarray(features)
  if x.ndim != 2:
    raise ValueError(
      f'{name} must be a 2-D array [N, D] (N vectors of D features), got shape {x.shape}; '
      'flatten each sample to one feature vector first.'
    )
  if x.shape[0] == 0:
    raise ValueError(f'{name} is empty (shape {x.shape}); pass at least one feature vector.')
  if dim is not None and x.shape[1] != dim:
    raise ValueError(
      f'{name} have {x.shape[1]} features per vector but earlier ones had {dim}; '
      'all features must come from the same feature network layer.'
    )
  x = x.astype(np.float64, copy=False)
  if not np.isfinite(x).all():
    bad = int((~np.isfinite(x)).any(axis=1).sum())
    raise ValueError(
      f'{name} contain NaN or infinite values ({bad} of {x.shape[0]} vectors); the images or '
      'the feature network produced non-finite numbers (check the generator for NaNs).'
    )
  return x


class StreamingStats:
  """Accumulates the mean and covariance of feature vectors batch by batch, in float64.

  Example::

      acc = StreamingStats()
      for batch in feature_batches:      # float [B, D]
        acc.update(batch)
      stats = acc.finalize()             # FeatureStats(mean [D], cov [D, D], count)

  Memory is O(D^2) whatever the number of samples.
  """

  def __init__(self, dim: int | None = None):
    self._dim = dim
    self._n = 0
    self._mean = None if dim is None else np.zeros(dim, np.float64)
    self._m2 = None if dim is None else np.zeros((dim, dim), np.float64)

  @property
  def count(self) -> int:
    return self._n

  def update(self, features: np.ndarray) -> None:
    """Folds in a batch of feature vectors, float [B, D] (any float dtype; NaN rejected).

    Raises:
      ValueError: as in `check_features`.
    """
    x = check_features(features, dim=self._dim)
    if self._dim is None:
      self._dim = x.shape[1]
      self._mean = np.zeros(self._dim, np.float64)
      self._m2 = np.zeros((self._dim, self._dim), np.float64)
    nb = x.shape[0]
    mean_b = x.mean(axis=0)
    centered = x - mean_b
    m2_b = centered.T @ centered
    n = self._n + nb
    delta = mean_b - self._mean
    self._mean = self._mean + delta * (nb / n)
    self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (self._n * nb / n)
    self._n = n

  def merge(self, other: StreamingStats) -> None:
    """Folds in another accumulator's vectors (e.g. from another process)."""
    if other.count == 0:
      return
    if self._n == 0:
      self._dim, self._n = other._dim, other._n
      self._mean, self._m2 = other._mean.copy(), other._m2.copy()
      return
    if other._dim != self._dim:
      raise ValueError(f'cannot merge statistics of {other._dim} features into {self._dim}.')
    n = self._n + other._n
    delta = other._mean - self._mean
    self._mean = self._mean + delta * (other._n / n)
    self._m2 = self._m2 + other._m2 + np.outer(delta, delta) * (self._n * other._n / n)
    self._n = n

  def finalize(self) -> FeatureStats:
    """Returns the `FeatureStats` so far (the accumulator stays usable).

    Raises:
      ValueError: fewer than 2 vectors were seen (no covariance exists).
    """
    if self._n < 2:
      raise ValueError(
        f'statistics need at least 2 feature vectors, got {self._n}; evaluate more samples.'
      )
    cov = self._m2 / (self._n - 1)
    cov = (cov + cov.T) / 2  # exactly symmetric
    return FeatureStats(self._mean.copy(), cov, self._n)


def feature_stats(features: np.ndarray) -> FeatureStats:
  """Mean and unbiased covariance of features [N, D] in one call (N >= 2)."""
  acc = StreamingStats()
  acc.update(features)
  return acc.finalize()
