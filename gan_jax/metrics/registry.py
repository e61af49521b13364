"""The evaluation metrics registry: each `eval.metrics` entry is one `Metric` that declares itself.

A `Metric` says what it is called in `eval.metrics` ('fid'), the results it produces
(`Result`: result stem, display name, which direction is better), whether it judges images in
a feature network's space (then it sees the network's features and logits and its result keys
carry the network's tag: `fid_lenet`, `kid_inception_std`), how many generated images it
judges, its config constraints (`check`, `check_net`), and how it is computed: `start`
returns a `Stream` that is fed the images batch by batch and returns its results at the end.
`gan_jax.metrics.evaluate.Evaluator` loops over the configured entries; config validation,
display names and the sweep's bookkeeping ask this module. Adding a metric is one
`register(Metric(...))` call (see docs/evaluation.md).

Registered here, in this order (which is the order of the results):

    fid    FID against the reference statistics (Heusel et al. 2017), streamed in float64
    kid    KID mean and std over `kid_num_subsets` subsets of 1,000 (Binkowski et al. 2018)
    is     Inception Score mean and std over 10 splits (Salimans et al. 2016)
    pr     precision, recall (k = 3; Kynkaanniemi et al. 2019), density, coverage
           (Naeem et al. 2020)
    modes  Stacked-MNIST modes covered and KL to uniform (Srivastava et al. 2017; Lin et al.
           2018), with the MNIST classifier per channel
    classes  class balance of the generated images as the LeNet classifies them: KL to
           uniform, smallest and largest class share (MNIST's train classes are 9.0-11.2%)

Result keys: a feature-network metric's result stem 'kid_std' becomes `kid_<tag>_std` (the tag
goes after the stem's first word; the tag is the network's label in lower case: 'lenet',
'inception'); any other metric's stems are its keys ('modes_covered').
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from gan_jax.errors import ConfigError
from gan_jax.metrics import fid as fid_lib
from gan_jax.metrics import inception_score as is_lib
from gan_jax.metrics import kid as kid_lib
from gan_jax.metrics import mode_coverage
from gan_jax.metrics import prdc as prdc_lib
from gan_jax.metrics.features import FeatureNet
from gan_jax.metrics.stats import StreamingStats

# Feature-network tag (the lower-cased `FeatureNet.label`) -> how display names show it.
NET_LABELS = {'lenet': 'LeNet', 'inception': 'Inception'}
BETTER = ('lower', 'higher', None)
SAMPLE_COUNTS = ('num_samples', 'modes_num_samples')
_NAME = re.compile(r'[a-z][a-z0-9]*\Z')
_STEM = re.compile(r'[a-z][a-z0-9]*(_[a-z0-9]+)*\Z')


@dataclasses.dataclass(frozen=True)
class Result:
  """One number a metric reports.

  Attributes:
    stem: the result key without the network tag, lower-case words joined by '_', e.g. 'fid',
      'kid_std', 'modes_covered'.
    display: how tables show it, e.g. 'KID std' (' (LeNet)' is appended for a feature-network
      metric).
    better: 'lower' or 'higher' when it is a score (FID: lower), None when it is not one (a
      standard deviation).
  """

  stem: str
  display: str
  better: str | None


@dataclasses.dataclass(frozen=True)
class Batch:
  """What a `Stream` is fed: the next images of the ones it judges.

  Attributes:
    images: float32 [b, H, W, C] in [-1, 1] (numpy or jax).
    features: float32 numpy [b, D], the feature network's features of `images` (None for a
      metric that is not a feature-network metric).
    logits: float32 jax array [b, K], the feature network's logits (None likewise).
  """

  images: Any
  features: np.ndarray | None = None
  logits: Any = None


class Stream(Protocol):
  """A metric's running state for one evaluation."""

  def update(self, batch: Batch) -> None:
    """Folds in the next images (in sample order; batch sizes vary)."""

  def result(self) -> Mapping[str, float | int]:
    """{result stem: value} for every `Result` of the metric, once all images were fed."""


@dataclasses.dataclass(frozen=True)
class Request:
  """The evaluation a metric is asked to take part in, for its config constraints.

  Attributes:
    image_shape: (H, W, C) of the images to judge.
    num_samples: images for the feature-network metrics.
    modes_num_samples: images for metrics with samples='modes_num_samples'.
    kid_pr_samples: generated features KID and precision/recall keep.
  """

  image_shape: tuple[int, int, int]
  num_samples: int
  modes_num_samples: int
  kid_pr_samples: int


