"""Spectral normalization (Miyato et al. 2018) and the SNGAN ResNet for 32x32 images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gan_jax import config as config_lib
from gan_jax import models
from gan_jax.models.sngan import SpectralNorm
from gan_jax.core.state import create_state


def _count(module, kind=nnx.Param):
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, kind)))


def _train_calls(layer: SpectralNorm, x: jax.Array, n: int) -> None:
  """n training-mode calls of `layer` in one compiled loop; stores the resulting u, sigma."""
  graphdef, params, stats = nnx.split(layer, nnx.Param, ...)

  @jax.jit
  def loop(stats):
    def body(_, stats):
      m = nnx.merge(graphdef, params, stats, copy=True)
      m(x, update_stats=True)
      return nnx.state(m, nnx.BatchStat)

    return jax.lax.fori_loop(0, n, body, stats)

  nnx.update(layer, loop(stats))


def _top_singular_value(kernel) -> float:
  k = np.asarray(kernel, np.float64)
  return float(np.linalg.svd(k.reshape(-1, k.shape[-1]), compute_uv=False)[0])


def _dense(rngs):
  return nnx.Linear(24, 10, kernel_init=nnx.initializers.normal(1.0), rngs=rngs)


def _conv(rngs):
  return nnx.Conv(4, 6, (3, 3), kernel_init=nnx.initializers.normal(1.0), rngs=rngs)


@pytest.mark.parametrize('make,x_shape', [(_dense, (3, 24)), (_conv, (2, 5, 5, 4))])
def test_sigma_converges_to_largest_singular_value(make, x_shape):
  rngs = nnx.Rngs(0)
  layer = SpectralNorm(make(rngs), rngs=rngs)
  kernel = np.array(layer.layer.kernel[...])
  x = jax.random.normal(jax.random.PRNGKey(1), x_shape)
  _train_calls(layer, x, 300)
  s1 = _top_singular_value(kernel)
  assert float(layer.sigma[...]) == pytest.approx(s1, rel=1e-3)
  # The Param itself is never overwritten by the normalised kernel.
  np.testing.assert_array_equal(layer.layer.kernel[...], kernel)
  # The effective weight W / sigma has spectral norm 1 ...
  assert _top_singular_value(kernel / float(layer.sigma[...])) == pytest.approx(1.0, rel=1e-3)
  # ... and is what the layer computes with.
  ref = make(nnx.Rngs(0))
  ref.kernel[...] = jnp.asarray(kernel / s1)
  ref.bias[...] = layer.layer.bias[...]
  np.testing.assert_allclose(layer(x, update_stats=False), ref(x), rtol=1e-3, atol=1e-4)


def test_train_calls_update_u_and_eval_calls_do_not():
  rngs = nnx.Rngs(0)
  layer = SpectralNorm(_conv(rngs), rngs=rngs)
  x = jnp.ones((2, 5, 5, 4))
  u0, sigma0 = np.array(layer.u[...]), np.array(layer.sigma[...])
  assert np.linalg.norm(u0) == pytest.approx(1.0, rel=1e-5)
  y_eval = layer(x, update_stats=False)
  np.testing.assert_array_equal(layer.u[...], u0)
  np.testing.assert_array_equal(layer.sigma[...], sigma0)
  y_train = layer(x, update_stats=True)
  assert not np.array_equal(layer.u[...], u0)
  assert float(layer.sigma[...]) != float(sigma0)
  # Same stored u before both calls, so the same sigma and the same output.
  np.testing.assert_array_equal(y_eval, y_train)


def test_output_is_invariant_to_kernel_scale_and_gradient_is_eq_12():
  rngs = nnx.Rngs(0)
  layer = SpectralNorm(_dense(rngs), rngs=rngs)
  layer.layer.bias[...] = jnp.zeros(10)
  x = jax.random.normal(jax.random.PRNGKey(2), (3, 24))
  y = layer(x, update_stats=False)
  kernel = layer.layer.kernel[...]
  layer.layer.kernel[...] = 7.0 * kernel
  np.testing.assert_allclose(layer(x, update_stats=False), y, rtol=1e-5, atol=1e-6)
  grads = nnx.grad(lambda m: jnp.sum(m(x, update_stats=False) ** 2))(layer)
  g = grads['layer']['kernel'][...]
  # Only Params get gradients: u and sigma are BatchStats.
  assert set(grads['layer']) == {'kernel', 'bias'} and 'u' not in grads
  # The gradient is that of W -> W / sigma(W) with u, v held fixed (Miyato et al. 2018, eq. 12).
  w = layer.layer.kernel[...]
  v = w @ layer.u[...]
  v = v / jnp.linalg.norm(v)
  u = w.T @ v / jnp.linalg.norm(w.T @ v)
  ref = jax.grad(lambda w: jnp.sum((x @ (w / (v @ w @ u))) ** 2))(w)
  assert np.isfinite(g).all() and float(jnp.abs(g).max()) > 0
  np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-6)


def test_spectral_norm_needs_a_kernel():
  with pytest.raises(ValueError, match='kernel'):
    SpectralNorm(nnx.BatchNorm(4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))


def test_sngan_parameter_counts_at_paper_width():
  g = nnx.eval_shape(lambda: models.SNGANGenerator((32, 32, 3), 128, 256, rngs=nnx.Rngs(0)))
  d = nnx.eval_shape(lambda: models.SNGANDiscriminator((32, 32, 3), 128, rngs=nnx.Rngs(1)))
  # G: dense 128 -> 4096 (528,384); per up-block 2 conv3x3 256->256 (2 x 590,080),
  # conv1x1 shortcut (65,792), 2 BN (1,024); final BN (512) and conv3x3 256->3 (6,915).
  assert _count(g) == 528_384 + 3 * (2 * 590_080 + 65_792 + 1_024) + 512 + 6_915 == 4_276_739
  # D: optimized block 3456+128 + 147,456+128 + 384+128; down block 2 x 147,584 + 16,512;
  # two plain blocks 2 x 147,584 each (identity shortcut); dense 128 -> 1.
  assert _count(d) == 151_680 + 311_680 + 2 * 295_168 + 129 == 1_053_825


def test_sngan_discriminator_is_spectrally_normalised_everywhere():
  d = nnx.eval_shape(lambda: models.SNGANDiscriminator((32, 32, 3), width=8, rngs=nnx.Rngs(1)))
  modules = [m for _, m in nnx.iter_modules(d)]
  layers = [m for m in modules if isinstance(m, (nnx.Conv, nnx.Linear))]
  wrapped = [m.layer for m in modules if isinstance(m, SpectralNorm)]
  assert len(layers) == 4 * 2 + 2 + 1  # 2 convs per block, 2 conv shortcuts, the dense
  assert len(wrapped) == len(layers) and all(any(w is m for w in wrapped) for m in layers)
  assert not any(isinstance(m, nnx.BatchNorm) for m in modules)
  g = nnx.eval_shape(lambda: models.SNGANGenerator((32, 32, 3), 16, 8, rngs=nnx.Rngs(0)))
  assert not any(isinstance(m, SpectralNorm) for _, m in nnx.iter_modules(g))


def test_sngan32_through_create_state_under_jit():
  config = config_lib.base_config()
  with config.unlocked():
    config.model.name = 'sngan32'
    config.model.latent_dim = 16
    config.model.g_width = 8
    config.model.d_width = 8
    config.data.image_size = 32
    config.data.channels = 3
  gan, state = create_state(config)
  assert not state.g_batch_stats.keys() & {'u', 'sigma'}
  d_stats = jax.tree_util.tree_leaves_with_path(state.d_batch_stats)
  assert len(d_stats) == 2 * 11  # u and sigma for each of the 11 layers

  @jax.jit
  def forward(state, z):
    x, _ = gan.generate(state.g_params, state.g_batch_stats, z, train=True)
    train = gan.discriminate(state.d_params, state.d_batch_stats, x, train=True)
    evaluate = gan.discriminate(state.d_params, state.d_batch_stats, x, train=False)
    return x, train, evaluate

  x, (logits, new_stats), (eval_logits, eval_stats) = forward(state, jnp.ones((4, 16)))
  assert x.shape == (4, 32, 32, 3) and x.dtype == jnp.float32
  assert float(x.min()) >= -1 and float(x.max()) <= 1
  assert logits.shape == (4,) and logits.dtype == jnp.float32
  assert np.isfinite(logits).all()
  assert jax.tree.all(jax.tree.map(jnp.array_equal, eval_stats, state.d_batch_stats))
  assert not jax.tree.all(jax.tree.map(jnp.array_equal, new_stats, state.d_batch_stats))
  # Both calls start from the same stored u, so they normalise by the same sigma.
  np.testing.assert_allclose(logits, eval_logits, rtol=1e-5, atol=1e-6)

  with pytest.raises(ValueError, match='32x32'):
    models.build_models(config.model, (64, 64, 3), seed=0)
  with pytest.raises(ValueError, match='32x32'):
    models.SNGANDiscriminator((28, 28, 1), rngs=nnx.Rngs(0))


def _tiny_sngan_config(**model_fields):
  config = config_lib.base_config()
  config.model.name = 'sngan32'
  config.model.latent_dim = 16
  config.model.g_width = 8
  config.model.d_width = 8
  config.data.image_size = 32
  config.data.channels = 3
  config.train.batch_size = 8
  config.train.loss = 'hinge'
  config.train.ema_decay = 0.9
  for name, value in model_fields.items():
    config.model[name] = value
  return config


def _two_steps(config):
  """Two jitted train steps of `config` on a fixed batch: (final state, metrics)."""
  from gan_jax.core.sharding import make_mesh, replicate  # noqa: PLC0415
  from gan_jax.core.train_step import jit_train_step, make_train_step_from_config  # noqa: PLC0415

  mesh = make_mesh()
  gan, state = create_state(config)
  step = jit_train_step(make_train_step_from_config(gan, config, mesh=mesh), mesh)
  image = jax.random.uniform(jax.random.key(3), (1, 8, 32, 32, 3), minval=-1.0, maxval=1.0)
  state = replicate(state, mesh)
  for _ in range(2):
    state, metrics = step(state, {'image': image})
  return jax.device_get(state), jax.device_get(metrics)


def test_remat_gives_the_same_two_steps_to_float_rounding():
  """model.remat recomputes the blocks' activations in the backward pass: the same
  gradients, so the same metrics, D parameters and D's BatchNorm / power-iteration state
  after two steps (to float32 rounding), G's to the Adam steps that rounding can turn (below),
  in the same state layout (checkpoints interchange)."""
  config = _tiny_sngan_config()
  plain_state, plain_metrics = _two_steps(config)
  remat_state, remat_metrics = _two_steps(_tiny_sngan_config(remat=True))
  assert jax.tree.structure(remat_state) == jax.tree.structure(plain_state)
  for name, value in plain_metrics.items():
    np.testing.assert_allclose(remat_metrics[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
  for part in ('d_params', 'd_batch_stats'):
    pairs = zip(
      jax.tree.leaves(getattr(remat_state, part)), jax.tree.leaves(getattr(plain_state, part))
    )
    for a, b in pairs:
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=part)
  # G's conv biases feed BatchNorms, so their exact gradient is 0 and the computed one is
  # rounding noise, which Adam scales to steps of up to g_lr: G agrees to 2 steps x g_lr.
  lr = config.train.g_lr
  for a, b in zip(jax.tree.leaves(remat_state.g_params), jax.tree.leaves(plain_state.g_params)):
    np.testing.assert_allclose(a, b, rtol=0, atol=2 * 2 * lr)
  # ... while every other G parameter (nearly all elements) agrees to rounding.
  a, b = (
    np.concatenate([x.ravel() for x in jax.tree.leaves(s.g_params)])
    for s in (remat_state, plain_state)
  )
  assert np.mean(np.isclose(a, b, rtol=1e-4, atol=1e-6)) > 0.95
  # A bias moves the batch mean of its BatchNorm's input one for one, so step 2's running
  # means carry step 1's bias difference (up to 2 x g_lr) at weight (1 - momentum) <= 1. On an
  # AVX2 machine (no AVX-512) 3 of 8 means of one layer differed by up to 2.6e-5.
  pairs = zip(
    jax.tree.leaves(remat_state.g_batch_stats), jax.tree.leaves(plain_state.g_batch_stats)
  )
  for a, b in pairs:
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2 * lr, err_msg='g_batch_stats')


def test_remat_gives_the_same_gradients_to_float_rounding():
  """G's and D's parameter gradients of D(G(z)) with and without remat (model level)."""

  def grads(remat):
    g = models.SNGANGenerator((32, 32, 3), 16, 8, remat=remat, rngs=nnx.Rngs(params=0))
    d = models.SNGANDiscriminator((32, 32, 3), 8, remat=remat, rngs=nnx.Rngs(params=1))
    z = jax.random.normal(jax.random.key(2), (4, 16))
    (gd, gp, gs), (dd, dp, ds) = nnx.split(g, nnx.Param, ...), nnx.split(d, nnx.Param, ...)

    def loss(gp, dp):
      fake = nnx.merge(gd, gp, gs, copy=True)(z, train=True)
      return nnx.merge(dd, dp, ds, copy=True)(fake, train=True).mean()

    return jax.tree.leaves(jax.jit(jax.grad(loss, argnums=(0, 1)))(gp, dp))

  plain, remat = grads(False), grads(True)
  scale = max(float(np.abs(x).max()) for x in plain)
  for a, b in zip(remat, plain):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_remat_is_refused_by_models_without_it_and_must_be_a_bool():
  config = _tiny_sngan_config()
  config.model.remat = True
  config_lib.validate(config)  # sngan32 declares it
  config.model.name = 'dcgan'
  with pytest.raises(
    config_lib.ConfigError,
    match='model.remat=True is invalid: model "dcgan" does not support it; use model.name=sngan32',
  ):
    config_lib.validate(config)
  config = _tiny_sngan_config()
  with config.unlocked():
    config.model.remat = None  # ml_collections allows None for any field
    with pytest.raises(
      config_lib.ConfigError, match='model.remat=None is invalid: must be true or false'
    ):
      config_lib.validate(config)
  # A config written before the field existed builds the models without remat.
  config = _tiny_sngan_config()
  with config.unlocked():
    del config.model['remat']
  g, d = models.build_models(config.model, (32, 32, 3), seed=0)
  assert g.remat is False and d.remat is False
