"""Inception Score (Salimans et al. 2016, sec. 4): exp(E_x KL(p(y|x) || p(y))), over splits.

The standard protocol computes the score on 10 equal, contiguous splits of the samples and
reports the mean and standard deviation over splits. With the FID InceptionV3 the class
posteriors are the softmax of its 1,008 logits (as in the original TF code and pytorch-fid's
companions); with a LeNet domain classifier it is a 10-class "IS (LeNet)", bounded by 10.

Bounds: IS = 1 when every sample gets the same posterior; IS = K for confident, balanced
predictions over K classes.

`StreamingInceptionScore` gives the same numbers batch by batch (using
E_x KL(p(y|x) || p(y)) = E_x[sum_y p log p] - sum_y p(y) log p(y) per split).
"""

from __future__ import annotations

import numpy as np
import scipy.special


def _probs(logits: np.ndarray | None, probs: np.ndarray | None) -> np.ndarray:
  if (logits is None) == (probs is None):
    raise ValueError('pass exactly one of logits= or probs=.')
  x = np.asarray(logits if logits is not None else probs, np.float64)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 2:
    raise ValueError(f'class scores must be [N, K] with N >= 1 and K >= 2, got shape {x.shape}.')
  if not np.isfinite(x).all():
    raise ValueError('class scores contain NaN or infinite values.')
  if logits is not None:
    return scipy.special.softmax(x, axis=1)
  if (x < 0).any() or not np.allclose(x.sum(axis=1), 1.0, atol=1e-4):
    raise ValueError('probs must be non-negative and each row must sum to 1.')
  return x


def _split_bounds(n: int, splits: int) -> list[tuple[int, int]]:
  if not 1 <= splits <= n:
    raise ValueError(f'splits={splits} must be between 1 and the number of samples ({n}).')
  return [(i * n // splits, (i + 1) * n // splits) for i in range(splits)]


def inception_score(
  logits: np.ndarray | None = None, *, probs: np.ndarray | None = None, splits: int = 10
) -> tuple[float, float]:
  """Inception Score of class scores for N samples.

  Args:
    logits: float [N, K] pre-softmax scores, or
    probs: float [N, K] class posteriors (rows sum to 1; zeros allowed).
    splits: number of contiguous, (near-)equal splits (10 as in Salimans et al.).

  Returns:
    (mean, std) of exp(mean_x KL(p(y|x) || p(y))) over splits; std with ddof=0.

  Raises:
    ValueError: bad shapes, non-finite values, rows that are not distributions, or
      splits not in [1, N].
  """
  p = _probs(logits, probs)
  scores = []
  for lo, hi in _split_bounds(p.shape[0], splits):
    part = p[lo:hi]
    py = part.mean(axis=0)
    kl = scipy.special.rel_entr(part, py[None, :]).sum(axis=1).mean()
    scores.append(np.exp(kl))
  return float(np.mean(scores)), float(np.std(scores))


class StreamingInceptionScore:
  """The Inception Score accumulated batch by batch; equals `inception_score` on the stack.

  Args:
    num_samples: N, the total number of samples that will be fed (fixes the split bounds).
    num_classes: K.
    splits: as in `inception_score`.
  """

  def __init__(self, num_samples: int, num_classes: int, splits: int = 10):
    self._bounds = _split_bounds(num_samples, splits)
    self._n = num_samples
    self._seen = 0
    self._sum_p = np.zeros((splits, num_classes), np.float64)
    self._sum_plogp = np.zeros(splits, np.float64)

  def update(self, logits: np.ndarray) -> None:
    """Folds in logits float [B, K] of the next B samples.

    Raises:
      ValueError: more than num_samples samples in total, or as in `inception_score`.
    """
    p = _probs(logits, None)
    if self._seen + p.shape[0] > self._n:
      raise ValueError(f'got more than the announced {self._n} samples.')
    idx = np.arange(self._seen, self._seen + p.shape[0])
    for s, (lo, hi) in enumerate(self._bounds):
      mask = (idx >= lo) & (idx < hi)
      if mask.any():
        self._sum_p[s] += p[mask].sum(axis=0)
        self._sum_plogp[s] += scipy.special.entr(p[mask]).sum() * -1.0
    self._seen += p.shape[0]

  def result(self) -> tuple[float, float]:
    """(mean, std) over splits; raises ValueError unless exactly num_samples were fed."""
    if self._seen != self._n:
      raise ValueError(f'fed {self._seen} samples of the announced {self._n}.')
    scores = []
    for s, (lo, hi) in enumerate(self._bounds):
      py = self._sum_p[s] / (hi - lo)
      kl = self._sum_plogp[s] / (hi - lo) + scipy.special.entr(py).sum()
      scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
