"""Every sampler of the EMA generator honours the run's `eval.ema_batch_stats` (issue 18 item 1).

The references are computed here, separately, from the checkpoint a tiny run wrote:
`standing_batch_stats` on its EMA weights (seeded with the run's seed) fed to `sample`, or
the raw generator's running averages. The training grids, `gan-jax sample`, `gan-jax edit`
and `gan-jax export` must reproduce them exactly.
"""

import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import load_experiment

from gan_jax.cli import main as cli
from gan_jax.config import ema_batch_stats
from gan_jax.core import sampling
from gan_jax.core.state import create_state
from gan_jax.errors import ConfigError
from gan_jax.training import train
from gan_jax.training.checkpoint import load_run
from gan_jax.training.run_actions import fixed_latents

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'experiments'))
import mnist_mlp  # noqa: E402


def _png(path) -> np.ndarray:
  return np.asarray(Image.open(path))


def _grid(tmp_path, images, name, scale) -> np.ndarray:
  """The PNG pixels `save_grid` writes for `images` (the reference's picture)."""
  return _png(sampling.save_grid(str(tmp_path / name), images, scale=scale))


def _standing(gan, state, seed):
  """The EMA weights' standing statistics, computed directly (the reference)."""
  return sampling.standing_batch_stats(gan, state.ema_params, state.g_batch_stats, seed=seed)


@pytest.fixture(scope='module')
def runs(tfds_dir, tmp_path_factory):
  """Tiny MNIST DCGANs: 'standing' (eval.ema_batch_stats='standing', EMA on) and
  'no_ema' (train.ema_decay=0, the default policy 'raw')."""
  root = tmp_path_factory.mktemp('ema_stats_runs')
  overrides = {
    'standing': {'ema_batch_stats': 'standing', 'ema_decay': None},
    'no_ema': {'ema_batch_stats': None, 'ema_decay': 0.0},
  }
  workdirs = {}
  for name, o in overrides.items():
    config = load_experiment('mnist_dcgan', 'tiny')
    config.data.data_dir = tfds_dir
    config.seed = 3  # not 0: the statistics' seed must be the run's
    if o['ema_batch_stats']:
      config.eval.ema_batch_stats = o['ema_batch_stats']
    if o['ema_decay'] is not None:
      config.train.ema_decay = o['ema_decay']
    workdirs[name] = root / name
    train.train_and_evaluate(config, str(workdirs[name]))
  return workdirs


def test_policy_function_choices():
  """raw -> the raw G's running averages; standing -> standing_batch_stats of the EMA
  weights; the raw generator always its own; unknown policies refused."""
  config = load_experiment('mnist_dcgan', 'tiny')
  gan, state = create_state(config)
  ema = jax.tree.map(lambda x: x * 1.1 + 0.01, state.g_params)  # an EMA unlike g_params
  state = state.replace(ema_params=ema)
  raw = sampling.sampling_batch_stats(gan, state, use_ema=True, ema_stats='raw', seed=5)
  assert raw is state.g_batch_stats
  for policy in ('raw', 'standing'):
    own = sampling.sampling_batch_stats(gan, state, use_ema=False, ema_stats=policy, seed=5)
    assert own is state.g_batch_stats
  standing = sampling.sampling_batch_stats(gan, state, use_ema=True, ema_stats='standing', seed=5)
  jax.tree.map(np.testing.assert_array_equal, standing, _standing(gan, state, 5))
  assert not np.allclose(standing['bn1']['var'], state.g_batch_stats['bn1']['var'])
  other_seed = sampling.sampling_batch_stats(gan, state, use_ema=True, ema_stats='standing')
  assert not np.array_equal(other_seed['bn1']['mean'], standing['bn1']['mean'])
  with pytest.raises(ValueError, match=r"ema_stats='running' .* \['raw', 'standing'\]"):
    sampling.sampling_batch_stats(gan, state, ema_stats='running')
  # The config's reading: default 'raw', also for configs written before the field.
  assert ema_batch_stats(config) == 'raw'
  assert ema_batch_stats(ml_collections.ConfigDict({'eval': {'split': 'train'}})) == 'raw'
  assert ema_batch_stats(ml_collections.ConfigDict({'seed': 0})) == 'raw'
  config.eval.ema_batch_stats = 'standing'
  assert ema_batch_stats(config) == 'standing'
  config.eval.ema_batch_stats = 'bogus'
  with pytest.raises(ConfigError, match="eval.ema_batch_stats='bogus' is invalid"):
    ema_batch_stats(config)


