"""Evaluate a generator (or a stream of images) with the configured metrics.

`Evaluator` loads the feature network and the cached real reference once, then evaluates
any number of generator states: it samples `num_samples` images from fixed latents (latent
i is a function of (seed, i) only, so the samples do not depend on the batch size), passes
them through the feature network batch by batch, and feeds each configured metric of
`gan_jax.metrics.registry` (fid, kid, is, pr, modes, classes, and any registered later) the images,
features and logits it asks for.

Only FID and IS are fully streaming; KID and precision/recall keep the float32 features of
the first `kid_pr_samples` generated images (10,000 x 2,048 Inception features are 82 MB).
'modes' judges the first `modes_num_samples` (26,000) images with the MNIST classifier.

Results are a flat dict whose keys carry the feature network: `fid_lenet`, `kid_lenet_std`,
`is_inception`, `precision_lenet`, ..., `modes_covered`, `modes_kl`; `display_name` turns
them into "FID (LeNet)", "KID (Inception)", ... FID on a LeNet is never reported as
Inception FID.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.core import sampling
from gan_jax.errors import ConfigError
from gan_jax.metrics import registry
from gan_jax.metrics.features import FeatureNet
from gan_jax.metrics.reference import Reference, load_reference

FEATURE_NETS = ('auto', 'lenet_mnist', 'lenet_fashion_mnist', 'inception_v3')
_LENET_DATASETS = {'mnist': 'lenet_mnist', 'fashion_mnist': 'lenet_fashion_mnist'}


def parse_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
  """'fid,kid' or ('fid', 'kid') -> ('fid', 'kid'); raises ConfigError for unknown names
  (`gan_jax.metrics.registry.parse`)."""
  return registry.parse(metrics)


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
  """'fid_lenet' -> 'FID (LeNet)', 'kid_inception_std' -> 'KID std (Inception)', ...
  (`gan_jax.metrics.registry.display_name`)."""
  return registry.display_name(key)


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
    metrics: names from `gan_jax.metrics.registry.names()`.
    net: the feature network (None when no metric judges features, e.g. only 'modes').
    reference: real features of the reference split (None likewise).
    mode_classifier: the MNIST LeNet used per channel for 'modes' (else None).
    num_samples: generated images for fid/kid/is/pr.
    modes_num_samples: generated images for 'modes' (26,000 in Lin et al. 2018).
    batch_size: images per generator / feature-network call.
    kid_pr_samples: generated features kept for KID and precision/recall.
    seed: seeds the latents and KID's subsets.
    kid_num_subsets: KID subsets (100 as in Binkowski et al.; fewer only for quick tests).
    ema_batch_stats: BatchNorm statistics `evaluate_state` gives the EMA generator: 'raw'
      (`GANState.g_batch_stats`, the raw generator's running averages) or 'standing'
      (recomputed from the EMA weights, `gan_jax.core.sampling.standing_batch_stats`),
      chosen by `gan_jax.core.sampling.sampling_batch_stats` seeded with `seed`.
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
      metrics: names or a comma-separated string, from `registry.names()`.
      feature_net: one of `FEATURE_NETS`.
      The rest: see the class attributes, `load_feature_net` and `load_reference`.

    Raises:
      ConfigError: unknown metric or feature network; a metric's constraint not met (too
        few samples for the feature dimension: FID needs num_samples > D; 'modes' on images
        that are not 28x28x3); a LeNet asked to judge images of another shape.
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
    entries = registry.metrics(metrics)
    request = registry.Request(
      (image_size, image_size, channels), num_samples, modes_num_samples, kid_pr_samples
    )
    for m in entries:
      if m.check is not None:
        m.check(request)
    net = reference = mode_classifier = None
    if any(m.mnist_classifier for m in entries):
      mode_classifier = load_feature_net('lenet_mnist')
    if any(m.feature_net for m in entries):
      name = resolve_feature_net_name(feature_net, dataset)
      net = load_feature_net(
        name,
        inception_weights=inception_weights,
        download_inception=download_inception,
        cache_dir=cache_dir,
      )
      if net.image_shape is not None and tuple(net.image_shape) != request.image_shape:
        raise ConfigError(
          f'feature network {net.name} judges {"x".join(map(str, net.image_shape))} images but '
          f'the generator makes {image_size}x{image_size}x{channels}; use metrics=modes for '
          'Stacked MNIST, or eval.feature_net=inception_v3.'
        )
      for m in entries:
        if m.check_net is not None:
          m.check_net(request, net)
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
    return max(getattr(self, m.samples) for m in registry.metrics(self.metrics))

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
    stats = sampling.sampling_batch_stats(
      gan, state, use_ema=use_ema, ema_stats=self.ema_batch_stats, seed=self.seed
    )
    return self.evaluate_batches(self.generator_batches(gan, params, stats))

  def evaluate_batches(self, batches: Iterable[Any]) -> dict[str, Any]:
    """Evaluates a stream of image batches, float [B, H, W, C] in [-1, 1].

    Each metric gets the first `num_samples` images (through the feature network) or the
    first `modes_num_samples` ('modes'), as its registry entry says; the stream must hold at
    least as many as the requested metrics need.

    Returns:
      The flat results dict (see the module docstring), metrics in registry order, plus
      'eval_seconds' and 'eval_samples_per_sec' (images through the generator and feature
      network per second).

    Raises:
      ValueError: too few images, non-finite images, or images of the wrong shape.
    """
    t0 = time.perf_counter()
    want = self.total_samples
    feature_n = self.num_samples if self.net is not None else 0
    streams = [(m, m.start(self), getattr(self, m.samples)) for m in registry.metrics(self.metrics)]
    seen = 0
    for batch in batches:
      if seen >= want:
        break
      batch = batch[: want - seen]
      if not bool(jnp.isfinite(jnp.asarray(batch)).all()):
        raise ValueError(
          f'images {seen}..{seen + batch.shape[0] - 1} contain NaN or infinite values; the '
          'generator diverged (or the images were not scaled to [-1, 1]).'
        )
      judged = None
      if seen < feature_n:
        part = batch[: feature_n - seen]
        self.net.check_images(part)
        f, logits = self.net.apply(jnp.asarray(part))
        judged = registry.Batch(part, np.asarray(f), logits)
      for metric, stream, n in streams:
        if seen < n:
          stream.update(judged if metric.feature_net else registry.Batch(batch[: n - seen]))
      seen += batch.shape[0]
    if seen < want:
      raise ValueError(f'the image stream held {seen} images; these metrics need {want}.')

    out: dict[str, Any] = {}
    tag = self.net.label.lower() if self.net is not None else None
    for metric, stream, _ in streams:
      values = stream.result()
      stems = [r.stem for r in metric.results]
      if set(values) != set(stems):
        raise RuntimeError(
          f'metric {metric.name!r} returned {sorted(values)}, but its registry entry declares '
          f'{stems}; make the two agree.'
        )
      out.update({metric.key(stem, tag): values[stem] for stem in stems})
    seconds = time.perf_counter() - t0
    out['eval_seconds'] = seconds
    out['eval_samples_per_sec'] = want / seconds
    return out
