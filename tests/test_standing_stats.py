"""Standing BatchNorm statistics of the EMA generator (Brock et al. 2019): checked against
batch statistics computed by hand with numpy, and wired into sampling and evaluation."""

import dataclasses
import sys
from pathlib import Path

import jax

import numpy as np
import pytest

from gan_jax.core import sampling
from gan_jax.config import validate
from gan_jax.errors import ConfigError
from gan_jax.core.state import create_state

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'experiments'))
import mnist_cdcgan  # noqa: E402
import mnist_dcgan  # noqa: E402
import mnist_mlp  # noqa: E402


def _perturbed(params, scale=0.05, seed=1):
  """Parameters unlike the initial ones (as an EMA generator's would be)."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(
    tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  )


@pytest.fixture(scope='module')
def dcgan():
  config = mnist_dcgan.get_config('tiny')
  gan, state = create_state(config)
  return gan, state.replace(ema_params=_perturbed(state.g_params))


def test_first_batchnorm_equals_numpy_batch_statistics(dcgan):
  """bn0 normalises fc(z) = z @ kernel (no bias): its standing mean and variance are the
  average over the passes of the batch mean and biased variance, computed here in numpy
  from the same latents."""
  gan, state = dcgan
  n, b, seed = 3, 32, 7
  stats = sampling.standing_batch_stats(
    gan, state.ema_params, state.g_batch_stats, num_batches=n, batch_size=b, seed=seed
  )
  key = jax.random.fold_in(jax.random.PRNGKey(seed), sampling.STANDING_SALT)
  kernel = np.asarray(state.ema_params['fc']['kernel'], np.float64)
  means, variances = [], []
  for i in range(n):
    z = np.asarray(jax.random.normal(jax.random.fold_in(key, i), (b, gan.latent_dim)), np.float64)
    h = z @ kernel
    means.append(h.mean(0))
    variances.append(h.var(0))
  np.testing.assert_allclose(stats['bn0']['mean'], np.mean(means, 0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats['bn0']['var'], np.mean(variances, 0), rtol=1e-4, atol=1e-6)
  # Every layer's statistics are the mean of the per-pass batch statistics, which do not
  # depend on the incoming running averages (momentum 0).
  garbage = jax.tree.map(lambda x: x + 100.0, state.g_batch_stats)
  per_pass = []
  for i in range(n):
    z = jax.random.normal(jax.random.fold_in(key, i), (b, gan.latent_dim))
    one = gan.batch_statistics(state.ema_params, state.g_batch_stats, z)
    chk = gan.batch_statistics(state.ema_params, garbage, z)
    jax.tree.map(np.testing.assert_array_equal, one, chk)
    per_pass.append(one)
  mean = jax.tree.map(lambda *xs: np.mean(xs, 0), *per_pass)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), stats, mean)
  # They belong to the EMA weights, not to the raw generator's running averages.
  assert not np.allclose(stats['bn1']['var'], state.g_batch_stats['bn1']['var'])


def test_sampling_uses_given_statistics(dcgan):
  gan, state = dcgan
  z = jax.random.normal(jax.random.PRNGKey(0), (8, gan.latent_dim))
  stats = sampling.standing_batch_stats(gan, state.ema_params, state.g_batch_stats)
  default = sampling.sample(gan, state, z)
  same = sampling.sample(gan, state, z, batch_stats=state.g_batch_stats)
  standing = sampling.sample(gan, state, z, batch_stats=stats)
  np.testing.assert_array_equal(default, same)
  assert np.abs(np.asarray(standing) - np.asarray(default)).max() > 1e-3
  assert np.abs(np.asarray(standing)).max() <= 1.0


def test_conditional_generator_and_generator_without_batchnorm():
  gan, state = create_state(mnist_cdcgan.get_config('tiny'))
  stats = sampling.standing_batch_stats(
    gan, state.ema_params, state.g_batch_stats, num_batches=2, batch_size=20
  )
  assert jax.tree.structure(stats) == jax.tree.structure(state.g_batch_stats)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(stats))
  gan, state = create_state(mnist_mlp.get_config('tiny'))
  assert jax.tree.leaves(state.g_batch_stats) == []
  assert sampling.standing_batch_stats(gan, state.ema_params, state.g_batch_stats) == (
    state.g_batch_stats
  )


def test_bad_arguments_and_config_value(dcgan):
  gan, state = dcgan
  for kwargs in ({'num_batches': 0}, {'batch_size': 1}):
    with pytest.raises(ValueError, match='standing statistics need'):
      sampling.standing_batch_stats(gan, state.ema_params, state.g_batch_stats, **kwargs)
  config = mnist_dcgan.get_config('tiny')
  config.eval.ema_batch_stats = 'running'
  with pytest.raises(ConfigError, match="eval.ema_batch_stats='running' is invalid"):
    validate(config)


def test_evaluator_evaluates_ema_generator_with_standing_statistics(dcgan):
  """evaluate_state with ema_batch_stats='standing' scores the images the EMA weights make
  with their standing statistics: the same as feeding those images in directly."""
  from gan_jax.metrics.evaluate import Evaluator

  gan, state = dcgan
  config = mnist_dcgan.get_config('tiny')
  config.data.data_dir = str(Path(__file__).resolve().parents[2] / 'shared' / 'tfds')
  config.eval.ema_batch_stats = 'standing'
  config.eval.metrics = 'fid'
  ev = Evaluator.from_config(config, num_samples=256)
  assert ev.ema_batch_stats == 'standing'
  stats = sampling.standing_batch_stats(gan, state.ema_params, state.g_batch_stats, seed=ev.seed)
  want = ev.evaluate_batches(ev.generator_batches(gan, state.ema_params, stats))
  got = ev.evaluate_state(gan, state)
  assert got['fid_lenet'] == pytest.approx(want['fid_lenet'], rel=1e-6)
  raw = dataclasses.replace(ev, ema_batch_stats='raw').evaluate_state(gan, state)
  assert raw['fid_lenet'] != pytest.approx(got['fid_lenet'], rel=1e-3)
