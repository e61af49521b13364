"""Evaluate a generator (or a stream of images) with the configured metrics.

`Evaluator` loads the feature network and the cached real reference once, then evaluates
any number of generator states: it samples `num_samples` images from fixed latents (latent
i is a function of (seed, i) only, so the samples do not depend on the batch size), passes
them through the feature network batch by batch, and computes

    fid    FID against the reference statistics (Heusel et al. 2017), streamed in float64
    kid    KID mean and std over 100 subsets of 1,000 (Binkowski et al. 2018)
    is     Inception Score mean and std over 10 splits (Salimans et al. 2016)
    pr     precision, recall (k = 3; Kynkaanniemi et al. 2019), density, coverage
           (Naeem et al. 2020)
    modes  Stacked-MNIST modes covered and KL to uniform (Srivastava et al. 2017; Lin et al.
           2018), on `modes_num_samples` (26,000) samples, with the MNIST classifier per
           channel

Only FID and IS are fully streaming; KID and precision/recall keep the float32 features of
the first `kid_pr_samples` generated images (10,000 x 2,048 Inception features are 82 MB).

Results are a flat dict whose keys carry the feature network: `fid_lenet`, `kid_lenet`,
`kid_lenet_std`, `is_inception`, `precision_lenet`, ..., `modes_covered`, `modes_kl`;
`display_name` turns them into "FID (LeNet)", "KID (Inception)", ... FID on a LeNet is never
reported as Inception FID.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import sampling
from gan_jax.errors import ConfigError
from gan_jax.metrics import fid as fid_lib
from gan_jax.metrics import inception_score as is_lib
from gan_jax.metrics import kid as kid_lib
from gan_jax.metrics import prdc as prdc_lib
from gan_jax.metrics.features import FeatureNet
from gan_jax.metrics.reference import Reference, load_reference
from gan_jax.metrics.stats import StreamingStats

METRICS = ('fid', 'kid', 'is', 'pr', 'modes')
FEATURE_NETS = ('auto', 'lenet_mnist', 'lenet_fashion_mnist', 'inception_v3')
_LENET_DATASETS = {'mnist': 'lenet_mnist', 'fashion_mnist': 'lenet_fashion_mnist'}
_DISPLAY = {
  'fid': 'FID',
  'kid': 'KID',
  'kid_std': 'KID std',
  'is': 'IS',
  'is_std': 'IS std',
  'precision': 'Precision',
  'recall': 'Recall',
  'density': 'Density',
  'coverage': 'Coverage',
}


def parse_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
  """'fid,kid' or ('fid', 'kid') -> ('fid', 'kid'); raises ConfigError for unknown names."""
  names = [m.strip().lower() for m in (metrics.split(',') if isinstance(metrics, str) else metrics)]
  names = [m for m in names if m]
  unknown = [m for m in names if m not in METRICS]
  if unknown or not names:
    raise ConfigError(
      f'metrics={",".join(names) or "(none)"!s} is invalid: unknown {unknown}; choose from '
      f'{",".join(METRICS)} (e.g. fid,kid).'
    )
  return tuple(dict.fromkeys(names))


def resolve_feature_net_name(name: str, dataset: str) -> str:
  """'auto' picks the LeNet of MNIST / Fashion-MNIST / Stacked MNIST, else 'inception_v3'."""
  if name not in FEATURE_NETS:
    raise ConfigError(f'feature_net={name!r} is invalid: choose one of {list(FEATURE_NETS)}.')
  if name != 'auto':
    return name
  if dataset == 'stacked_mnist':
    return 'lenet_mnist'
  return _LENET_DATASETS.get(dataset, 'inception_v3')


def load_feature_net(
  name: str,
  *,
  inception_weights: str | None = None,
  download_inception: bool = False,
  cache_dir: str | None = None,
) -> FeatureNet:
  """Loads a pinned feature network by name (see `FEATURE_NETS`, 'auto' excluded).

  Raises:
    ConfigError: unknown name.
    gan_jax.metrics.inception.InceptionWeightsNotFoundError: Inception weights not found.
  """
  if name.startswith('lenet_'):
    from gan_jax.metrics.lenet import load_lenet  # pylint: disable=g-import-not-at-top

    return load_lenet(name[len('lenet_') :])
  if name == 'inception_v3':
    from gan_jax.metrics.inception import load_inception  # pylint: disable=g-import-not-at-top

    return load_inception(inception_weights, download=download_inception, cache_dir=cache_dir)
  raise ConfigError(f'feature network {name!r} is unknown: choose one of {list(FEATURE_NETS)}.')


def display_name(key: str) -> str:
  """'fid_lenet' -> 'FID (LeNet)', 'kid_inception_std' -> 'KID std (Inception)', ..."""
  if key == 'modes_covered':
    return 'Modes covered (of 1000)'
  if key == 'modes_kl':
    return 'KL(modes || uniform)'
  for net, label in (('lenet', 'LeNet'), ('inception', 'Inception')):
    for suffix in ('', '_std'):
      for metric in ('fid', 'kid', 'is', 'precision', 'recall', 'density', 'coverage'):
        if key == f'{metric}_{net}{suffix}':
          return f'{_DISPLAY[metric + suffix]} ({label})'
  return key


def format_table(results: dict[str, Any]) -> str:
  """A two-column text table of a results dict (numbers only; other values are skipped)."""
  rows = [(display_name(k), v) for k, v in results.items() if isinstance(v, (int, float))]
  width = max((len(n) for n, _ in rows), default=10)
  lines = []
  for name, value in rows:
    text = f'{value:d}' if isinstance(value, int) else f'{value:.6g}'
    lines.append(f'{name:<{width}}  {text}')
  return '\n'.join(lines)


def latents(seed: int, start: int, count: int, latent_dim: int) -> jax.Array:
  """z_i ~ N(0, I) for sample indices i in [start, start + count): float32 [count, latent_dim].

  z_i depends only on (seed, i), so evaluation samples do not depend on the batch size.
  """
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 0xE7A1)
  idx = jnp.arange(start, start + count)
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (latent_dim,)))(idx)


@dataclasses.dataclass
class Evaluator:
  """Computes `metrics` for generators or image streams against one real reference.

  Build with `Evaluator.create(...)` or `Evaluator.from_config(config)`.

  Attributes:
    metrics: names from `METRICS`.
    net: the feature network (None when only 'modes' is asked for).
    reference: real features of the reference split (None when only 'modes').
    mode_classifier: the MNIST LeNet used per channel for 'modes' (else None).
    num_samples: generated images for fid/kid/is/pr.
    modes_num_samples: generated images for 'modes' (26,000 in Lin et al. 2018).
    batch_size: images per generator / feature-network call.
    kid_pr_samples: generated features kept for KID and precision/recall.
    seed: seeds the latents and KID's subsets.
    kid_num_subsets: KID subsets (100 as in Binkowski et al.; fewer only for quick tests).
    ema_batch_stats: BatchNorm statistics `evaluate_state` gives the EMA generator: 'raw'
      (`GANState.g_batch_stats`, the raw generator's running averages) or 'standing'
      (recomputed from the EMA weights, `gan_jax.sampling.standing_batch_stats`).
  """

  metrics: tuple[str, ...]
  net: FeatureNet | None
  reference: Reference | None
  mode_classifier: FeatureNet | None
  num_samples: int
  modes_num_samples: int = 26000
  batch_size: int = 500
  kid_pr_samples: int = 10000
  seed: int = 0
  kid_num_subsets: int = 100
  ema_batch_stats: str = 'raw'

  @classmethod
  def create(
    cls,
    *,
    dataset: str,
    split: str,
    data_dir: str | None,
    image_size: int,
    channels: int,
    metrics: str | Sequence[str] = ('fid', 'kid'),
    feature_net: str = 'auto',
    num_samples: int = 10000,
    modes_num_samples: int = 26000,
    batch_size: int = 500,
    kid_pr_samples: int = 10000,
    seed: int = 0,
    inception_weights: str | None = None,
    download_inception: bool = False,
    cache_dir: str | None = None,
    download: bool = False,
  ) -> Evaluator:
    """Loads the feature network(s) and the real reference (cached; see `load_reference`).

    Args:
      dataset, split, data_dir: the real data the reference statistics come from.
      image_size, channels: the generated images' shape (the reference is loaded alike).
      metrics: names or a comma-separated string, from `METRICS`.
      feature_net: one of `FEATURE_NETS`.
      The rest: see the class attributes, `load_feature_net` and `load_reference`.

    Raises:
      ConfigError: unknown metric or feature network; too few samples for the feature
        dimension (FID needs num_samples > D); a LeNet asked to judge images of another
        shape; 'modes' on images that are not 28x28x3.
    """
    metrics = parse_metrics(metrics)
    for field, value in (
      ('num_samples', num_samples),
      ('batch_size', batch_size),
      ('modes_num_samples', modes_num_samples),
      ('kid_pr_samples', kid_pr_samples),
    ):
      if not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f'{field}={value!r} is invalid: must be a positive integer.')
    net = reference = mode_classifier = None
    if 'modes' in metrics:
      if (image_size, channels) != (28, 3):
        raise ConfigError(
          f'metric "modes" counts Stacked-MNIST modes and needs 28x28x3 images, got '
          f'{image_size}x{image_size}x{channels}; use it with data.name=stacked_mnist.'
        )
      mode_classifier = load_feature_net('lenet_mnist')
    if set(metrics) - {'modes'}:
      name = resolve_feature_net_name(feature_net, dataset)
      net = load_feature_net(
        name,
        inception_weights=inception_weights,
        download_inception=download_inception,
        cache_dir=cache_dir,
      )
      if net.image_shape is not None and tuple(net.image_shape) != (
        image_size,
        image_size,
        channels,
      ):
        raise ConfigError(
          f'feature network {net.name} judges {"x".join(map(str, net.image_shape))} images but '
          f'the generator makes {image_size}x{image_size}x{channels}; use metrics=modes for '
          'Stacked MNIST, or eval.feature_net=inception_v3.'
        )
      if 'fid' in metrics and num_samples <= net.feature_dim:
        raise ConfigError(
          f'num_samples={num_samples} is too few for FID with {net.name} ({net.feature_dim} '
          f'features): use more than {net.feature_dim} (10,000+ for comparable numbers).'
        )
      reference = load_reference(
        dataset,
        split,
        net,
        data_dir=data_dir,
        image_size=image_size,
        channels=channels,
        batch_size=batch_size,
        cache_dir=cache_dir,
        download=download,
      )
    return cls(
      metrics,
      net,
      reference,
      mode_classifier,
      num_samples,
      modes_num_samples,
      batch_size,
      kid_pr_samples,
      seed,
    )

  @classmethod
  def from_config(
    cls, config: Any, *, num_samples: int | None = None, metrics: Any = None
  ) -> Evaluator:
    """`create` with the run config's `data.*`, `eval.*`, `eval_num_samples` and `seed`."""
    e = config.eval
    evaluator = cls.create(
      dataset=config.data.name,
      split=e.split,
      data_dir=config.data.data_dir,
      image_size=config.data.image_size,
      channels=config.data.channels,
      metrics=metrics if metrics is not None else e.metrics,
      feature_net=e.feature_net,
      num_samples=num_samples or config.eval_num_samples,
      modes_num_samples=e.modes_num_samples,
      batch_size=e.batch_size,
      kid_pr_samples=e.kid_pr_samples,
      seed=config.seed,
      inception_weights=e.inception_weights,
      download_inception=e.download_inception,
      cache_dir=e.cache_dir,
      download=config.data.download,
    )
    return dataclasses.replace(evaluator, ema_batch_stats=e.get('ema_batch_stats', 'raw'))

  @property
  def total_samples(self) -> int:
    """Images a generator evaluation draws: enough for every requested metric."""
    n = self.num_samples if set(self.metrics) - {'modes'} else 0
    return max(n, self.modes_num_samples if 'modes' in self.metrics else 0)

  def generator_batches(self, gan: Any, params: Any, batch_stats: Any) -> Iterator[jax.Array]:
    """Yields `total_samples` generated images in batches (the last one may be smaller).

    A class-conditional generator (`gan.num_classes = K > 0`) makes sample i of class i % K,
    so the classes are balanced (and sample i does not depend on the batch size either).
    """
    k = getattr(gan, 'num_classes', 0)
    if k:
      generate = jax.jit(lambda p, s, z, y: gan.generate(p, s, z, y, train=False)[0])
    else:
      generate = jax.jit(lambda p, s, z: gan.generate(p, s, z, train=False)[0])
    for lo in range(0, self.total_samples, self.batch_size):
      n = min(self.batch_size, self.total_samples - lo)
      z = latents(self.seed, lo, self.batch_size, gan.latent_dim)  # full batch: one compile
      if k:
        y = jnp.arange(lo, lo + self.batch_size, dtype=jnp.int32) % k
        yield generate(params, batch_stats, z, y)[:n]
      else:
        yield generate(params, batch_stats, z)[:n]

  def evaluate_state(self, gan: Any, state: Any, *, use_ema: bool = True) -> dict[str, Any]:
    """Evaluates the generator of a `GANState` (the EMA generator when `use_ema`, with the
    BatchNorm statistics `ema_batch_stats` says; the raw generator with its own)."""
    params = state.ema_params if use_ema else state.g_params
    stats = state.g_batch_stats
    if use_ema and self.ema_batch_stats == 'standing':
      stats = sampling.standing_batch_stats(gan, params, stats, seed=self.seed)
    return self.evaluate_batches(self.generator_batches(gan, params, stats))

  def evaluate_batches(self, batches: Iterable[Any]) -> dict[str, Any]:
    """Evaluates a stream of image batches, float [B, H, W, C] in [-1, 1].

    Uses the first `num_samples` images for fid/kid/is/pr and the first `modes_num_samples`
    for modes; the stream must hold at least as many as the requested metrics need.

    Returns:
      The flat results dict (see the module docstring), plus 'eval_seconds' and
      'eval_samples_per_sec' (images through the generator and feature network per second).

    Raises:
      ValueError: too few images, non-finite images, or images of the wrong shape.
    """
    t0 = time.perf_counter()
    want = self.total_samples
    feature_n = self.num_samples if self.net is not None else 0
    modes_n = self.modes_num_samples if self.mode_classifier is not None else 0
    acc = StreamingStats()
    stream_is = (
      is_lib.StreamingInceptionScore(feature_n, self.net.num_classes)
      if 'is' in self.metrics
      else None
    )
    kept, digits = [], []
    seen = kept_n = 0
    for batch in batches:
      if seen >= want:
        break
      batch = batch[: want - seen]
      if not bool(jnp.isfinite(jnp.asarray(batch)).all()):
        raise ValueError(
          f'images {seen}..{seen + batch.shape[0] - 1} contain NaN or infinite values; the '
          'generator diverged (or the images were not scaled to [-1, 1]).'
        )
      if seen < feature_n:
        part = batch[: feature_n - seen]
        self.net.check_images(part)
        f, logits = self.net.apply(jnp.asarray(part))
        f = np.asarray(f)
        acc.update(f)
        if stream_is is not None:
          stream_is.update(np.asarray(logits))
        if kept_n < self.kid_pr_samples:
          kept.append(f[: self.kid_pr_samples - kept_n].astype(np.float32))
          kept_n += kept[-1].shape[0]
      if seen < modes_n:
        from gan_jax.metrics import mode_coverage  # pylint: disable=g-import-not-at-top

        digits.append(mode_coverage.classify_stacked(batch[: modes_n - seen], self.mode_classifier))
      seen += batch.shape[0]
    if seen < want:
      raise ValueError(f'the image stream held {seen} images; these metrics need {want}.')

    out: dict[str, Any] = {}
    if self.net is not None:
      tag = self.net.label.lower()
      ref = self.reference
      if 'fid' in self.metrics:
        out[f'fid_{tag}'] = fid_lib.fid_from_stats(acc.finalize(), ref.stats)
      fake = np.concatenate(kept) if kept else None
      if 'kid' in self.metrics:
        r = kid_lib.kernel_inception_distance(
          ref.features, fake, num_subsets=self.kid_num_subsets, seed=self.seed
        )
        out[f'kid_{tag}'], out[f'kid_{tag}_std'] = r.mean, r.std
      if 'is' in self.metrics:
        out[f'is_{tag}'], out[f'is_{tag}_std'] = stream_is.result()
      if 'pr' in self.metrics:
        real = ref.features
        if real.shape[0] > self.kid_pr_samples:  # a fixed, seeded subset of the same size
          pick = np.random.default_rng(self.seed).choice(
            real.shape[0], self.kid_pr_samples, replace=False
          )
          real = real[np.sort(pick)]
        for k, v in prdc_lib.precision_recall_density_coverage(real, fake).items():
          out[f'{k}_{tag}'] = v
    if self.mode_classifier is not None:
      from gan_jax.metrics import mode_coverage  # pylint: disable=g-import-not-at-top

      cov = mode_coverage.mode_coverage(np.concatenate(digits))
      out['modes_covered'], out['modes_kl'] = int(cov['modes_covered']), float(cov['kl'])
    seconds = time.perf_counter() - t0
    out['eval_seconds'] = seconds
    out['eval_samples_per_sec'] = want / seconds
    return out