def test_generator_without_batchnorm_is_unchanged_by_the_policy():
  gan, state = create_state(mnist_mlp.get_config('tiny'))
  state = state.replace(ema_params=jax.tree.map(lambda x: x * 0.9, state.g_params))
  assert jax.tree.leaves(state.g_batch_stats) == []
  z = jax.random.normal(jax.random.PRNGKey(1), (6, gan.latent_dim))
  raw = sampling.sample(gan, state, z)
  stats = sampling.sampling_batch_stats(gan, state, ema_stats='standing', seed=3)
  np.testing.assert_array_equal(sampling.sample(gan, state, z, batch_stats=stats), raw)


def test_training_grid_uses_standing_statistics(runs, tmp_path):
  """The last sample grid of the 'standing' run is the EMA G with its standing
  statistics (run seed), not with the raw G's running averages."""
  config, gan, state = load_run(str(runs['standing']))
  step = int(state.step)
  assert step == config.train.steps and config.eval.ema_batch_stats == 'standing'
  z = fixed_latents(gan, config)
  want = sampling.sample(gan, state, z, batch_stats=_standing(gan, state, 3))
  got = _png(runs['standing'] / 'samples' / f'step_{step:07d}.png')
  np.testing.assert_array_equal(got, _grid(tmp_path, want, 'want.png', 2))
  raw = _grid(tmp_path, sampling.sample(gan, state, z), 'raw.png', 2)
  assert not np.array_equal(got, raw)


def test_sample_command_follows_the_run_and_the_flag(runs, tmp_path, capsys):
  run = str(runs['standing'])
  config, gan, state = load_run(run)
  z = gan.sample_latents(jax.random.PRNGKey(7), 9)
  base = ['sample', '--workdir', run, '--num', '9', '--seed', '7', '--scale', '1', '--out']
  cases = {
    'default': ([], sampling.sample(gan, state, z, batch_stats=_standing(gan, state, 3))),
    'raw': (['--ema-stats', 'raw'], sampling.sample(gan, state, z)),
    'no_ema': (
      ['--no-ema', '--ema-stats', 'standing'],
      sampling.sample(gan, state, z, use_ema=False),
    ),
  }
  got = {}
  for name, (flags, want) in cases.items():
    out = tmp_path / f'{name}.png'
    assert cli.main(base + [str(out)] + flags) == 0, capsys.readouterr().err
    got[name] = _png(out)
    np.testing.assert_array_equal(got[name], _grid(tmp_path, want, f'want_{name}.png', 1))
  assert not np.array_equal(got['default'], got['raw'])
  explicit = tmp_path / 'explicit.png'
  assert cli.main(base + [str(explicit), '--ema-stats', 'standing']) == 0
  np.testing.assert_array_equal(_png(explicit), got['default'])


def test_ema_decay_zero_samples_the_raw_generator(runs, tmp_path, capsys):
  """With train.ema_decay=0 (policy 'raw') the grid is the raw G with its own statistics;
  `gan-jax sample` gives the same whatever --ema-stats says."""
  run = runs['no_ema']
  config, gan, state = load_run(str(run))
  assert config.train.ema_decay == 0 and ema_batch_stats(config) == 'raw'
  z = fixed_latents(gan, config)
  raw = sampling.sample(gan, state, z, use_ema=False, batch_stats=state.g_batch_stats)
  got = _png(run / 'samples' / f'step_{int(state.step):07d}.png')
  np.testing.assert_array_equal(got, _grid(tmp_path, raw, 'want.png', 2))
  z9 = gan.sample_latents(jax.random.PRNGKey(0), 9)
  want = _grid(tmp_path, sampling.sample(gan, state, z9, use_ema=False), 'want9.png', 1)
  for flags in ([], ['--ema-stats', 'standing']):
    out = tmp_path / 'sample.png'
    argv = ['sample', '--workdir', str(run), '--num', '9', '--scale', '1', '--out', str(out)]
    assert cli.main(argv + flags) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(_png(out), want)