@dataclasses.dataclass(frozen=True)
class Metric:
  """An `eval.metrics` entry.

  Attributes:
    name: its name in `eval.metrics`, lower-case letters and digits ('fid').
    summary: one line: what it measures and after whom.
    results: the numbers it reports, in order.
    start: `start(evaluator) -> Stream`; evaluator is the `gan_jax.metrics.evaluate.Evaluator`
      (its `net`, `reference`, `mode_classifier`, `num_samples`, `kid_pr_samples`, `seed`,
      `kid_num_subsets`, ... attributes).
    feature_net: True when it judges images in the feature network's space: the Evaluator
      then loads the network and the real reference, feeds it `Batch.features` / `.logits`,
      and tags its result keys with the network.
    samples: the Evaluator attribute that says how many generated images it judges (the
      first ones): 'num_samples' or 'modes_num_samples' (a feature-network metric takes
      'num_samples', the images that go through the feature network).
    mnist_classifier: True when it needs the MNIST LeNet (`Evaluator.mode_classifier`).
    check: `check(request)` raises `ConfigError` when the evaluation asked for does not suit
      it (before any network is loaded); None: no constraint.
    check_net: `check_net(request, net)`, likewise once the feature network is loaded.
  """

  name: str
  summary: str
  results: tuple[Result, ...]
  start: Callable[[Any], Stream]
  feature_net: bool = True
  samples: str = 'num_samples'
  mnist_classifier: bool = False
  check: Callable[[Request], None] | None = None
  check_net: Callable[[Request, FeatureNet], None] | None = None

  def key(self, stem: str, tag: str | None = None) -> str:
    """The result key of `stem`: `kid_std` -> `kid_<tag>_std` for a feature-network metric.

    Raises:
      ValueError: a feature-network metric without a tag.
    """
    if not self.feature_net:
      return stem
    if not tag:
      raise ValueError(f'metric {self.name!r} judges features: its result keys need the net tag.')
    head, _, tail = stem.partition('_')
    return f'{head}_{tag}' + (f'_{tail}' if tail else '')

  def keys(self, tag: str | None = None) -> tuple[str, ...]:
    """Its result keys, in order (see `key`)."""
    return tuple(self.key(r.stem, tag) for r in self.results)


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
  """Adds a metric (last in the order); returns it.

  Raises:
    ValueError: a name already registered, a malformed name or result stem, a result stem or
      result key another metric also produces, or an unknown `better` / `samples`.
  """
  if not _NAME.match(metric.name):
    raise ValueError(f'metric name {metric.name!r}: use lower-case letters and digits.')
  if metric.name in _REGISTRY:
    raise ValueError(f'metric {metric.name!r} is already registered; unregister it first.')
  if not metric.results:
    raise ValueError(f'metric {metric.name!r} reports no results.')
  if metric.samples not in SAMPLE_COUNTS:
    raise ValueError(f'metric {metric.name!r}: samples must be one of {SAMPLE_COUNTS}.')
  if metric.feature_net and metric.samples != 'num_samples':
    raise ValueError(f'metric {metric.name!r} judges features: samples must be num_samples.')
  taken = {r.stem: m.name for m in _REGISTRY.values() for r in m.results}
  for r in metric.results:
    if not _STEM.match(r.stem):
      raise ValueError(f'metric {metric.name!r}: result stem {r.stem!r} is malformed.')
    if r.better not in BETTER:
      raise ValueError(f'metric {metric.name!r}: result {r.stem!r} has better={r.better!r}.')
    if r.stem in taken:
      raise ValueError(f'result {r.stem!r} of {metric.name!r} is also one of {taken[r.stem]!r}.')
  new = metric.keys('tag') if metric.feature_net else metric.keys()
  for other in _REGISTRY.values():
    clash = set(new) & set(other.keys('tag') if other.feature_net else other.keys())
    if clash:
      raise ValueError(f'metric {metric.name!r} has result keys of {other.name!r}: {clash}.')
  _REGISTRY[metric.name] = metric
  return metric


def unregister(name: str) -> Metric:
  """Removes a metric (tests add toy metrics and remove them); returns it.

  Raises:
    KeyError: no such metric.
  """
  return _REGISTRY.pop(name)


def names() -> tuple[str, ...]:
  """The registered metric names, in order ('fid', 'kid', 'is', 'pr', 'modes', ...)."""
  return tuple(_REGISTRY)


def metrics(selected: Iterable[str] | None = None) -> tuple[Metric, ...]:
  """The registered metrics in registry order, or those of them named in `selected`."""
  if selected is None:
    return tuple(_REGISTRY.values())
  wanted = set(selected)
  return tuple(m for m in _REGISTRY.values() if m.name in wanted)


