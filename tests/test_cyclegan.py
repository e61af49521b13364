"""CycleGAN (issue 19, item 2): the image history against a numpy simulation of the reference
code's ImagePool, the learning-rate schedule, the least-squares and L1 terms against hand
computation, a tiny training that resumes bit for bit from an Orbax checkpoint, the ResNet
generator, the unpaired sneakers <-> boots task and the unpaired metrics."""

from __future__ import annotations

import dataclasses
import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import run_python
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.metrics.features import FeatureNet
from gan_jax.models.layers import instance_norm
from gan_jax.models.resnet_generator import ResnetGenerator
from gan_jax.models.unet import PatchGANDiscriminator, init_fast
from gan_jax.translation import build_unpaired_task, class_fraction, feature_fid, mean_l1
from gan_jax.translation.cyclegan import (
  check_batch,
  create_cyclegan,
  d_adversarial,
  empty_history,
  g_adversarial,
  generator_loss,
  history_draws,
  lr_schedule,
  make_train_step,
  query_history,
  translate_batches,
  update_history,
)

DATA_DIR = os.environ.get('TFDS_DATA_DIR') or os.path.join(
  os.path.dirname(__file__), '..', '..', 'shared', 'tfds'
)
needs_data = pytest.mark.skipif(
  not os.path.isdir(os.path.join(DATA_DIR, 'fashion_mnist')), reason='no TFDS data in ' + DATA_DIR
)


def numpy_image_pool(buffer, count, images, u, slots):
  """The reference code's `ImagePool.query` (junyanz/pytorch-CycleGAN-and-pix2pix,
  util/image_pool.py), one image after another, with the given random numbers in place of
  `random.uniform` and `random.randint`."""
  buffer, out = buffer.copy(), []
  for image, p, slot in zip(images, u, slots):
    if count < len(buffer):
      buffer[count] = image
      count += 1
      out.append(image)
    elif p > 0.5:
      out.append(buffer[slot].copy())
      buffer[slot] = image
    else:
      out.append(image)
  return np.stack(out), buffer, count


def test_history_matches_the_reference_image_pool():
  capacity, shape = 5, (2, 2, 1)
  history = empty_history(capacity, shape)
  step = jax.jit(update_history)
  buf, count = np.zeros((capacity, *shape), np.float32), 0
  swapped = 0
  for call in range(6):
    images = np.full((3, *shape), 0.0, np.float32) + 10 * call + np.arange(3)[:, None, None, None]
    u, slots = history_draws(jax.random.PRNGKey(call), 3, capacity)
    out, history = step(history, jnp.asarray(images), u, slots)
    want, buf, count_before = numpy_image_pool(buf, count, images, np.asarray(u), np.asarray(slots))
    if call == 0:  # filling: the inputs come back unchanged
      np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(history.images, buf)
    assert int(history.count) == count_before == min(3 * (call + 1), capacity)
    count = count_before
    swapped += int(np.sum(np.any(np.asarray(out) != images, axis=(1, 2, 3))))
  assert swapped > 0  # after the fill, some images were exchanged for stored ones


def test_history_swaps_half_the_time_once_full_and_size_0_is_off():
  history = empty_history(4, (1, 1, 1))
  images = jnp.arange(1, 2001, dtype=jnp.float32).reshape(2000, 1, 1, 1)
  out, history = jax.jit(query_history)(history, images, jax.random.PRNGKey(0))
  out = np.asarray(out).ravel()
  np.testing.assert_array_equal(out[:4], [1, 2, 3, 4])
  frac = np.mean(out[4:] != np.arange(5, 2001))
  assert 0.45 < frac < 0.55, frac  # p = 0.5, 1,996 draws: 4.5 standard deviations
  # A returned stored image is an earlier input (never a later one, never zeros).
  assert np.all(out <= np.arange(1, 2001)) and np.all(out >= 1)
  off = empty_history(0, (1, 1, 1))
  same, off2 = query_history(off, images[:3], jax.random.PRNGKey(1))
  np.testing.assert_array_equal(same, images[:3])
  assert off2.images.shape == (0, 1, 1, 1)