def test_edit_command_uses_the_runs_statistics(runs, tmp_path, capsys):
  """`gan-jax edit` on the 'standing' run: the strip equals the one built here with the
  latent tools given the standing statistics; the cached direction records the policy."""
  from gan_jax import latent

  run = runs['standing']
  config, gan, state = load_run(str(run))
  stats = _standing(gan, state, 3)
  digit = np.asarray(sampling.sample(gan, state, gan.sample_latents(jax.random.PRNGKey(9), 1)))
  Image.fromarray(sampling.to_uint8(digit)[0, ..., 0]).save(tmp_path / 'digit.png')
  image = np.asarray(Image.open(tmp_path / 'digit.png'), np.float32)[None, ..., None] / 127.5 - 1
  out = tmp_path / 'strip.png'
  argv = ['edit', '--workdir', str(run), '--image', str(tmp_path / 'digit.png'), '--attribute',
          'ink', '--strengths', '-2,2', '--num-latents', '64', '--inversion-steps', '3',
          '--restarts', '1', '--scale', '1', '--feature-weight', '0', '--out', str(out)]  # fmt: skip
  assert cli.main(argv) == 0, capsys.readouterr().err
  direction, meta = latent.load_direction(str(run / 'directions' / 'ink.npz'))
  assert meta['ema_stats'] == 'standing'
  want_dir = latent.fit_attribute_direction(
    gan, state, latent.ink_mass, jax.random.fold_in(jax.random.PRNGKey(0), 1), num_latents=64,
    batch_stats=stats,
  )  # fmt: skip
  np.testing.assert_allclose(direction, want_dir, rtol=1e-5, atol=1e-6)
  inv = latent.invert(
    gan, state, image, key=jax.random.fold_in(jax.random.PRNGKey(0), 2), steps=3, restarts=1,
    feature_weight=0.0, batch_stats=stats,
  )  # fmt: skip
  z = np.asarray(latent.edit(inv.z[:, None], direction, np.float32([-2, 2]))).reshape(2, -1)
  edited = latent.generate(gan, state, z, batch_stats=stats)
  strip = np.concatenate([image, inv.images, np.asarray(edited)])
  want = _png(sampling.save_grid(str(tmp_path / 'want.png'), strip, ncol=4))
  np.testing.assert_array_equal(_png(out), want)
  # The raw statistics give another reconstruction.
  raw_inv = latent.invert(
    gan, state, image, key=jax.random.fold_in(jax.random.PRNGKey(0), 2), steps=3, restarts=1,
    feature_weight=0.0,
  )  # fmt: skip
  assert not np.array_equal(raw_inv.images, inv.images)


def test_export_carries_the_statistics_it_samples_with(runs, tmp_path):
  from gan_jax import export

  run = str(runs['standing'])
  config, gan, state = load_run(run)
  z = np.asarray(gan.sample_latents(jax.random.PRNGKey(4), 5))
  meta = export.export_run(run, str(tmp_path / 'ema'), platforms=('cpu',))
  assert meta['generator'] == 'ema' and meta['ema_batch_stats'] == 'standing'
  raw_meta = export.export_run(run, str(tmp_path / 'ema_raw'), platforms=('cpu',), ema_stats='raw')
  assert raw_meta['ema_batch_stats'] == 'raw'
  wants = {
    'ema': sampling.sample(gan, state, z, batch_stats=_standing(gan, state, 3)),
    'ema_raw': sampling.sample(gan, state, z),
  }
  for name, want in wants.items():
    exported = jax.export.deserialize((tmp_path / name / export.EXPORT_FILE).read_bytes())
    np.testing.assert_allclose(exported.call(z), want, rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(wants['ema']) - np.asarray(wants['ema_raw'])).max() > 1e-3


def test_eval_command_defaults_to_the_runs_policy(runs, tfds_dir, tmp_path, capsys):
  """`gan-jax eval` without --ema-stats scores the EMA G with standing statistics (seeded
  with the run's seed, 3, as its training evaluations are) on the 'standing' run: the FID
  computed here from those statistics; `--ema-stats raw` still wins."""
  import json

  from gan_jax.metrics.evaluate import Evaluator

  run = str(runs['standing'])
  config, gan, state = load_run(run)
  args = ['eval', '--workdir', run, '--num-samples', '256', '--metrics', 'fid',
          '--split', 'train[:1000]', '--batch-size', '128', '--kid-pr-samples', '256']  # fmt: skip
  reports = {}
  for name, flags in (('default', []), ('raw', ['--ema-stats', 'raw'])):
    out = str(tmp_path / f'{name}.json')
    assert cli.main(args + flags + ['--out', out]) == 0, capsys.readouterr().err
    with open(out) as f:
      reports[name] = json.load(f)
  assert reports['default']['ema_batch_stats'] == 'standing'
  assert reports['raw']['ema_batch_stats'] == 'raw'
  ev = Evaluator.create(
    dataset='mnist', split='train[:1000]', data_dir=tfds_dir, image_size=28, channels=1,
    metrics='fid', num_samples=256, batch_size=128, kid_pr_samples=256, seed=config.seed,
  )  # fmt: skip
  assert config.seed == 3
  want = {
    'default': ev.generator_batches(gan, state.ema_params, _standing(gan, state, 3)),
    'raw': ev.generator_batches(gan, state.ema_params, state.g_batch_stats),
  }
  for name, batches in want.items():
    fid = ev.evaluate_batches(batches)['fid_lenet']
    assert reports[name]['results']['fid_lenet'] == pytest.approx(fid, rel=1e-5)
  assert reports['default']['results']['fid_lenet'] != pytest.approx(
    reports['raw']['results']['fid_lenet'], rel=1e-3
  )