def parse(spec: str | Sequence[str]) -> tuple[str, ...]:
  """'fid,kid' or ('fid', 'kid') -> ('fid', 'kid'): stripped, lower-cased, de-duplicated.

  Raises:
    ConfigError: an unknown name, or none at all.
  """
  items = spec.split(',') if isinstance(spec, str) else spec
  given = [m for m in (str(m).strip().lower() for m in items) if m]
  unknown = [m for m in given if m not in _REGISTRY]
  if unknown or not given:
    raise ConfigError(
      f'metrics={",".join(given) or "(none)"!s} is invalid: unknown {unknown}; choose from '
      f'{",".join(_REGISTRY)} (e.g. fid,kid).'
    )
  return tuple(dict.fromkeys(given))


def result_families(tag: str) -> dict[str, str]:
  """{result key: the metric name that computes it} of every registered metric, for results
  judged by the feature network tagged `tag` ('lenet', 'inception'), e.g. {'fid_lenet': 'fid',
  'kid_lenet_std': 'kid', ..., 'modes_covered': 'modes'}."""
  return {key: m.name for m in _REGISTRY.values() for key in m.keys(tag)}


def _lookup(key: str) -> tuple[Metric, Result, str | None] | None:
  """(metric, result, tag) of a result key with a tag from `NET_LABELS`, or None."""
  for m in _REGISTRY.values():
    for r in m.results:
      for tag in NET_LABELS if m.feature_net else (None,):
        if m.key(r.stem, tag) == key:
          return m, r, tag
  return None


def family(key: str) -> str | None:
  """The metric name ('fid') that computes result `key` ('fid_lenet'); None when no registered
  metric does (the tag must be one of `NET_LABELS`)."""
  found = _lookup(key)
  return found[0].name if found else None


def better(key: str) -> str | None:
  """'lower' or 'higher' for a result key that is a score ('fid_lenet': 'lower'), else None."""
  found = _lookup(key)
  return found[1].better if found else None


def display_name(key: str) -> str:
  """'fid_lenet' -> 'FID (LeNet)', 'kid_inception_std' -> 'KID std (Inception)',
  'modes_kl' -> 'KL(modes || uniform)'; an unknown key is returned as it is."""
  found = _lookup(key)
  if found is None:
    return key
  _, result, tag = found
  return f'{result.display} ({NET_LABELS[tag]})' if tag else result.display


# ----------------------------------------------------------------------------------------------
# The built-in metrics.
# ----------------------------------------------------------------------------------------------


class _FirstFeatures:
  """Keeps the float32 features of the first `limit` images (views, not copies, when the
  features are float32 already, so KID and precision/recall share the memory)."""

  def __init__(self, limit: int):
    self.limit, self.count, self.parts = limit, 0, []

  def update(self, features: np.ndarray) -> None:
    if self.count < self.limit:
      self.parts.append(np.asarray(features[: self.limit - self.count], np.float32))
      self.count += self.parts[-1].shape[0]

  def array(self) -> np.ndarray | None:
    return np.concatenate(self.parts) if self.parts else None


class _FIDStream:
  def __init__(self, ev: Any):
    self.reference, self.acc = ev.reference, StreamingStats()

  def update(self, batch: Batch) -> None:
    self.acc.update(batch.features)

  def result(self) -> dict[str, float]:
    return {'fid': fid_lib.fid_from_stats(self.acc.finalize(), self.reference.stats)}


def _check_fid_net(request: Request, net: FeatureNet) -> None:
  if request.num_samples <= net.feature_dim:
    raise ConfigError(
      f'num_samples={request.num_samples} is too few for FID with {net.name} '
      f'({net.feature_dim} features): use more than {net.feature_dim} (10,000+ for comparable '
      'numbers).'
    )


class _KIDStream:
  def __init__(self, ev: Any):
    self.ev, self.kept = ev, _FirstFeatures(ev.kid_pr_samples)

  def update(self, batch: Batch) -> None:
    self.kept.update(batch.features)

  def result(self) -> dict[str, float]:
    r = kid_lib.kernel_inception_distance(
      self.ev.reference.features,
      self.kept.array(),
      num_subsets=self.ev.kid_num_subsets,
      seed=self.ev.seed,
    )
    return {'kid': r.mean, 'kid_std': r.std}


class _ISStream:
  def __init__(self, ev: Any):
    self.score = is_lib.StreamingInceptionScore(ev.num_samples, ev.net.num_classes)

  def update(self, batch: Batch) -> None:
    self.score.update(np.asarray(batch.logits))

  def result(self) -> dict[str, float]:
    mean, std = self.score.result()
    return {'is': mean, 'is_std': std}


class _PRDCStream:
  def __init__(self, ev: Any):
    self.ev, self.kept = ev, _FirstFeatures(ev.kid_pr_samples)

  def update(self, batch: Batch) -> None:
    self.kept.update(batch.features)

  def result(self) -> dict[str, float]:
    real, n = self.ev.reference.features, self.ev.kid_pr_samples
    if real.shape[0] > n:  # a fixed, seeded subset of the same size
      pick = np.random.default_rng(self.ev.seed).choice(real.shape[0], n, replace=False)
      real = real[np.sort(pick)]
    return prdc_lib.precision_recall_density_coverage(real, self.kept.array())