def test_lr_schedule_holds_then_decays_linearly_to_zero():
  s = lr_schedule(2e-4, 10, 4)
  got = [float(s(k)) for k in (0, 9, 10, 11, 12, 13, 14, 100)]
  np.testing.assert_allclose(got, [2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4, 0.0, 0.0], atol=1e-12)
  assert float(lr_schedule(1e-3, 0, None)(10**6)) == pytest.approx(1e-3)
  for bad in ((0.0, 1, 1), (1e-3, -1, 1), (1e-3, 1, 0)):
    with pytest.raises(ValueError):
      lr_schedule(*bad)


def test_least_squares_terms_by_hand():
  fake = jnp.array([[[0.5, 1.5], [1.0, -1.0]]])  # patch logits [1, 2, 2]
  # G: mean((D - 1)^2) = (0.25 + 0.25 + 0 + 4) / 4
  assert float(g_adversarial(fake)) == pytest.approx(1.125)
  real = jnp.array([[[1.0, 0.0], [2.0, 1.0]]])
  # D: 0.5 * (mean((real - 1)^2) + mean(fake^2)) = 0.5 * ((0 + 1 + 1 + 0) / 4 + (0.25 + 2.25
  # + 1 + 1) / 4)
  assert float(d_adversarial(real, fake)) == pytest.approx(0.5 * (0.5 + 1.125))


def test_instance_norm_matches_numpy():
  x = np.random.default_rng(0).normal(2.0, 3.0, (2, 5, 4, 3)).astype(np.float32)
  m = x.mean(axis=(1, 2), keepdims=True)
  v = x.var(axis=(1, 2), keepdims=True)
  np.testing.assert_allclose(instance_norm(jnp.asarray(x)), (x - m) / np.sqrt(v + 1e-5), atol=1e-5)


def _ctor(cls, *args, **kwargs):
  """A constructor for `init_fast` (the Rngs are made inside its abstract trace)."""

  def make():
    return cls(*args, **kwargs, rngs=nnx.Rngs(0))

  return make


@pytest.mark.parametrize('size, channels, blocks', [(28, 1, 2), (32, 3, 0)])
def test_resnet_generator_shapes_and_range(size, channels, blocks):
  ctor = _ctor(ResnetGenerator, size, channels, channels, width=2, num_blocks=blocks)
  graphdef, params, stats = init_fast(ctor, jax.random.PRNGKey(0))
  assert not jax.tree.leaves(stats)  # instance norm: no statistics
  # The paper's layout: c7s1-k, d2k, d4k, n x R4k (two 3x3 convs each), u2k, uk, c7s1-C.
  k = 2
  assert params['stem']['kernel'].shape == (7, 7, channels, k)
  assert [d['kernel'].shape for d in params['downs'].values()] == [
    (3, 3, k, 2 * k),
    (3, 3, 2 * k, 4 * k),
  ]
  assert len(params.get('blocks', {})) == blocks
  assert params['head']['kernel'].shape == (7, 7, k, channels)
  x = jax.ShapeDtypeStruct((3, size, size, channels), jnp.float32)
  y = jax.eval_shape(lambda p, x: nnx.merge(graphdef, p)(x), params, x)
  assert y.shape == (3, size, size, channels) and y.dtype == jnp.float32


def test_resnet_generator_output_is_in_range_and_checks_sizes():
  ctor = _ctor(ResnetGenerator, 8, 1, 2, width=2, num_blocks=1)
  graphdef, params, _ = init_fast(ctor, jax.random.PRNGKey(1))
  params = jax.tree.map(lambda p: 50.0 * p, params)  # large weights: tanh saturates
  x = jax.random.uniform(jax.random.PRNGKey(2), (2, 8, 8, 1), minval=-1, maxval=1)
  y = np.asarray(jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))(params, x))
  assert y.shape == (2, 8, 8, 2) and np.all(np.abs(y) <= 1.0) and np.abs(y).max() > 0.99
  for size in (4, 30):
    with pytest.raises(ValueError, match='multiple of 4'):
      ResnetGenerator(size, 1, 1, rngs=nnx.Rngs(0))


