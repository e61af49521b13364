"""The evaluation plumbing: reference caching, the Evaluator on real MNIST images and on a
generator, evaluation inside training with the best-FID checkpoint, and their errors.

A fixed random projection of the pixels stands in for the feature network here, so these tests
check the plumbing independently of the shipped LeNet weights (tests/test_lenet.py and
tests/test_eval_cli.py use the real classifiers).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.errors import ConfigError
from gan_jax.metrics import evaluate, reference
from gan_jax.metrics.features import FeatureNet


def _projection_net(dim: int = 16, name: str = 'proj') -> FeatureNet:
  w = jax.random.normal(jax.random.PRNGKey(0), (784, dim)) / 28.0
  v = jax.random.normal(jax.random.PRNGKey(1), (784, 10)) / 28.0

  @jax.jit
  def apply(images):
    x = images.reshape(images.shape[0], -1)
    return jnp.tanh(x @ w), x @ v

  return FeatureNet(name, 'Test', 'ab' * 32, dim, 10, (28, 28, 1), apply)


@pytest.fixture
def proj(monkeypatch):
  net = _projection_net()
  monkeypatch.setattr(evaluate, 'load_feature_net', lambda name, **kw: net)
  return net


def _mnist(tfds_dir, split):
  from gan_jax.data import pipeline as data

  ds = data.build_eval_dataset(
    'mnist', split, data_dir=tfds_dir, image_size=28, channels=1, batch_size=10000
  )
  return next(ds.as_numpy_iterator())['image']


def _evaluator(tfds_dir, **kw):
  args = dict(
    dataset='mnist',
    split='train[:3000]',
    data_dir=tfds_dir,
    image_size=28,
    channels=1,
    metrics='fid,kid,is,pr',
    num_samples=1000,
    batch_size=250,
    kid_pr_samples=1000,
  )
  ev = evaluate.Evaluator.create(**{**args, **kw})
  ev.kid_num_subsets = 10  # 100 in real use; 10 keeps the test quick
  return ev


def test_reference_is_computed_once_and_keyed_by_the_weights(proj, tfds_dir, tmp_path, monkeypatch):
  ref = reference.load_reference(
    'mnist', 'test[:600]', proj, data_dir=tfds_dir, image_size=28, channels=1,
    batch_size=256, cache_dir=str(tmp_path),
  )  # fmt: skip
  assert ref.features.shape == (600, 16) and ref.features.dtype == np.float32
  assert ref.stats.count == 600
  assert os.path.basename(ref.path) == f'mnist-test_600-28x28x1-proj-{"ab" * 8}.npz'
  # Equal to a direct computation on the same images.
  direct = np.asarray(proj.apply(_mnist(tfds_dir, 'test[:600]'))[0], np.float64)
  np.testing.assert_allclose(ref.stats.mean, direct.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ref.stats.cov, np.cov(direct, rowvar=False), rtol=1e-4, atol=1e-6)

  # The second call reads the cache and never touches the data.
  from gan_jax.data import pipeline as data

  monkeypatch.setattr(data, 'build_eval_dataset', lambda *a, **k: pytest.fail('recomputed'))
  again = reference.load_reference(
    'mnist', 'test[:600]', proj, data_dir=tfds_dir, image_size=28, channels=1,
    cache_dir=str(tmp_path),
  )  # fmt: skip
  np.testing.assert_array_equal(again.features, ref.features)
  # Other weights: another key, so another file.
  other = FeatureNet('proj', 'Test', 'cd' * 32, 16, 10, (28, 28, 1), proj.apply)
  assert reference.reference_key('mnist', 'test[:600]', (28, 28, 1), other) != ref.key


def test_a_damaged_reference_file_is_recomputed(proj, tfds_dir, tmp_path):
  kw = dict(data_dir=tfds_dir, image_size=28, channels=1, cache_dir=str(tmp_path))
  ref = reference.load_reference('mnist', 'test[:300]', proj, **kw)
  with open(ref.path, 'wb') as f:
    f.write(b'garbage')
  again = reference.load_reference('mnist', 'test[:300]', proj, **kw)
  np.testing.assert_array_equal(again.features, ref.features)


def test_reference_cache_never_goes_inside_the_data_dir(proj, tfds_dir):
  with pytest.raises(ValueError, match='inside the TFDS data dir'):
    reference.load_reference(
      'mnist', 'test[:300]', proj, data_dir=tfds_dir, image_size=28, channels=1,
      cache_dir=os.path.join(tfds_dir, 'cache'),
    )  # fmt: skip
  assert not os.path.exists(os.path.join(tfds_dir, 'cache'))


def test_real_images_score_well_noise_scores_badly(proj, tfds_dir):
  ev = _evaluator(tfds_dir)
  test_images = _mnist(tfds_dir, 'test[:1000]')
  real = ev.evaluate_batches(np.split(test_images, 4))
  rng = np.random.default_rng(0)
  noise = rng.uniform(-1, 1, size=test_images.shape).astype(np.float32)
  fake = ev.evaluate_batches([noise])
  assert set(real) >= {
    'fid_test',
    'kid_test',
    'kid_test_std',
    'is_test',
    'precision_test',
    'recall_test',
    'density_test',
    'coverage_test',
    'eval_samples_per_sec',
  }
  assert real['fid_test'] < fake['fid_test'] / 20
  assert real['kid_test'] < fake['kid_test'] / 20
  assert real['precision_test'] > 0.6 and fake['precision_test'] < 0.1
  assert real['coverage_test'] > 0.6 and fake['coverage_test'] < 0.1
  assert real['recall_test'] > 0.6 and fake['recall_test'] < real['recall_test']
  # Batching does not change the numbers.
  rebatched = ev.evaluate_batches(np.split(test_images, 10))
  for k in ('fid_test', 'kid_test', 'is_test', 'precision_test', 'coverage_test'):
    assert rebatched[k] == pytest.approx(real[k], rel=1e-9), k


def test_generator_evaluation_does_not_depend_on_batch_size(proj, tfds_dir):
  from gan_jax.core.state import create_state

  from conftest import load_experiment

  config = load_experiment('mnist_dcgan', 'tiny')
  gan, state = create_state(config)
  a = _evaluator(tfds_dir, num_samples=300, batch_size=100, kid_pr_samples=300)
  b = _evaluator(tfds_dir, num_samples=300, batch_size=128, kid_pr_samples=300)
  ra, rb = a.evaluate_state(gan, state), b.evaluate_state(gan, state)
  assert ra['fid_test'] == pytest.approx(rb['fid_test'], rel=1e-4)
  assert ra['is_test'] == pytest.approx(rb['is_test'], rel=1e-4)
  assert np.isfinite(ra['fid_test']) and ra['fid_test'] > 0


def test_evaluator_errors(proj, tfds_dir):
  with pytest.raises(ConfigError, match='unknown.*choose from fid,kid,is,pr,modes'):
    _evaluator(tfds_dir, metrics='fid,fjd')
  with pytest.raises(ConfigError, match='too few for FID.*more than 16'):
    _evaluator(tfds_dir, num_samples=16)
  with pytest.raises(ConfigError, match='judges 28x28x1 images but the generator makes 32x32x3'):
    _evaluator(tfds_dir, image_size=32, channels=3)
  with pytest.raises(ConfigError, match='needs 28x28x3'):
    _evaluator(tfds_dir, metrics='modes')
  ev = _evaluator(tfds_dir)
  images = _mnist(tfds_dir, 'test[:1000]')
  with pytest.raises(ValueError, match='held 500 images; these metrics need 1000'):
    ev.evaluate_batches([images[:500]])
  bad = images.copy()
  bad[3, 0, 0, 0] = np.nan
  with pytest.raises(ValueError, match='NaN.*generator diverged'):
    ev.evaluate_batches([bad])
  with pytest.raises(ValueError, match=r'needs images of shape \[B, 28, 28, 1\]'):
    ev.evaluate_batches([np.zeros((1000, 28, 28, 3), np.float32)])


def test_display_names_never_call_lenet_fid_inception_fid():
  assert evaluate.display_name('fid_lenet') == 'FID (LeNet)'
  assert evaluate.display_name('kid_inception_std') == 'KID std (Inception)'
  assert evaluate.display_name('precision_lenet') == 'Precision (LeNet)'
  table = evaluate.format_table({'fid_lenet': 1.5, 'modes_covered': 998, 'note': 'x'})
  assert 'FID (LeNet)' in table and 'Modes covered (of 1000)  998' in table and 'note' not in table


def test_training_evaluates_logs_and_keeps_the_best_fid_checkpoint(proj, tiny_config, tmp_path):
  from gan_jax.training import train

  c = tiny_config
  c.eval_every = 2
  c.eval.metrics = 'fid,kid'
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(c, workdir)
  lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  evals = {l['step']: l for l in lines if 'eval/fid_test' in l}
  assert sorted(evals) == [2, 6] or sorted(evals) == [2, 4, 6]
  best_step = min(evals, key=lambda s: evals[s]['eval/fid_test'])
  best = json.load(open(os.path.join(workdir, 'best.json')))
  assert best['step'] == best_step and best['metric'] == 'fid_test'
  assert best['value'] == pytest.approx(evals[best_step]['eval/fid_test'])
  assert os.listdir(os.path.join(workdir, 'best')) == [str(best_step)]
  summary = json.load(open(os.path.join(workdir, 'summary.json')))
  assert 0 < summary['eval_time_s'] < summary['wall_time_s']
  # The best checkpoint loads and is the state of that step.
  from gan_jax.training.checkpoint import load_run

  _, _, state = load_run(workdir, best=True)
  assert int(state.step) == best_step

  # The crash windows: killed after the last checkpoint but before its evaluation was logged,
  # and after a best checkpoint but before best.json. Rerunning the command repairs both.
  best_path, metrics_path = (os.path.join(workdir, n) for n in ('best.json', 'metrics.jsonl'))
  os.remove(best_path)
  with open(metrics_path, 'w') as f:
    f.writelines(
      json.dumps(l) + '\n' for l in lines if not (l['step'] == 6 and 'eval/fid_test' in l)
    )
  train.train_and_evaluate(c, workdir)
  repaired = [json.loads(l) for l in open(metrics_path)]
  assert [l['step'] for l in repaired] == [l['step'] for l in lines]  # step 6's evaluation, once
  no_timing = lambda l: {k: v for k, v in l.items() if not k.startswith(('eval/eval_', 'perf/'))}
  assert no_timing(repaired[-1]) == no_timing(lines[-1])  # the same evaluation, bit for bit
  assert json.load(open(best_path)) == pytest.approx(best)


def test_config_validation_of_eval_fields(tiny_config):
  from gan_jax.config import validate

  tiny_config.eval_every = 5
  tiny_config.eval.metrics = 'fid,nope'
  with pytest.raises(ConfigError, match=r'eval\.metrics=fid,nope is invalid'):
    validate(tiny_config)
  tiny_config.eval.metrics = 'fid'
  tiny_config.eval.feature_net = 'vgg'
  with pytest.raises(ConfigError, match=r"eval\.feature_net='vgg' is invalid"):
    validate(tiny_config)
  tiny_config.eval_every = -1
  with pytest.raises(ConfigError, match='eval_every=-1'):
    validate(tiny_config)


def test_stacked_mnist_training_counts_modes(tfds_dir, tmp_path):
  """The Stacked-MNIST config evaluates mode coverage (with the real MNIST LeNet) in training."""
  from gan_jax.training import train

  from conftest import load_experiment

  c = load_experiment('stacked_mnist_dcgan', 'tiny')
  c.data.data_dir = tfds_dir
  c.train.steps = 2
  c.eval_every = 2
  c.eval.modes_num_samples = 1000
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(c, workdir)
  lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  evals = [l for l in lines if 'eval/modes_covered' in l]
  assert len(evals) == 1 and evals[0]['step'] == 2
  # An untrained G's 1,000 samples land in at most 1,000 modes, and far from uniformly.
  assert 1 <= evals[0]['eval/modes_covered'] <= 1000
  assert evals[0]['eval/modes_kl'] > 0.5
  assert not os.path.exists(os.path.join(workdir, 'best'))  # no FID, so no best-FID checkpoint