class _ClassesStream:
  def __init__(self, ev: Any):
    self.counts = np.zeros(ev.net.num_classes, np.int64)

  def update(self, batch: Batch) -> None:
    top = np.argmax(np.asarray(batch.logits), axis=-1)
    self.counts += np.bincount(top, minlength=self.counts.size)

  def result(self) -> dict[str, float]:
    return class_shares(self.counts)


def class_shares(counts: Any) -> dict[str, float]:
  """The class balance of generated images from their predicted-class counts.

  Args:
    counts: int [K], how many images the feature network's classifier put in each class.

  Returns:
    {'classes_kl': KL(p || uniform) = sum_k p_k log(K p_k) in nats (0 for a perfectly balanced
    set, log K when every image is in one class; 0 log 0 = 0), 'classes_min': the smallest
    share p_k, 'classes_max': the largest}, shares in [0, 1].

  Raises:
    ValueError: no images counted.
  """
  counts = np.asarray(counts, np.float64)
  if counts.sum() <= 0:
    raise ValueError('class balance of no images: count at least one image.')
  p = counts / counts.sum()
  kl = float(np.sum(p[p > 0] * np.log(p[p > 0] * p.size)))
  return {'classes_kl': kl, 'classes_min': float(p.min()), 'classes_max': float(p.max())}


def _check_classes_net(request: Request, net: FeatureNet) -> None:
  del request
  if net.num_classes > 100:
    raise ConfigError(
      f'metric "classes" counts the classes {net.name} predicts, and its {net.num_classes} '
      'ImageNet classes are not the data\'s: use it with a LeNet (eval.feature_net=lenet_mnist or '
      'lenet_fashion_mnist), or drop it from eval.metrics.'
    )


class _ModesStream:
  def __init__(self, ev: Any):
    self.classifier, self.digits = ev.mode_classifier, []

  def update(self, batch: Batch) -> None:
    self.digits.append(mode_coverage.classify_stacked(batch.images, self.classifier))

  def result(self) -> dict[str, float | int]:
    cov = mode_coverage.mode_coverage(np.concatenate(self.digits))
    return {'modes_covered': int(cov['modes_covered']), 'modes_kl': float(cov['kl'])}


def _check_modes(request: Request) -> None:
  if tuple(request.image_shape) != mode_coverage.IMAGE_SHAPE:
    raise ConfigError(
      f'metric "modes" counts Stacked-MNIST modes and needs 28x28x3 images, got '
      f'{"x".join(map(str, request.image_shape))}; use it with data.name=stacked_mnist.'
    )


register(
  Metric(
    'fid',
    'Frechet Inception Distance (Heusel et al. 2017), streamed in float64',
    (Result('fid', 'FID', 'lower'),),
    _FIDStream,
    check_net=_check_fid_net,
  )
)
register(
  Metric(
    'kid',
    'Kernel Inception Distance, mean and std over subsets of 1,000 (Binkowski et al. 2018)',
    (Result('kid', 'KID', 'lower'), Result('kid_std', 'KID std', None)),
    _KIDStream,
  )
)
register(
  Metric(
    'is',
    'Inception Score, mean and std over 10 splits (Salimans et al. 2016)',
    (Result('is', 'IS', 'higher'), Result('is_std', 'IS std', None)),
    _ISStream,
  )
)
register(
  Metric(
    'pr',
    'precision, recall (k = 3; Kynkaanniemi et al. 2019), density, coverage (Naeem et al. 2020)',
    (
      Result('precision', 'Precision', 'higher'),
      Result('recall', 'Recall', 'higher'),
      Result('density', 'Density', 'higher'),
      Result('coverage', 'Coverage', 'higher'),
    ),
    _PRDCStream,
  )
)
register(
  Metric(
    'modes',
    'Stacked-MNIST modes covered and KL to uniform (Srivastava et al. 2017; Lin et al. 2018)',
    (
      Result('modes_covered', 'Modes covered (of 1000)', 'higher'),
      Result('modes_kl', 'KL(modes || uniform)', 'lower'),
    ),
    _ModesStream,
    feature_net=False,
    samples='modes_num_samples',
    mnist_classifier=True,
    check=_check_modes,
  )
)
register(
  Metric(
    'classes',
    "class balance: the feature network's predicted classes, KL to uniform and the smallest and "
    'largest share (for MNIST-like data, whose classes are near uniform)',
    (
      Result('classes_kl', 'Class KL to uniform', 'lower'),
      Result('classes_min', 'Smallest class share', 'higher'),
      Result('classes_max', 'Largest class share', None),
    ),
    _ClassesStream,
    check_net=_check_classes_net,
  )
)