def test_unconditional_instance_norm_patchgan():
  ctor = _ctor(PatchGANDiscriminator, 16, 0, 3, width=4, patch_layers=1, norm='instance')
  graphdef, params, stats = init_fast(ctor, jax.random.PRNGKey(0))
  assert not jax.tree.leaves(stats) and params['convs'][0]['kernel'].shape == (4, 4, 3, 4)
  f = jax.jit(lambda p, y, train: nnx.merge(graphdef, p)(None, y, train=train), static_argnums=2)
  y = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 3))
  out = f(params, y, True)
  assert out.shape == (2, 8, 8)
  np.testing.assert_array_equal(out, f(params, y, False))  # no running statistics
  # Each image is judged alone: a batch of one gives the same logits.
  np.testing.assert_allclose(f(params, y[:1], True), out[:1], rtol=1e-5, atol=1e-6)
  d = nnx.eval_shape(ctor)
  with pytest.raises(ValueError, match='in_channels=0'):
    d(jnp.zeros((2, 16, 16, 1)), jnp.zeros((2, 16, 16, 3)))


SIZE, BATCH = 8, 2


def _tiny(**kw):
  args = dict(width=2, num_blocks=1, d_width=2, history_size=3, hold_steps=1, decay_steps=2)
  return create_cyclegan(SIZE, 1, seed=3, **{**args, **kw})


def _batches(k):
  rng = np.random.default_rng([7, k])
  return tuple(rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 1)).astype(np.float32) for _ in range(2))


@pytest.fixture(scope='module')
def tiny_run():
  """Three steps of a tiny CycleGAN (one compilation); every state and metrics dict."""
  model, state = _tiny()
  step = make_train_step(model, donate=False)
  states, metrics = [state], []
  for k in range(3):
    state, m = step(state, *_batches(k))
    states.append(state)
    metrics.append({key: float(v) for key, v in m.items()})
  return model, step, states, metrics


