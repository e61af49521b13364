"""The metrics registry (gan_jax/metrics/registry.py): a new metric is one entry, and the
registry and the Evaluator agree on every metric's result keys.

A fixed random projection of the pixels, labelled 'LeNet', stands in for the feature network
(as in tests/test_evaluate.py), so its results are tagged `_lenet`; 'modes' uses the shipped
MNIST LeNet.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.errors import ConfigError
from gan_jax.metrics import evaluate, registry
from gan_jax.metrics.features import FeatureNet

_NOT_METRICS = {'eval_seconds', 'eval_samples_per_sec'}


def _projection_net(dim: int = 16) -> FeatureNet:
  w = jax.random.normal(jax.random.PRNGKey(0), (784, dim)) / 28.0
  v = jax.random.normal(jax.random.PRNGKey(1), (784, 10)) / 28.0

  @jax.jit
  def apply(images):
    x = images.reshape(images.shape[0], -1)
    return jnp.tanh(x @ w), x @ v

  return FeatureNet('proj', 'LeNet', 'ef' * 32, dim, 10, (28, 28, 1), apply)


@pytest.fixture
def proj(monkeypatch):
  net = _projection_net()
  real = evaluate.load_feature_net
  # The mode classifier is loaded with no options (the real one); the feature net is the proj.
  monkeypatch.setattr(evaluate, 'load_feature_net', lambda name, **kw: net if kw else real(name))
  return net


def _evaluator(tfds_dir, cache_dir, metrics, channels=1, **kw):
  ev = evaluate.Evaluator.create(
    dataset='mnist',
    split='test[:300]',
    data_dir=tfds_dir,
    image_size=28,
    channels=channels,
    metrics=metrics,
    num_samples=kw.pop('num_samples', 120),
    modes_num_samples=kw.pop('modes_num_samples', 90),
    batch_size=50,
    kid_pr_samples=100,
    cache_dir=str(cache_dir),
    **kw,
  )
  ev.kid_num_subsets = 5
  return ev


def _images(n, channels, seed=0):
  rng = np.random.default_rng(seed)
  return np.tanh(rng.standard_normal((n, 28, 28, channels))).astype(np.float32)


class _ToyStream:
  """Mean of the first feature and the number of images seen."""

  def __init__(self, ev):
    self.total, self.count = 0.0, 0

  def update(self, batch):
    self.total += float(np.sum(batch.features[:, 0], dtype=np.float64))
    self.count += batch.features.shape[0]

  def result(self):
    return {'toy': self.total / self.count, 'toy_count': self.count}


def _only_gray(request):
  if request.image_shape[-1] != 1:
    raise ConfigError('metric "toy" needs one channel.')


TOY = registry.Metric(
  'toy',
  'the mean of the first feature (a test metric)',
  (registry.Result('toy', 'Toy', 'higher'), registry.Result('toy_count', 'Toy count', None)),
  _ToyStream,
  check=_only_gray,
)


@pytest.fixture
def toy():
  registry.register(TOY)
  yield TOY
  registry.unregister('toy')


def test_a_new_metric_is_one_registry_entry(proj, toy, tfds_dir, tmp_path):
  from gan_jax import config as config_lib

  ev = _evaluator(tfds_dir, tmp_path, 'toy,fid')
  assert ev.metrics == ('toy', 'fid')
  images = _images(150, 1)
  results = ev.evaluate_batches(np.array_split(images, 4))
  # Registry order (fid before toy), the tag after the stem's first word.
  assert list(results)[:3] == ['fid_lenet', 'toy_lenet', 'toy_lenet_count']
  expected = np.asarray(proj.apply(jnp.asarray(images[:120]))[0], np.float64)[:, 0].mean()
  assert results['toy_lenet'] == pytest.approx(expected, rel=1e-6)
  assert results['toy_lenet_count'] == 120  # num_samples, not all 150
  table = evaluate.format_table(results)
  assert re.search(r'^Toy \(LeNet\) +-?0\.\d+$', table, re.M), table
  assert re.search(r'^Toy count \(LeNet\) +120$', table, re.M), table
  assert registry.family('toy_lenet_count') == 'toy' and registry.better('toy_lenet') == 'higher'
  # Its constraint, and config validation, ask the entry.
  with pytest.raises(ConfigError, match='"toy" needs one channel'):
    _evaluator(tfds_dir, tmp_path, 'toy', channels=3)
  config = config_lib.base_config()
  config.eval.metrics = 'fid,toy'
  config_lib.validate(config)
  registry.unregister('toy')
  try:
    with pytest.raises(ConfigError, match='unknown.*toy.*choose from fid,kid,is,pr,modes'):
      config_lib.validate(config)
    assert registry.display_name('toy_lenet') == 'toy_lenet'
  finally:
    registry.register(TOY)  # the fixture unregisters it


def test_registry_and_evaluation_agree_on_every_metrics_result_keys(proj, tfds_dir, tmp_path):
  features = [m.name for m in registry.metrics() if m.feature_net]
  others = [m.name for m in registry.metrics() if not m.feature_net]
  assert features and others
  got = {}
  ev = _evaluator(tfds_dir, tmp_path, features)
  got.update(ev.evaluate_batches([_images(120, 1)]))
  for name in others:  # 'modes' judges 28x28x3 images
    ev = _evaluator(tfds_dir, tmp_path, name, channels=3)
    got.update(ev.evaluate_batches([_images(90, 3)]))
  keys = [k for k in got if k not in _NOT_METRICS]
  declared = registry.result_families('lenet')
  assert sorted(keys) == sorted(declared)  # the same keys
  feature_keys = [k for k in declared if declared[k] in features]
  assert keys[: len(feature_keys)] == feature_keys  # in the registry's order
  for key, name in declared.items():
    assert registry.family(key) == name
    assert registry.display_name(key) != key
    assert np.isfinite(got[key])


def test_the_builtin_entries_match_the_tables_they_replace():
  # The sweep's FAMILY table and evaluate._DISPLAY before the registry, expanded by hand for 'inception'.
  assert registry.result_families('inception') == {
    'fid_inception': 'fid',
    'kid_inception': 'kid',
    'kid_inception_std': 'kid',
    'is_inception': 'is',
    'is_inception_std': 'is',
    'precision_inception': 'pr',
    'recall_inception': 'pr',
    'density_inception': 'pr',
    'coverage_inception': 'pr',
    'modes_covered': 'modes',
    'modes_kl': 'modes',
    'classes_inception_kl': 'classes',
    'classes_inception_min': 'classes',
    'classes_inception_max': 'classes',
  }
  assert [registry.display_name(k) for k in registry.result_families('lenet')] == [
    'FID (LeNet)',
    'KID (LeNet)',
    'KID std (LeNet)',
    'IS (LeNet)',
    'IS std (LeNet)',
    'Precision (LeNet)',
    'Recall (LeNet)',
    'Density (LeNet)',
    'Coverage (LeNet)',
    'Modes covered (of 1000)',
    'KL(modes || uniform)',
    'Class KL to uniform (LeNet)',
    'Smallest class share (LeNet)',
    'Largest class share (LeNet)',
  ]
  lower = ['fid_lenet', 'kid_inception', 'modes_kl']
  higher = ['is_lenet', 'precision_inception', 'recall_lenet', 'coverage_lenet', 'modes_covered']
  assert [registry.better(k) for k in lower] == ['lower'] * 3
  assert [registry.better(k) for k in higher] == ['higher'] * 5
  assert registry.better('kid_lenet_std') is None and registry.family('fid_test') is None


def test_register_refuses_clashes_and_malformed_entries():
  def metric(name, *stems, **kw):
    results = tuple(registry.Result(s, s.upper(), 'lower') for s in stems)
    return registry.Metric(name, 'a test metric', results, _ToyStream, **kw)

  with pytest.raises(ValueError, match="'fid' is already registered"):
    registry.register(metric('fid', 'fid2'))
  with pytest.raises(ValueError, match="'kid_std' of 'kid2' is also one of 'kid'"):
    registry.register(metric('kid2', 'kid_std'))
  with pytest.raises(ValueError, match='lower-case letters'):
    registry.register(metric('Bad-Name', 'x'))
  with pytest.raises(ValueError, match='samples must be num_samples'):
    registry.register(metric('feat', 'feat', samples='modes_num_samples'))
  # An untagged result key that equals a tagged one of another metric.
  registry.register(metric('toyx', 'toyx_val'))
  try:
    with pytest.raises(ValueError, match="has result keys of 'toyx'"):
      registry.register(metric('toyy', 'toyx_tag_val', feature_net=False))
  finally:
    registry.unregister('toyx')
  assert registry.names() == ('fid', 'kid', 'is', 'pr', 'modes', 'classes')
