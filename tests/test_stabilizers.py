"""Losses, penalties, clipping, label smoothing, instance noise and DiffAugment inside the
jitted train step, and the grid of the losses ablation running two steps each."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import config as config_lib
from gan_jax.core import regularizers
from gan_jax.errors import ConfigError
from gan_jax.core.losses import get_loss
from gan_jax.core.sharding import batch_sharding, make_mesh, replicate
from gan_jax.core.state import create_state
from gan_jax.core.train_step import Stabilizers, jit_train_step, make_train_step

from conftest import load_experiment


def _config(**train):
  c = config_lib.base_config()
  c.model.g_width = c.model.d_width = 8
  with c.unlocked():
    for k, v in train.items():
      if k == 'spectral_norm':
        c.model.spectral_norm = v
      else:
        c.train[k] = v
  return c


def _batch(seed, n_critic=1, batch_size=8):
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, (n_critic, batch_size, 28, 28, 1)).astype(np.float32)}


def _steps(config, steps=2, state=None, start=0):
  gan, fresh = create_state(config)
  mesh = make_mesh()
  fn = make_train_step(
    gan,
    get_loss(config.train.loss),
    n_critic=config.train.n_critic,
    ema_decay=config.train.ema_decay,
    stabilizers=Stabilizers.from_config(config.train),
  )
  step = jit_train_step(fn, mesh, donate=False)
  state = replicate(fresh if state is None else state, mesh)
  history = []
  for i in range(start, start + steps):
    batch = jax.device_put(_batch(i, config.train.n_critic), batch_sharding(mesh))
    state, metrics = step(state, batch)
    history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
  return gan, state, history


# The cells of experiments/ablations/losses_fashion (issue 4), with EMA off and on.
GRID = {
  'non_saturating': dict(loss='non_saturating'),
  'wgan_gp': dict(loss='wasserstein', gp_weight=10.0, n_critic=5, b1=0.0, b2=0.9),
  'hinge_sn': dict(loss='hinge', spectral_norm=True),
  'least_squares': dict(loss='least_squares'),
  'non_saturating_r1': dict(loss='non_saturating', r1_weight=10.0),
  'relativistic_average': dict(loss='relativistic_average'),
  'wgan_clip': dict(loss='wasserstein', clip=0.01, n_critic=5),
}


@pytest.mark.parametrize('ema', [0.0, 0.999])
@pytest.mark.parametrize('cell', sorted(GRID))
def test_every_cell_of_the_grid_runs_two_finite_steps(cell, ema):
  config = _config(ema_decay=ema, **GRID[cell])
  config_lib.validate(config)
  _, state, history = _steps(config)
  assert int(state.step) == 2
  for metrics in history:
    assert all(np.isfinite(v) for v in metrics.values()), metrics
  penalised = 'gp_weight' in GRID[cell] or 'r1_weight' in GRID[cell]
  assert ('d_penalty' in history[-1]) == penalised
  if penalised:
    assert history[-1]['d_penalty'] > 0
  if get_loss(config.train.loss).probabilistic:
    assert 0 <= history[-1]['d_real'] <= 1 and 0 <= history[-1]['d_fake'] <= 1


def test_weight_clipping_bounds_every_discriminator_parameter():
  _, state, _ = _steps(_config(loss='wasserstein', clip=0.01, d_lr=0.1))
  leaves = jax.tree.leaves(state.d_params)
  assert max(float(jnp.max(jnp.abs(x))) for x in leaves) <= 0.01
  assert any(float(jnp.max(jnp.abs(x))) == pytest.approx(0.01) for x in leaves)  # it acted


def test_the_penalty_metric_is_the_weighted_gradient_penalty_of_the_first_d_update():
  """With n_critic=1 the reported penalty is lambda * GP of D before its update, evaluated on
  the step's real batch and fakes, with the step's interpolation key."""
  config = _config(loss='wasserstein', gp_weight=10.0, ema_decay=0.0)
  gan, state, history = _steps(config, steps=1)
  # Recompute: the same fake batch and key as the step drew (see make_train_step).
  _, fresh = create_state(config)
  rng = jax.random.fold_in(fresh.rng, 0)
  z = gan.sample_latents(jax.random.split(rng, 2)[0], 8)
  fake, _ = gan.generate(fresh.g_params, fresh.g_batch_stats, z, train=True)
  aux = jax.random.split(jax.random.fold_in(rng, 0x57AB), 2)[0]
  k_gp = jax.random.split(aux, 3)[2]

  def d_apply(p, x):
    return gan.discriminate(p, fresh.d_batch_stats, x, train=True)[0]

  real = jnp.asarray(_batch(0)['image'][0])
  gp = regularizers.gradient_penalty(d_apply, fresh.d_params, real, fake, k_gp)
  assert history[0]['d_penalty'] == pytest.approx(10.0 * float(gp), rel=1e-4)


def test_label_smoothing_gives_the_smoothed_cross_entropy():
  base, smooth = _config(ema_decay=0.0), _config(ema_decay=0.0, label_smoothing=0.1)
  _, _, plain = _steps(base, steps=1)
  _, _, smoothed = _steps(smooth, steps=1)
  # Same D and batch: only the real term changes, by 0.1 * mean(softplus(r) - softplus(-r))
  # = 0.1 * mean(r), and the real logit r = log(d / (1 - d)) is roughly centred at d_real.
  assert smoothed[0]['d_loss'] != plain[0]['d_loss']
  assert smoothed[0]['d_real'] == plain[0]['d_real']
  with pytest.raises(ConfigError, match='train.label_smoothing=0.1 is invalid: needs'):
    config_lib.validate(_config(loss='hinge', label_smoothing=0.1))


def test_instance_noise_decays_to_nothing_and_diffaugment_off_is_the_identity():
  plain = _config(ema_decay=0.0)
  _, after_one, _ = _steps(plain, steps=1)
  # sigma(step) = 0.5 * max(0, 1 - step / 1) is 0 from step 1 on: the same step as without.
  noisy = _config(ema_decay=0.0, instance_noise=0.5, instance_noise_steps=1)
  _, a, _ = _steps(plain, steps=1, state=after_one, start=1)
  _, b, _ = _steps(noisy, steps=1, state=after_one, start=1)
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  # ... but at step 0 the noise changes what D sees.
  _, c, _ = _steps(noisy, steps=1)
  assert not np.array_equal(jax.tree.leaves(c.d_params)[0], jax.tree.leaves(after_one.d_params)[0])
  # DiffAugment changes the step; the empty policy is exactly the plain step.
  _, d, _ = _steps(_config(ema_decay=0.0, diffaugment='color,translation,cutout'), steps=1)
  assert not np.array_equal(jax.tree.leaves(d.d_params)[0], jax.tree.leaves(a.d_params)[0])
  _, e, _ = _steps(_config(ema_decay=0.0, diffaugment=''), steps=1)
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(e), jax.tree.leaves(after_one)))


@pytest.mark.parametrize(
  'field,value,message',
  [
    ('gp_weight', -1.0, 'train.gp_weight=-1.0 is invalid: must be >= 0'),
    ('r1_weight', float('nan'), 'train.r1_weight=nan is invalid'),
    ('clip', -0.01, 'train.clip=-0.01 is invalid'),
    ('label_smoothing', 1.0, 'train.label_smoothing=1.0 is invalid: must be in'),
    ('diffaugment', 'color,flip', "train.diffaugment='color,flip' is invalid"),
    ('instance_noise_steps', -5, 'train.instance_noise_steps=-5 is invalid'),
  ],
)
def test_validate_names_the_stabilizer_field(field, value, message):
  with pytest.raises(ConfigError, match=message.replace('(', r'\(').replace('[', r'\[')):
    config_lib.validate(_config(**{field: value}))


def test_sngan32_config_needs_32_pixels(tfds_dir):
  c = load_experiment('mnist_dcgan', 'tiny')
  c.model.name = 'sngan32'
  with pytest.raises(ConfigError, match='data.image_size=28 is invalid: model "sngan32" needs 32'):
    config_lib.validate(c)