def test_first_step_losses_by_hand(tiny_run):
  """Step 0's reported terms against numpy on the generators' and discriminators' outputs
  (the histories are empty, so D sees this step's fakes)."""
  model, _, states, metrics = tiny_run
  s0, m = states[0], metrics[0]
  a, b = _batches(0)
  g, d = s0.g_params, s0.d_params

  @jax.jit
  def outputs(g, d):
    fb, fa = model.translate(g, 'a2b', a), model.translate(g, 'b2a', b)
    return dict(
      fb=fb,
      fa=fa,
      ra=model.translate(g, 'b2a', fb),
      rb=model.translate(g, 'a2b', fa),
      ia=model.translate(g, 'b2a', a),
      ib=model.translate(g, 'a2b', b),
      db_fake=model.discriminate(d, 'b', fb),
      da_fake=model.discriminate(d, 'a', fa),
      db_real=model.discriminate(d, 'b', b),
      da_real=model.discriminate(d, 'a', a),
    )

  o = {k: np.asarray(v, np.float64) for k, v in outputs(g, d).items()}
  hand = {
    'g_adv_a2b': np.mean((o['db_fake'] - 1) ** 2),
    'g_adv_b2a': np.mean((o['da_fake'] - 1) ** 2),
    'cycle_a': np.mean(np.abs(o['ra'] - a)),
    'cycle_b': np.mean(np.abs(o['rb'] - b)),
    'identity_a': np.mean(np.abs(o['ia'] - a)),
    'identity_b': np.mean(np.abs(o['ib'] - b)),
    'd_loss_a': 0.5 * (np.mean((o['da_real'] - 1) ** 2) + np.mean(o['da_fake'] ** 2)),
    'd_loss_b': 0.5 * (np.mean((o['db_real'] - 1) ** 2) + np.mean(o['db_fake'] ** 2)),
  }
  for key, want in hand.items():
    np.testing.assert_allclose(m[key], want, rtol=2e-5, atol=1e-7, err_msg=key)
  adv = hand['g_adv_a2b'] + hand['g_adv_b2a']
  # lambda = 10 on the cycle terms, 0.5 lambda = 5 on the identity terms.
  want_g = (
    adv + 10 * (hand['cycle_a'] + hand['cycle_b']) + 5 * (hand['identity_a'] + hand['identity_b'])
  )
  np.testing.assert_allclose(m['g_loss'], want_g, rtol=2e-5)
  np.testing.assert_allclose(m['d_loss'], hand['d_loss_a'] + hand['d_loss_b'], rtol=2e-5)
  # The histories took the first fakes unchanged.
  np.testing.assert_allclose(states[1].history['b'].images[:BATCH], o['fb'], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(states[1].history['a'].images[:BATCH], o['fa'], rtol=1e-6, atol=1e-7)

  # Other weights: the total follows them, and identity_ratio = 0 drops the identity terms.
  other = dataclasses.replace(model, cycle_weight=3.0, identity_ratio=0.0)
  total, (terms, _, _) = jax.jit(lambda g, d: generator_loss(other, g, d, a, b))(g, d)
  assert 'identity_a' not in terms and 'identity_b' not in terms
  np.testing.assert_allclose(float(total), adv + 3 * (hand['cycle_a'] + hand['cycle_b']), rtol=2e-5)


def test_tiny_training_is_finite_and_resumes_bit_exactly(tiny_run, tmp_path):
  model, step, states, metrics = tiny_run
  for m in metrics:
    assert all(np.isfinite(v) for v in m.values()), m
  # lr held for 1 step, then linear to 0 over 2: 2e-4, 2e-4, 1e-4.
  np.testing.assert_allclose([m['lr'] for m in metrics], [2e-4, 2e-4, 1e-4], rtol=1e-6)
  # History of 3 with batches of 2: filled after the second step.
  assert [int(s.history['a'].count) for s in states] == [0, 2, 3, 3]
  assert not np.array_equal(
    states[3].g_params['a2b']['head']['kernel'], states[0].g_params['a2b']['head']['kernel']
  )

  with Checkpointer(str(tmp_path), keep=1) as ckpt:
    assert ckpt.save(states[2]) == 2
  _, fresh = _tiny()  # a new process would start from here
  with Checkpointer(str(tmp_path), keep=1) as ckpt:
    restored = ckpt.restore(fresh)
  resumed, _ = step(restored, *_batches(2))
  flat_a = jax.tree_util.tree_flatten_with_path(states[3])[0]
  flat_b = jax.tree_util.tree_flatten_with_path(resumed)[0]
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))

  out = translate_batches(model, states[3], _batches(0)[0], 'a2b', batch_size=1)
  assert out.shape == (BATCH, SIZE, SIZE, 1) and np.all(np.abs(out) <= 1)


