"""pix2pix building blocks (issue 19): U-Net and PatchGAN shapes, skips and receptive field,
the train step against a hand-computed loss, a few real steps on inpainting, the task
builders and their baselines' PSNR."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from gan_jax.models.unet import (
  PatchGANDiscriminator,
  UNetGenerator,
  default_patch_layers,
  init_fast,
  patch_field_start,
  patch_receptive_field,
  unet_depth,
)
from gan_jax.translation import (
  build_task,
  check_batch,
  create_pix2pix,
  image_quality,
  make_train_step,
  psnr_per_image,
  translate_batches,
)

DATA_DIR = os.environ.get('TFDS_DATA_DIR') or os.path.join(
  os.path.dirname(__file__), '..', '..', 'shared', 'tfds'
)
needs_data = pytest.mark.skipif(
  not os.path.isdir(os.path.join(DATA_DIR, 'mnist')), reason='no TFDS data in ' + DATA_DIR
)


def _build(ctor, seed=0, **kwargs):
  """(abstract module for its attributes, the module as a pure function `f(params, stats,
  *args)` to jit or eval_shape, params, stats), initialised with `init_fast` (one compile)."""
  graphdef, params, stats = init_fast(ctor, jax.random.PRNGKey(seed))

  def f(p, s, *args, **more):
    return nnx.merge(graphdef, p, s, copy=True)(*args, **kwargs, **more)

  return nnx.eval_shape(ctor), f, params, stats


@pytest.mark.parametrize('size, c_in, c_out', [(28, 2, 1), (32, 1, 3)])
def test_shapes_at_28_and_32(size, c_in, c_out):
  g, g_fn, gp, gs = _build(
    lambda: UNetGenerator(size, c_in, c_out, width=4, max_width=16, rngs=nnx.Rngs(0)), train=True
  )
  d, d_fn, dp, ds = _build(
    lambda: PatchGANDiscriminator(size, c_in, c_out, width=4, rngs=nnx.Rngs(1)), train=True
  )
  _, d1_fn, dp1, ds1 = _build(
    lambda: PatchGANDiscriminator(size, c_in, c_out, width=4, patch_layers=1, rngs=nnx.Rngs(1)),
    train=True,
  )
  assert unet_depth(size) == 5 and g.padded == 32  # 28 is reflect-padded to 32, 1x1 bottleneck
  x = jax.ShapeDtypeStruct((3, size, size, c_in), jnp.float32)
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)
  y = jax.eval_shape(lambda p, s, x, k: g_fn(p, s, x, dropout_rng=k), gp, gs, x, key)
  assert y.shape == (3, size, size, c_out) and y.dtype == jnp.float32
  n = d.patch_layers
  assert n == default_patch_layers(size) == 0
  logits = jax.eval_shape(d_fn, dp, ds, x, y)
  assert logits.shape == (3, size, size) and logits.dtype == jnp.float32
  # Explicit patch layers: one logit per 2^n x 2^n block.
  assert jax.eval_shape(d1_fn, dp1, ds1, x, y).shape == (3, size // 2, size // 2)


def test_dropout_is_the_noise_and_eval_is_deterministic():
  _, f, p, s = _build(
    lambda: UNetGenerator(16, 1, 1, width=4, max_width=8, rngs=nnx.Rngs(0)), train=False
  )
  run = jax.jit(lambda p, s, x, k: f(p, s, x, dropout_rng=k))
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 1), minval=-1, maxval=1)
  a = run(p, s, x, jax.random.PRNGKey(1))
  b = run(p, s, x, jax.random.PRNGKey(2))
  assert not np.allclose(a, b) and float(jnp.max(jnp.abs(a))) <= 1.0
  plain = jax.jit(f)
  np.testing.assert_array_equal(plain(p, s, x), plain(p, s, x))


def test_skip_connections_carry_fine_detail():
  """With every decoder layer but the outermost zeroed (no path through the bottleneck or
  the deeper skips), G still depends on its input, and only on the pixels next to each
  output pixel: the outermost skip carries full-resolution detail."""
  g, f, params, stats = _build(
    lambda: UNetGenerator(32, 1, 1, width=4, max_width=16, rngs=nnx.Rngs(0)), train=False
  )
  cut = jax.tree.map(lambda a: a, params)
  for i in range(1, g.depth):
    cut['ups'][i]['kernel'] = jnp.zeros_like(cut['ups'][i]['kernel'])

  probe = jax.jit(jax.grad(lambda p, x: f(p, stats, x)[0, 16, 16, 0], argnums=1))
  x = jax.random.uniform(jax.random.PRNGKey(3), (1, 32, 32, 1), minval=-1, maxval=1)
  grad = np.abs(np.asarray(probe(cut, x))[0, :, :, 0])
  rows, cols = np.nonzero(grad)
  assert grad[16, 16] > 0
  # conv 4x4/2 then transposed conv 4x4/2: at most 4 pixels away.
  assert rows.min() >= 12 and rows.max() <= 20 and cols.min() >= 12 and cols.max() <= 20
  # The full model sees far beyond that window (through the deeper levels).
  full = np.abs(np.asarray(probe(params, x))[0, :, :, 0])
  assert full[0, 0] > 0 or full[31, 31] > 0
  assert np.count_nonzero(full) > np.count_nonzero(grad)


@pytest.mark.parametrize('size, n, index', [(32, 0, 16), (32, 1, 8), (64, 2, 8)])
def test_patchgan_receptive_field_matches_gradient_probe(size, n, index):
  d, f, params, stats = _build(
    lambda: PatchGANDiscriminator(size, 1, 2, width=4, patch_layers=n, rngs=nnx.Rngs(0)),
    train=False,
  )
  r = patch_receptive_field(n)
  assert d.receptive_field == r == 9 * 2**n - 2

  logit = jax.jit(jax.grad(lambda x, y: f(params, stats, x, y)[0, index, index], argnums=(0, 1)))

  x = jax.random.uniform(jax.random.PRNGKey(0), (1, size, size, 1), minval=-1, maxval=1)
  y = jax.random.uniform(jax.random.PRNGKey(1), (1, size, size, 2), minval=-1, maxval=1)
  gx, gy = logit(x, y)
  support = (np.abs(np.asarray(gx))[0].sum(-1) + np.abs(np.asarray(gy))[0].sum(-1)) > 0
  rows, cols = np.nonzero(support)
  start = patch_field_start(n, index)
  assert 0 <= start and start + r <= size  # the probed patch lies inside the image
  assert (rows.min(), rows.max()) == (start, start + r - 1)
  assert (cols.min(), cols.max()) == (start, start + r - 1)
  # Both halves of the pair reach the logit.
  assert np.abs(np.asarray(gx)).sum() > 0 and np.abs(np.asarray(gy)).sum() > 0


def test_receptive_field_scales_like_the_paper():
  assert patch_receptive_field(3) == 70 and default_patch_layers(256) == 3
  assert [default_patch_layers(s) for s in (28, 32, 64, 128)] == [0, 0, 1, 2]


def _softplus(x):
  return np.logaddexp(0.0, np.asarray(x, np.float64))


# Hand-written losses (paper, eqs. 1 and 3; Mao et al. 2017 eq. 2 for least squares), in
# numpy for the values and in jnp for the reference gradients.
HAND = {
  'non_saturating': (
    lambda r, f: np.mean(_softplus(-r)) + np.mean(_softplus(f)),
    lambda f: np.mean(_softplus(-f)),
    lambda f: jnp.mean(jax.nn.softplus(-f)),
    lambda r, f: jnp.mean(jax.nn.softplus(-r)) + jnp.mean(jax.nn.softplus(f)),
  ),
  'least_squares': (
    lambda r, f: (
      0.5 * np.mean((np.asarray(r, np.float64) - 1) ** 2)
      + 0.5 * np.mean(np.asarray(f, np.float64) ** 2)
    ),
    lambda f: 0.5 * np.mean((np.asarray(f, np.float64) - 1) ** 2),
    lambda f: 0.5 * jnp.mean(jnp.square(f - 1)),
    lambda r, f: 0.5 * jnp.mean(jnp.square(r - 1)) + 0.5 * jnp.mean(jnp.square(f)),
  ),
}


@pytest.mark.parametrize(
  'loss, l1_weight, check_updates',
  [('non_saturating', 100.0, True), ('least_squares', 10.0, False)],
)
def test_train_step_matches_hand_computed_losses(loss, l1_weight, check_updates):
  """The step's losses against numpy; with check_updates also its Adam updates of D and G
  against plain autodiff of the hand-written objectives (compiling those grads is the slow
  part, so the least-squares case checks the losses only)."""
  d_np, g_np, g_jnp, d_jnp = HAND[loss]
  model, state = create_pix2pix(
    8, 2, 3, seed=1, g_width=2, g_max_width=4, d_width=2, loss=loss, l1_weight=l1_weight
  )
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (4, 8, 8, 2)).astype(np.float32)
  y = rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
  new_state, m = make_train_step(model, donate=False)(state, x, y)
  m = {k: float(v) for k, v in m.items()}

  @jax.jit
  def reference(state, new_d_params):
    """G's fakes, D's logits and the plain-autodiff Adam updates of D and G."""
    key = jax.random.fold_in(state.rng, 0)
    fake, g_stats = model.translate(
      state.g_params, state.g_batch_stats, x, train=True, dropout_rng=key
    )
    real_l, stats = model.discriminate(state.d_params, state.d_batch_stats, x, y, train=True)
    fake_l, stats = model.discriminate(state.d_params, stats, x, fake, train=True)

    adv_l, _ = model.discriminate(new_d_params, stats, x, fake, train=True)
    if not check_updates:
      return fake, g_stats, real_l, fake_l, stats, None, adv_l, None

    def d_obj(p):
      r, s = model.discriminate(p, state.d_batch_stats, x, y, train=True)
      f, _ = model.discriminate(p, s, x, fake, train=True)
      return 0.5 * d_jnp(r, f)

    upd, _ = model.d_tx.update(jax.grad(d_obj)(state.d_params), state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, upd)

    def g_obj(p):
      f, _ = model.translate(p, state.g_batch_stats, x, train=True, dropout_rng=key)
      lg, _ = model.discriminate(new_d_params, stats, x, f, train=True)
      return g_jnp(lg) + l1_weight * jnp.mean(jnp.abs(f - y))

    upd, _ = model.g_tx.update(jax.grad(g_obj)(state.g_params), state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, upd)
    return fake, g_stats, real_l, fake_l, stats, d_params, adv_l, g_params

  fake, g_stats, real_l, fake_l, d_stats, d_params, adv_l, g_params = reference(
    state, new_state.d_params
  )
  # D: its loss on real pairs vs fake pairs, halved as in the paper.
  np.testing.assert_allclose(m['d_loss'], 0.5 * d_np(real_l, fake_l), rtol=1e-5)
  np.testing.assert_allclose(m['d_real'], np.mean(real_l), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(m['d_fake'], np.mean(fake_l), rtol=1e-4, atol=1e-6)
  if check_updates:
    for a, b in zip(jax.tree.leaves(d_params), jax.tree.leaves(new_state.d_params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  jax.tree.map(np.testing.assert_array_equal, new_state.d_batch_stats, d_stats)
  # G: the adversarial term with the updated D, plus lambda * L1.
  adv = g_np(adv_l)
  l1 = np.mean(np.abs(np.asarray(fake, np.float64) - y))
  np.testing.assert_allclose(m['g_adv'], adv, rtol=1e-5)
  np.testing.assert_allclose(m['g_l1'], l1, rtol=1e-5)
  np.testing.assert_allclose(m['g_loss'], adv + l1_weight * l1, rtol=1e-5)
  # G's update (through jax.vjp of one forward pass) equals plain autodiff of its loss.
  if check_updates:
    for a, b in zip(jax.tree.leaves(g_params), jax.tree.leaves(new_state.g_params)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, new_state.g_batch_stats, g_stats)
  assert int(new_state.step) == 1 and int(state.step) == 0


@pytest.fixture(scope='module')
def mnist_inpaint():
  return build_task('inpaint', data_dir=DATA_DIR, num_train=64, num_test=16, seed=0)


@needs_data
def test_few_real_steps_reduce_l1_on_inpainting(mnist_inpaint):
  task = mnist_inpaint
  model, state = create_pix2pix(
    28,
    task.in_channels,
    task.out_channels,
    seed=0,
    g_width=8,
    g_max_width=32,
    d_width=8,
    lr=1e-3,
  )
  step = make_train_step(model)
  x, y = task.train_inputs[:32], task.train_targets[:32]
  l1s = []
  for _ in range(12):
    state, m = step(state, x, y)
    l1s.append(float(m['g_l1']))
  assert np.mean(l1s[-3:]) < 0.8 * np.mean(l1s[:3]), l1s
  out = translate_batches(model, state, task.test_inputs)
  assert out.shape == task.test_targets.shape and np.all(np.abs(out) <= 1)


@needs_data
def test_task_builders_are_deterministic_and_baselines_psnr(mnist_inpaint):
  again = build_task('inpaint', data_dir=DATA_DIR, num_train=64, num_test=16, seed=0)
  for name in ('train_inputs', 'train_targets', 'test_inputs', 'test_baseline'):
    np.testing.assert_array_equal(getattr(again, name), getattr(mnist_inpaint, name))
  other = build_task('inpaint', data_dir=DATA_DIR, num_train=64, num_test=16, seed=1)
  assert not np.array_equal(other.test_inputs, mnist_inpaint.test_inputs)
  mask = mnist_inpaint.test_inputs[..., 1] > 0
  assert np.all(mask.sum(axis=(1, 2)) == 14 * 14)
  tasks = [mnist_inpaint] + [
    build_task(t, data_dir=DATA_DIR, num_train=4, num_test=8) for t in ('colorize', 'superres')
  ]
  for task in tasks:
    for arr in (task.train_inputs, task.train_targets, task.test_inputs, task.test_baseline):
      assert arr.dtype == np.float32 and arr.min() >= -1 and arr.max() <= 1
    a = (task.test_baseline.astype(np.float64) + 1) / 2
    b = (task.test_targets.astype(np.float64) + 1) / 2
    numpy_psnr = np.mean(10 * np.log10(1.0 / np.mean((a - b) ** 2, axis=(1, 2, 3))))
    np.testing.assert_allclose(
      psnr_per_image(task.test_baseline, task.test_targets).mean(), numpy_psnr, rtol=1e-4
    )
    q = image_quality(task.test_baseline, task.test_targets)
    assert 5 < q['psnr'] < 40 and 0 < q['ssim'] < 1
  colour, sr = tasks[1], tasks[2]
  assert colour.in_channels == 1 and colour.out_channels == 3
  np.testing.assert_array_equal(colour.test_baseline, np.repeat(colour.test_inputs, 3, axis=-1))
  np.testing.assert_array_equal(sr.test_baseline, sr.test_inputs)
  # The 8x8 image is what the input keeps: 4x4 block means of target and input agree closely.
  blocks = lambda z: z.reshape(8, 8, 4, 8, 4, 3).mean(axis=(2, 4))  # noqa: E731
  assert np.mean(np.abs(blocks(sr.test_inputs) - blocks(sr.test_targets))) < 0.05


def test_one_line_value_errors():
  # Abstract modules (nothing initialised): the shape checks come before any computation.
  g = nnx.eval_shape(lambda: UNetGenerator(28, 2, 1, width=2, max_width=4, rngs=nnx.Rngs(0)))
  d = nnx.eval_shape(lambda: PatchGANDiscriminator(28, 2, 1, width=2, rngs=nnx.Rngs(0)))
  model, _ = create_pix2pix(8, 2, 3, g_width=2, g_max_width=4, d_width=2)
  cases = [
    lambda: g(jnp.zeros((1, 32, 32, 2))),
    lambda: g(jnp.zeros((1, 28, 28, 3))),
    lambda: d(jnp.zeros((1, 28, 28, 2)), jnp.zeros((1, 28, 28, 3))),
    lambda: d(jnp.zeros((2, 28, 28, 2)), jnp.zeros((1, 28, 28, 1))),
    lambda: check_batch(model, np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 3))),
    lambda: check_batch(model, np.zeros((1, 16, 16, 2)), np.zeros((1, 16, 16, 3))),
    lambda: translate_batches(model, None, np.zeros((1, 8, 8, 3))),
    lambda: UNetGenerator(3, 1, 1, rngs=nnx.Rngs(0)),
    lambda: create_pix2pix(8, 1, 1, loss='nope'),
    lambda: build_task('deblur'),
    lambda: build_task('inpaint', dataset='svhn'),
    lambda: build_task('colorize', dataset='mnist'),
    lambda: image_quality(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 3))),
  ]
  for case in cases:
    with pytest.raises(ValueError) as err:
      case()
    assert '\n' not in str(err.value), str(err.value)
