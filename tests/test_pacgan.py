"""PacGAN packing and the minibatch-stddev layer of the DCGAN discriminators.

Packing (Lin et al. 2018, section 3) concatenates consecutive images along channels and
gives one logit per pack; minibatch stddev (Karras et al. 2018, section 3) appends the
group's average feature standard deviation as one feature map. Both are checked against
hand computations, through one jitted train step, and in `config.validate`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gan_jax import config as config_lib
from gan_jax import models
from gan_jax.core.losses import get_loss
from gan_jax.core.sharding import batch_sharding, make_mesh, replicate
from gan_jax.core.state import create_state
from gan_jax.core.train_step import Stabilizers, jit_train_step, make_train_step

from conftest import load_experiment


def _images(b, shape=(28, 28, 3), seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (b, *shape)), jnp.float32)


# --- packing -------------------------------------------------------------------------------


def test_pack_images_puts_image_i_of_pack_j_in_channels_i_c_to_i_c_plus_c():
  x = _images(6, (5, 4, 3))
  p = np.asarray(models.pack_images(x, 3))
  assert p.shape == (2, 5, 4, 9)
  for j in range(2):
    for i in range(3):
      for c in range(3):
        np.testing.assert_array_equal(p[j, :, :, i * 3 + c], np.asarray(x)[j * 3 + i, :, :, c])
  # Pack 1 is the concatenation of images 3, 4 and 5.
  np.testing.assert_array_equal(p[1], np.concatenate([x[3], x[4], x[5]], axis=-1))
  assert models.pack_images(x, 1) is x


def test_packing_then_first_conv_is_the_conv_of_the_concatenation():
  d = models.DCGAN28Discriminator((28, 28, 3), width=8, pack=2, rngs=nnx.Rngs(0))
  assert d.conv1.kernel.shape == (4, 4, 6, 8)  # m * C input channels
  x = _images(4)
  packed = d.conv1(models.pack_images(x, 2))
  concat = jnp.stack([jnp.concatenate([x[0], x[1]], -1), jnp.concatenate([x[2], x[3]], -1)])
  np.testing.assert_allclose(packed, d.conv1(concat), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('kind', ['dcgan28', 'dcgan'])
def test_packed_d_equals_an_unpacked_d_on_the_concatenated_packs(kind):
  if kind == 'dcgan28':
    shape, cls = (28, 28, 3), models.DCGAN28Discriminator
  else:
    shape, cls = (8, 8, 3), models.DCGANDiscriminator
  packed = cls(shape, width=8, pack=2, rngs=nnx.Rngs(0))
  plain = cls(shape[:2] + (6,), width=8, rngs=nnx.Rngs(1))
  nnx.update(plain, nnx.state(packed))  # same parameter shapes: the first conv takes 6 channels
  x = _images(8, shape)
  concat = jnp.concatenate([x[0::2], x[1::2]], axis=-1)  # pack j = images 2j, 2j + 1
  out = packed(x, train=False)
  assert out.shape == (4,) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, plain(concat, train=False), rtol=1e-5, atol=1e-6)


def test_logit_count_is_batch_over_pack_and_a_bad_batch_is_a_clear_error():
  d = models.DCGANDiscriminator((8, 8, 3), width=8, pack=4, rngs=nnx.Rngs(0))
  assert d.first.kernel.shape[2] == 12
  assert d(_images(8, (8, 8, 3))).shape == (2,)
  with pytest.raises(ValueError, match=r'model\.pack=4 .*batch of 6 images'):
    d(_images(6, (8, 8, 3)))
  with pytest.raises(ValueError, match=r'model\.pack=0'):
    models.DCGAN28Discriminator((28, 28, 1), pack=0, rngs=nnx.Rngs(0))


# --- minibatch standard deviation ----------------------------------------------------------


def _numpy_mbstd(x, group):
  x = np.asarray(x, np.float64)
  g = min(group, len(x))
  out = []
  for k in range(len(x) // g):
    grp = x[k * g : (k + 1) * g]
    s = np.sqrt(grp.var(axis=0) + 1e-8).mean()  # population variance per feature and pixel
    out += [np.concatenate([xi, np.full(xi.shape[:-1] + (1,), s)], -1) for xi in grp]
  return np.stack(out)


def test_minibatch_stddev_matches_numpy_on_a_hand_made_batch():
  x = np.zeros((4, 2, 2, 2), np.float32)
  x[1] = 2.0  # group (0, 1): per-feature std 1 everywhere
  x[2, 0, 0, 0], x[3, 0, 0, 0] = 4.0, -4.0  # group (2, 3): std 4 at one of 8 features
  y = np.asarray(models.minibatch_stddev(jnp.asarray(x), 2))
  assert y.shape == (4, 2, 2, 3) and y.dtype == np.float32
  np.testing.assert_array_equal(y[..., :2], x)
  np.testing.assert_allclose(y[:2, ..., 2], 1.0, rtol=1e-6)
  np.testing.assert_allclose(y[2:, ..., 2], (4.0 + 7 * 1e-4) / 8, rtol=1e-5)
  r = _images(6, (3, 3, 5), seed=1)
  np.testing.assert_allclose(models.minibatch_stddev(r, 3), _numpy_mbstd(r, 3), rtol=1e-5)
  # Group size above the batch: one group of the whole batch (min(G, B)).
  np.testing.assert_allclose(models.minibatch_stddev(r, 8), _numpy_mbstd(r, 6), rtol=1e-5)
  with pytest.raises(ValueError, match='batch of 6'):
    models.minibatch_stddev(r, 4)
  with pytest.raises(ValueError, match='>= 1'):
    models.minibatch_stddev(r, 0)


@pytest.mark.parametrize('mbstd', [4, 0])
def test_minibatch_stddev_couples_the_samples_of_a_group(mbstd):
  # spectral_norm=True: no BatchNorm, so without the layer D treats samples independently.
  d = models.DCGAN28Discriminator(
    (28, 28, 1), width=8, spectral_norm=True, minibatch_std=mbstd, rngs=nnx.Rngs(0)
  )
  assert d.fc.layer.kernel.shape[0] == 7 * 7 * (16 + (1 if mbstd else 0))
  x = _images(4, (28, 28, 1))
  y = x.at[1].set(jnp.clip(x[1] * 3.0 + 0.5, -1, 1))
  a, b = np.asarray(d(x, train=False)), np.asarray(d(y, train=False))
  if mbstd:
    assert abs(a[0] - b[0]) > 1e-5
  else:
    np.testing.assert_allclose(a[[0, 2, 3]], b[[0, 2, 3]], rtol=1e-6, atol=1e-7)
  assert abs(a[1] - b[1]) > 1e-5


def test_with_packing_the_stddev_acts_on_packs():
  d = models.DCGANDiscriminator((8, 8, 1), width=4, pack=2, minibatch_std=2, rngs=nnx.Rngs(0))
  assert d(_images(8, (8, 8, 1))).shape == (4,)  # 4 packs, 2 groups of 2 packs
  with pytest.raises(ValueError, match=r'model\.minibatch_std=4 .*batch of 6'):
    models.DCGANDiscriminator((8, 8, 1), width=4, pack=2, minibatch_std=4, rngs=nnx.Rngs(0))(
      _images(12, (8, 8, 1))
    )


# --- through the train step ----------------------------------------------------------------


@pytest.mark.parametrize(
  'name,pack,mbstd,sn',
  [('dcgan28', 2, 0, False), ('dcgan28', 1, 4, True), ('dcgan', 2, 2, False)],
)
def test_one_jitted_train_step_is_finite(name, pack, mbstd, sn):
  c = config_lib.base_config()
  c.model.name = name
  c.model.g_width = c.model.d_width = 8
  c.model.pack, c.model.minibatch_std, c.model.spectral_norm = pack, mbstd, sn
  c.train.batch_size = 8
  if name == 'dcgan':
    c.data.image_size, c.data.channels = 8, 3
  config_lib.validate(c)
  gan, state = create_state(c)
  first = state.d_params['conv1' if name == 'dcgan28' else 'first']
  kernel = first['layer']['kernel'] if sn else first['kernel']
  assert kernel.shape[2] == pack * c.data.channels
  mesh = make_mesh()
  fn = make_train_step(
    gan, get_loss(c.train.loss), ema_decay=0.999, stabilizers=Stabilizers.from_config(c.train)
  )
  step = jit_train_step(fn, mesh, donate=False)
  shape = (1, 8, c.data.image_size, c.data.image_size, c.data.channels)
  batch = {'image': np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)}
  new, metrics = step(replicate(state, mesh), jax.device_put(batch, batch_sharding(mesh)))
  metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
  assert int(new.step) == 1
  assert all(np.isfinite(v) for v in metrics.values()), metrics
  assert 0 <= metrics['d_real'] <= 1 and 0 <= metrics['d_fake'] <= 1


# --- config --------------------------------------------------------------------------------


def test_the_pacgan_experiment_is_the_dcgan_one_with_pack_2():
  pac, dc = load_experiment('stacked_mnist_pacgan'), load_experiment('stacked_mnist_dcgan')
  assert pac.model.pack == 2 and dc.model.pack == 1
  with pac.unlocked():
    pac.model.pack = 1
  assert pac.to_dict() == dc.to_dict()
  tiny = load_experiment('stacked_mnist_pacgan', 'tiny')
  assert tiny.model.pack == 2 and tiny.train.batch_size % 2 == 0


def _bad(name='dcgan28', image_size=28, **fields):
  c = config_lib.base_config()
  c.model.name, c.data.image_size = name, image_size
  if name != 'dcgan28':
    c.data.channels = 3
  for key, value in fields.items():
    section, field = key.split('__')
    c[section][field] = value
  return c


@pytest.mark.parametrize(
  'fields,expected',
  [
    (dict(model__pack=0), ['model.pack=0']),
    (dict(model__minibatch_std=-1), ['model.minibatch_std=-1']),
    (dict(model__pack=3), ['train.batch_size=64', 'model.pack=3']),
    (dict(model__pack=2, train__gp_weight=10.0), ['model.pack=2', 'train.gp_weight', 'per image']),
    (dict(model__pack=2, train__r1_weight=1.0), ['model.pack=2', 'train.r1_weight', 'per image']),
    (dict(model__pack=2, train__r2_weight=1.0), ['model.pack=2', 'train.r2_weight', 'per image']),
    (dict(model__minibatch_std=3), ['model.minibatch_std=3', 'train.batch_size']),
    (dict(model__pack=4, model__minibatch_std=3), ['model.minibatch_std=3', '= 16']),
    (dict(name='mlp', model__pack=2), ['model.pack=2', '"mlp" does not support']),
    (dict(name='mlp', model__minibatch_std=4), ['model.minibatch_std=4', '"mlp"']),
    (dict(name='sngan32', image_size=32, model__pack=2), ['model.pack=2', '"sngan32"']),
    (dict(name='sngan32', image_size=32, model__minibatch_std=4), ['model.minibatch_std=4']),
  ],
)
def test_validate_rejects_each_bad_combination(fields, expected):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(_bad(**fields))
  message = str(e.value)
  assert all(s in message for s in expected), message
  assert '\n' not in message


@pytest.mark.parametrize(
  'fields',
  [
    dict(model__pack=2, model__minibatch_std=4),
    dict(model__pack=64),  # one pack of the whole batch
    dict(model__minibatch_std=4, train__batch_size=2),  # min(G, B) = 2
    dict(model__minibatch_std=4, train__r1_weight=1.0),  # one logit per image: allowed
    dict(name='dcgan', image_size=32, model__pack=4, model__minibatch_std=4),
  ],
)
def test_validate_accepts_good_combinations(fields):
  config_lib.validate(_bad(**fields))