def test_data_parallel_step_matches_one_device():
  """The step on a mesh of 2 CPU devices (batch split in two) equals the unsharded step up
  to float rounding, histories included."""
  code = textwrap.dedent(
    f"""
    import jax, numpy as np
    from gan_jax.core.sharding import make_mesh, replicate
    from gan_jax.translation.cyclegan import create_cyclegan, make_train_step
    assert jax.device_count() == 2
    model, state = create_cyclegan({SIZE}, 1, seed=3, width=2, num_blocks=1, d_width=2,
                                   history_size=3)
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(-1, 1, (4, {SIZE}, {SIZE}, 1)).astype(np.float32) for _ in range(2))
    one, _ = make_train_step(model, donate=False)(state, a, b)
    mesh = make_mesh()
    two, _ = make_train_step(model, mesh=mesh, donate=False)(replicate(state, mesh), a, b)
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(one)[0], jax.tree.leaves(two)):
      x, y, name = np.asarray(x), np.asarray(y), jax.tree_util.keystr(path)
      # Adam's moments are the gradients, which InstanceNorm over 2x2 maps makes
      # ill-conditioned: rounding differences of up to 2.7e-5 x the leaf's largest |value|
      # on an AVX2 machine; the parameters (step 1 moves each by lr x sign) agree closely.
      atol = 1e-3 * float(np.abs(x).max()) if 'opt_state' in name else 1e-6
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol, err_msg=name)
    try:
      make_train_step(model, mesh=mesh)(replicate(state, mesh), a[:3], b[:3])
    except ValueError as err:
      assert 'multiple of the 2 devices' in str(err), err
    else:
      raise AssertionError('odd batch accepted')
    print('OK')
    """
  )
  res = run_python(code, {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  assert res.returncode == 0 and 'OK' in res.stdout, res.stderr[-3000:]


def test_unpaired_metrics_against_closed_forms():
  # A stand-in feature net: features = the first 4 pixels, logits = [pixel 0, 0]: class 0
  # when pixel 0 > 0.
  def apply(x):
    flat = jnp.reshape(x, (x.shape[0], -1))
    return flat[:, :4], jnp.stack([flat[:, 0], jnp.zeros_like(flat[:, 0])], axis=-1)

  net = FeatureNet('toy', 'toy', '0', 4, 2, (2, 2, 1), apply)
  x = np.random.default_rng(0).normal(size=(300, 2, 2, 1)).astype(np.float32)
  assert class_fraction(net, x, 0) == pytest.approx(np.mean(x[:, 0, 0, 0] > 0))
  assert mean_l1(x, x.mean(axis=0)) == pytest.approx(np.mean(np.abs(x - x.mean(axis=0))), rel=1e-6)
  # Equal covariances, means 0.5 apart in each of 4 features: FID = 4 * 0.25 = 1.
  assert feature_fid(net, x, x) == pytest.approx(0.0, abs=1e-6)
  assert feature_fid(net, x + 0.5, x) == pytest.approx(1.0, rel=1e-4)
  assert feature_fid(net, x[:4], x) is None  # 4 images for 4 features: no covariance


@needs_data
def test_sneakers_boots_task_is_deterministic_and_from_disjoint_halves():
  import tensorflow_datasets as tfds

  task = build_unpaired_task(data_dir=DATA_DIR, num_train=5, num_test=3)
  assert task.train_a.shape == task.train_b.shape == (5, 28, 28, 1)
  assert task.test_a.shape == task.test_b.shape == (3, 28, 28, 1)
  # Independently: TFDS itself, each class from its half of 'train'.
  for split, label, got in (
    ('train[:50%]', 7, task.train_a),
    ('train[50%:]', 9, task.train_b),
    ('test', 9, task.test_b),
  ):
    ds = tfds.load('fashion_mnist', split=split, data_dir=DATA_DIR, shuffle_files=False)
    ds = ds.filter(lambda e, label=label: e['label'] == label).take(len(got))
    want = [e['image'] for e in tfds.as_numpy(ds)]
    np.testing.assert_array_equal(got, np.stack(want).astype(np.float32) / 127.5 - 1.0)
  again = build_unpaired_task(data_dir=DATA_DIR, num_train=5, num_test=3)
  np.testing.assert_array_equal(again.train_b, task.train_b)


def test_one_line_value_errors():
  model, _ = _tiny()
  cases = [
    lambda: create_cyclegan(30, 1),
    lambda: create_cyclegan(8, 1, 3, width=2, num_blocks=0, d_width=2),
    lambda: create_cyclegan(8, 1, cycle_weight=-1.0),
    lambda: create_cyclegan(8, 1, history_size=-1),
    lambda: create_cyclegan(8, 1, hold_steps=5, decay_steps=0),
    lambda: check_batch(model, np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 1))),
    lambda: check_batch(model, np.zeros((2, 8, 8, 1)), np.zeros((3, 8, 8, 1))),
    lambda: translate_batches(model, None, np.zeros((1, 8, 8, 1)), 'ab'),
    lambda: translate_batches(model, None, np.zeros((1, 9, 9, 1)), 'a2b'),
    lambda: build_unpaired_task('horse2zebra'),
    lambda: build_unpaired_task(num_train=0),
    lambda: PatchGANDiscriminator(16, 0, 1, norm='group', rngs=nnx.Rngs(0)),
  ]
  for case in cases:
    with pytest.raises(ValueError) as err:
      case()
    assert '\n' not in str(err.value), str(err.value)
