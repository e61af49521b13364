"""Latent-space tools (gan_jax.latent) and `gan-jax edit`: interpolation, inversion,
InterFaceGAN directions, conditional manipulation, the 64x64x3 path and the command line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gan_jax import latent as E
from gan_jax.cli import main as cli
from gan_jax.core.sampling import to_uint8

from conftest import load_experiment


def _scaled(state, scale):
  """The EMA G's kernels times `scale`: at the N(0, 0.02) initialisation a DCGAN's images are
  ~0 everywhere; x6-x8 gives images with a standard deviation of ~0.45 in [-1, 1]."""

  def up(path, a):
    return a * scale if 'kernel' in jax.tree_util.keystr(path) else a

  return state.replace(ema_params=jax.tree_util.tree_map_with_path(up, state.ema_params))


def _random_generator(image_shape, latent_dim=100, width=8, scale=8.0):
  """A random DCGAN generator of gan_jax.models (DCGAN-28 for 28x28, else Radford et al.'s)
  for `image_shape`, width 8 as in the `:tiny` configs, without D. Its weights are drawn with
  numpy as the model's N(0, 0.02) initialiser would (JAX's RNG compiles slowly on a busy CPU:
  10 s for these models, eagerly or jitted), then scaled (`_scaled`)."""
  from flax import nnx

  from gan_jax.models.dcgan import DCGAN28Generator, DCGANGenerator
  from gan_jax.core.state import GAN, GANState

  cls = DCGAN28Generator if tuple(image_shape[:2]) == (28, 28) else DCGANGenerator
  abstract = nnx.eval_shape(lambda: cls(image_shape, latent_dim, width, rngs=nnx.Rngs(0)))
  graphdef, params, stats = nnx.split(abstract, nnx.Param, ...)
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'kernel' in name:
      return jnp.asarray(rng.normal(0.0, 0.02, leaf.shape), jnp.float32)
    return jnp.full(leaf.shape, 1.0 if ('scale' in name or 'var' in name) else 0.0, jnp.float32)

  params = jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(params))
  stats = jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(stats))
  gan = GAN(graphdef, None, None, None, latent_dim, tuple(image_shape))
  state = GANState(
    step=jnp.zeros((), jnp.int32), rng=jax.random.PRNGKey(0), g_params=params,
    g_batch_stats=stats, d_params={}, d_batch_stats={}, g_opt_state={}, d_opt_state={},
    ema_params=params,
  )  # fmt: skip
  return gan, _scaled(state, scale)


@pytest.fixture(scope='module')
def tiny():
  return _random_generator((28, 28, 1))


# --- interpolation ---------------------------------------------------------------------------


def test_slerp_endpoints_constant_norm_and_lerp_limit():
  k0, k1 = jax.random.split(jax.random.key(0))
  z0 = jax.random.normal(k0, (5, 16))
  z1 = jax.random.normal(k1, (5, 16))
  t = jnp.linspace(0.0, 1.0, 9)
  path = E.slerp(z0[:, None], z1[:, None], t)
  assert path.shape == (5, 9, 16)
  np.testing.assert_allclose(path[:, 0], z0, atol=1e-5)
  np.testing.assert_allclose(path[:, -1], z1, atol=1e-5)
  # Equal-norm endpoints: the norm stays constant, and this is Shoemake's formula.
  z1e = z1 * (jnp.linalg.norm(z0, axis=-1) / jnp.linalg.norm(z1, axis=-1))[:, None]
  eq = E.slerp(z0[:, None], z1e[:, None], t)
  np.testing.assert_allclose(
    jnp.linalg.norm(eq, axis=-1), jnp.broadcast_to(jnp.linalg.norm(z0, axis=-1)[:, None], (5, 9)),
    rtol=1e-5,
  )  # fmt: skip
  cos = jnp.sum(z0 * z1e, -1) / jnp.sum(z0 * z0, -1)
  w = jnp.arccos(cos)[:, None, None]
  tt = t[None, :, None]
  shoemake = (jnp.sin((1 - tt) * w) * z0[:, None] + jnp.sin(tt * w) * z1e[:, None]) / jnp.sin(w)
  np.testing.assert_allclose(eq, shoemake, atol=1e-4)
  # Nearly parallel (and exactly parallel, different norms): the same as lerp.
  near = 2.0 * z0 + 1e-4 * z1
  np.testing.assert_allclose(
    E.slerp(z0[:, None], near[:, None], t), E.lerp(z0[:, None], near[:, None], t), atol=1e-4
  )
  np.testing.assert_allclose(E.slerp(z0, 3.0 * z0, 0.5), 2.0 * z0, rtol=1e-5)


def test_slerp_antiparallel_and_zero_endpoints():
  z0 = jnp.array([3.0, 4.0, 0.0])
  path = E.slerp(z0, -z0, jnp.linspace(0.0, 1.0, 5))
  np.testing.assert_allclose(jnp.linalg.norm(path, axis=-1), 5.0, rtol=1e-5)  # never via 0
  np.testing.assert_allclose(path[0], z0, atol=1e-5)
  np.testing.assert_allclose(path[-1], -z0, atol=1e-5)
  assert abs(float(jnp.dot(path[2], z0))) < 1e-4  # halfway: orthogonal to both ends
  np.testing.assert_allclose(E.slerp(jnp.zeros(3), z0, 0.25), 0.25 * z0, atol=1e-6)
  assert np.isfinite(np.asarray(E.slerp(z0, -2.0 * z0, jnp.linspace(0, 1, 7)))).all()


def _slerp_prefix_np(z0, z1, t, eps=1e-7):
  """The pre-fix slerp formula (before the antiparallel fix), in float64 numpy."""
  z0, z1 = np.broadcast_arrays(np.float64(z0), np.float64(z1))
  t = np.asarray(t, np.float64)[..., None]
  r0 = np.linalg.norm(z0, axis=-1, keepdims=True)
  r1 = np.linalg.norm(z1, axis=-1, keepdims=True)
  u, w = z0 / r0, z1 / r1
  cos = np.clip(np.sum(u * w, -1, keepdims=True), -1.0, 1.0)
  perp = w - cos * u
  sin = np.linalg.norm(perp, axis=-1, keepdims=True)
  assert (sin > eps).all()  # only ordinary endpoints here
  omega = np.arctan2(sin, cos)
  return ((1 - t) * r0 + t * r1) * (np.cos(t * omega) * u + np.sin(t * omega) * perp / sin)


def _antiparallel_path_np(z0, z1, t):
  """The documented antiparallel path in float64 numpy: radius (cos(t pi) u + sin(t pi) v),
  v the coordinate axis least aligned with u, made orthogonal to u and normalised."""
  z0, z1 = np.float64(z0), np.float64(z1)
  t = np.asarray(t, np.float64)[:, None]
  r0, r1 = np.linalg.norm(z0), np.linalg.norm(z1)
  u = z0 / r0
  v = np.eye(u.size)[np.argmin(np.abs(u))]
  v = v - (v @ u) * u
  v /= np.linalg.norm(v)
  return ((1 - t) * r0 + t * r1) * (np.cos(t * np.pi) * u + np.sin(t * np.pi) * v)


@pytest.mark.parametrize('d', [2, 8, 128])
@pytest.mark.parametrize('scale', [-1.0, -2.5, -0.05])
def test_slerp_antiparallel_random_endpoints_keep_their_norm(d, scale):
  # Non-axis-aligned endpoints: float32 rounding leaves sin(angle) ~ 1e-7 of pure noise,
  # which the pre-fix code took for a direction (its path dipped towards the origin).
  rng = np.random.default_rng(d)
  t = np.linspace(0.0, 1.0, 11)
  for _ in range(8):
    z0 = (rng.normal(size=d) * rng.uniform(0.1, 10.0)).astype(np.float32)
    z1 = (scale * z0).astype(np.float32)
    path = np.asarray(E.slerp(z0, z1, t), np.float64)
    r0, r1 = np.linalg.norm(np.float64(z0)), np.linalg.norm(np.float64(z1))
    radius = (1 - t) * r0 + t * r1
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), radius, rtol=1e-5)
    assert np.linalg.norm(path, axis=-1).min() >= 0.999 * min(r0, r1)  # never near 0
    np.testing.assert_allclose(path[0], z0, atol=1e-5 * r0)
    np.testing.assert_allclose(path[-1], z1, atol=1e-5 * r1)
    np.testing.assert_allclose(path, _antiparallel_path_np(z0, z1, t), atol=1e-5 * max(r0, r1))


def test_slerp_ordinary_endpoints_unchanged_by_the_antiparallel_fix():
  rng = np.random.default_rng(3)
  z0 = rng.normal(size=(6, 1, 32)).astype(np.float32)
  z1 = (rng.normal(size=(6, 1, 32)) * rng.uniform(0.2, 5.0, size=(6, 1, 1))).astype(np.float32)
  z1[0] = -z0[0] + 0.05 * z1[0]  # close to antiparallel, but a real direction
  t = np.linspace(-0.25, 1.25, 13)
  np.testing.assert_allclose(E.slerp(z0, z1, t), _slerp_prefix_np(z0, z1, t), atol=1e-5, rtol=1e-5)


def test_interpolation_grid_and_png(tiny, tmp_path):
  gan, state = tiny
  k = jax.random.key(1)
  grid = E.interpolation_grid(gan, state, k, steps=5, rows=3)
  assert grid.shape == (3, 5, 28, 28, 1) and grid.dtype == jnp.float32
  assert float(jnp.abs(grid).max()) <= 1.0
  z = gan.sample_latents(k, 6).reshape(3, 2, gan.latent_dim)
  np.testing.assert_allclose(grid[:, 0], E.generate(gan, state, z[:, 0]), atol=1e-5)
  np.testing.assert_allclose(grid[:, -1], E.generate(gan, state, z[:, 1]), atol=1e-5)
  lin = E.interpolation_grid(gan, state, (z[:, 0], z[:, 1]), steps=5, method='lerp')
  np.testing.assert_allclose(lin[:, 0], grid[:, 0], atol=1e-5)
  keys = jax.random.split(k, 3)  # one pair per key
  per_key = E.interpolation_grid(gan, state, keys, steps=5)
  np.testing.assert_allclose(
    per_key[1, -1], E.generate(gan, state, gan.sample_latents(keys[1], 2))[1], atol=1e-5
  )
  path = E.save_interpolation_grid(str(tmp_path / 'interp.png'), grid, scale=1)
  assert Image.open(path).size == (5 * 30 + 2, 3 * 30 + 2)
  with pytest.raises(ValueError, match='method'):
    E.interpolation_grid(gan, state, k, method='cubic')


# --- inversion -------------------------------------------------------------------------------


def test_inversion_recovers_generated_images_and_restarts_never_hurt(tiny):
  gan, state = tiny
  z_star = jax.random.normal(jax.random.key(1), (4, gan.latent_dim))
  x = np.asarray(E.generate(gan, state, z_star))
  z_rand = jax.random.normal(jax.random.key(2), (4, gan.latent_dim))
  random_mse = np.mean((np.asarray(E.generate(gan, state, z_rand)) - x) ** 2, axis=(1, 2, 3))
  kw = dict(key=jax.random.key(3), steps=100, latent_reg=None)
  one = E.invert(gan, state, x, restarts=1, **kw)
  four = E.invert(gan, state, x, restarts=4, **kw)
  assert one.z.shape == (4, gan.latent_dim) and one.images.shape == x.shape
  assert four.restart_loss.shape == (4, 4)
  # Far below the error of a random latent (measured: < 2% of it).
  assert np.all(one.mse < 0.1 * random_mse), (one.mse, random_mse)
  assert np.all(four.mse < 0.1 * random_mse)
  # Same key: the first start is the same, the others only add candidates.
  np.testing.assert_allclose(four.restart_loss[:, 0], one.restart_loss[:, 0], rtol=1e-3, atol=1e-7)
  np.testing.assert_allclose(four.loss, four.restart_loss.min(axis=1))
  assert np.all(four.loss <= one.loss * (1 + 1e-3) + 1e-7)
  # Without a feature term or latent penalty the objective is the pixel MSE of G(z).
  np.testing.assert_allclose(four.loss, four.mse, rtol=1e-4, atol=1e-7)
  recon = np.asarray(E.generate(gan, state, four.z))
  np.testing.assert_allclose(recon, four.images, atol=1e-5)


def test_inversion_options_and_errors(tiny):
  gan, state = tiny
  x = np.asarray(E.generate(gan, state, jax.random.normal(jax.random.key(4), (3, 100))))
  sphere = E.invert(gan, state, x, key=jax.random.key(0), steps=5, restarts=2, batch_size=2,
                    latent_reg='sphere')  # fmt: skip
  np.testing.assert_allclose(np.linalg.norm(sphere.z, axis=1), 10.0, rtol=1e-4)
  assert sphere.z.shape == (3, 100)  # 2 chunks, the last one padded
  with pytest.raises(ValueError, match=r'images must be \[N, 28, 28, 1\]'):
    E.invert(gan, state, x[..., 0], key=jax.random.key(0))
  with pytest.raises(ValueError, match='float'):
    E.invert(gan, state, to_uint8(x), key=jax.random.key(0))
  with pytest.raises(ValueError, match='one z'):
    E.invert(gan, state, x, key=jax.random.key(0), per_layer=True)
  with pytest.raises(ValueError, match='latent_reg'):
    E.invert(gan, state, x, key=jax.random.key(0), latent_reg='l1')


# --- directions, edits, conditional manipulation -----------------------------------------------


def _planted(d=32, n=2000, seed=0):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=d)
  w /= np.linalg.norm(w)
  z = rng.normal(size=(n, d)).astype(np.float32)
  return w, z


@pytest.mark.parametrize('method', E.METHODS)
def test_fit_direction_recovers_a_planted_linear_attribute(method):
  w, z = _planted()
  binary = np.sign(z @ w)
  direction = E.fit_direction(z, binary, method)
  assert direction.shape == (32,) and abs(np.linalg.norm(direction) - 1) < 1e-5
  assert direction @ w > 0.9, direction @ w
  # Continuous scores (top/bottom 20% kept) and a rare class (10% positives) work too.
  assert E.fit_direction(z, z @ w, method) @ w > 0.9
  rare = (z @ w > np.quantile(z @ w, 0.9)).astype(np.float32)
  assert E.fit_direction(z, rare, method) @ w > 0.9


def test_fit_direction_errors():
  w, z = _planted(n=50)
  with pytest.raises(ValueError, match='only negative'):
    E.fit_direction(z, np.zeros(50), 'svm')
  with pytest.raises(ValueError, match='method'):
    E.fit_direction(z, np.sign(z @ w), 'pca')
  with pytest.raises(ValueError, match='shapes'):
    E.fit_direction(z, np.sign(z @ w)[:10], 'svm')


def test_edit_moves_a_planted_attribute_monotonically():
  w, z = _planted(n=64)
  direction = E.fit_direction(z, np.sign(z @ w), 'logistic')
  strengths = jnp.linspace(-3.0, 3.0, 7)
  edited = E.edit(z[:, None], direction, strengths)
  assert edited.shape == (64, 7, 32)
  score = np.asarray(edited) @ w
  assert np.all(np.diff(score, axis=1) > 0)
  np.testing.assert_allclose(edited[:, 3], z, atol=1e-6)  # strength 0


def test_orthogonalize():
  rng = np.random.default_rng(1)
  n, others = rng.normal(size=16), rng.normal(size=(3, 16))
  r = E.orthogonalize(n, others)
  assert abs(np.linalg.norm(r) - 1) < 1e-5
  np.testing.assert_allclose(others @ r, 0.0, atol=1e-5)
  assert r @ n > 0
  # Already orthogonal: unchanged (a unit input stays itself).
  q, _ = np.linalg.qr(rng.normal(size=(16, 4)))
  np.testing.assert_allclose(E.orthogonalize(q[:, 0], q[:, 1:].T), q[:, 0], atol=1e-6)
  # Linearly dependent others (rank 1) and a single other as [d].
  r1 = E.orthogonalize(n, np.stack([others[0], 2 * others[0]]))
  np.testing.assert_allclose(r1, E.orthogonalize(n, others[0]), atol=1e-5)
  # Editing along r holds the other attributes' linear scores.
  z = rng.normal(size=(8, 16))
  np.testing.assert_allclose(np.asarray(E.edit(z, r, 2.0)) @ others.T, z @ others.T, atol=1e-4)
  with pytest.raises(ValueError, match='span'):
    E.orthogonalize(others[0] + others[1], others)


def test_attribute_functions():
  images = jnp.stack([-jnp.ones((28, 28, 1)), jnp.ones((28, 28, 1)), jnp.zeros((28, 28, 1))])
  np.testing.assert_allclose(E.ink_mass(images), [0.0, 1.0, 0.5])

  def logits(x):  # a fake 3-class classifier: class 1 for inked images
    ink = E.ink_mass(x)
    return jnp.stack([-ink, 4 * ink - 1, jnp.zeros_like(ink)], axis=-1)

  prob = E.class_attribute(logits, 1)(images)
  assert prob.shape == (3,) and np.all((prob >= 0) & (prob <= 1)) and prob[1] > prob[0]
  np.testing.assert_array_equal(E.class_attribute(logits, 1, 'decision')(images), [0, 1, 1])
  lo = E.class_attribute(logits, 1, 'log_odds')(images)
  np.testing.assert_allclose(jax.nn.sigmoid(lo), prob, rtol=1e-5)
  with pytest.raises(ValueError, match='kind'):
    E.class_attribute(logits, 1, 'score')


# --- 64x64x3 (CelebA-sized) --------------------------------------------------------------------


def test_64x64x3_path(tmp_path):
  gan, state = _random_generator((64, 64, 3), scale=6.0)
  grid = E.interpolation_grid(gan, state, jax.random.key(0), steps=2, rows=2)
  assert grid.shape == (2, 2, 64, 64, 3)
  z_star = jax.random.normal(jax.random.key(1), (2, gan.latent_dim))
  x = np.asarray(E.generate(gan, state, z_star))
  inv_kw = dict(key=jax.random.key(2), steps=20, restarts=2)
  inv = E.invert(gan, state, x, **inv_kw)
  assert inv.images.shape == (2, 64, 64, 3) and inv.mse.shape == (2,)
  z_rand = jax.random.normal(jax.random.key(3), (4, gan.latent_dim))
  random_mse = np.mean((np.asarray(E.generate(gan, state, z_rand)) - np.tile(x, (2, 1, 1, 1))) ** 2)
  assert np.mean(inv.mse) < 0.5 * random_mse
  # InterFaceGAN with an attribute of the images (brightness) moves that attribute.
  direction = E.fit_attribute_direction(
    gan, state, E.ink_mass, jax.random.key(4), num_latents=256, batch_size=256, method='mean_diff'
  )
  z = gan.sample_latents(jax.random.key(5), 4)
  ink = [float(E.ink_mass(E.generate(gan, state, E.edit(z, direction, s))).mean()) for s in (-2, 2)]
  assert ink[0] < ink[1], ink
  # From real labelled images (here: G's), as for CelebA's attributes: invert, then fit.
  d2 = E.fit_direction_from_images(
    gan, state, x, np.array([True, False]), method='mean_diff', **inv_kw
  )
  np.testing.assert_allclose(d2, (inv.z[0] - inv.z[1]) / np.linalg.norm(inv.z[0] - inv.z[1]),
                             atol=1e-5)  # fmt: skip
  path = E.save_direction(str(tmp_path / 'dir.npz'), d2, attribute='Smiling', step=3)
  loaded, meta = E.load_direction(path)
  np.testing.assert_array_equal(loaded, d2)
  assert meta == {'attribute': 'Smiling', 'step': 3}
  # CelebA's aligned 218x178 faces -> central crop -> 64x64 in [-1, 1].
  faces = np.random.default_rng(0).integers(0, 256, (2, 218, 178, 3), dtype=np.uint8)
  cropped = E.celeba_crop_resize(faces)
  assert cropped.shape == (2, 64, 64, 3) and cropped.min() >= -1 and cropped.max() <= 1


# --- gan-jax edit ------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def mnist_run(tmp_path_factory, tfds_dir):
  """A tiny DCGAN-28 trained 2 steps on real MNIST, and a real MNIST test digit as a PNG."""
  from gan_jax.data import pipeline as data

  from gan_jax.training import train
  root = tmp_path_factory.mktemp('edit')
  config = load_experiment('mnist_dcgan', 'tiny')
  config.data.data_dir = tfds_dir
  config.train.steps = 2
  train.train_and_evaluate(config, str(root / 'run'))
  ds = data.build_eval_dataset(
    'mnist', 'test[:2]', data_dir=tfds_dir, image_size=28, channels=1, batch_size=2
  )
  digits = to_uint8(next(ds.as_numpy_iterator())['image'])
  for i, img in enumerate(digits):
    Image.fromarray(img[..., 0]).save(root / f'digit{i}.png')
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / 'big.png')
  return root


FAST = ['--num-latents', '200', '--inversion-steps', '10', '--restarts', '2', '--scale', '1']


def test_edit_command_end_to_end(mnist_run, capsys):
  run, out = str(mnist_run / 'run'), str(mnist_run / 'strip.png')
  digits = [str(mnist_run / 'digit0.png'), str(mnist_run / 'digit1.png')]
  argv = ['edit', '--workdir', run, '--image', *digits, '--attribute', 'class_3', '--out', out]
  status = cli.main(argv + ['--strengths', '-2,0,2', '--hold', 'ink', *FAST])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  assert "fitted the direction of 'class_3'" in captured.out and f'wrote {out}' in captured.out
  # 2 rows of [input | reconstruction | 3 edits], 28x28 tiles with 2-pixel borders.
  assert Image.open(out).size == (5 * 30 + 2, 2 * 30 + 2)
  direction, meta = E.load_direction(str(mnist_run / 'run' / 'directions' / 'class_3.npz'))
  assert direction.shape == (100,) and meta['step'] == 2 and meta['num_latents'] == 200
  assert (mnist_run / 'run' / 'directions' / 'ink.npz').is_file()
  # A direction file instead of an attribute, holding class_3 (now read from the cache);
  # one strength gives a 3-tile row.
  ink = str(mnist_run / 'run' / 'directions' / 'ink.npz')
  status = cli.main(argv[:5] + ['--direction', ink, '--hold', 'class_3', '--strength', '1.5',
                               '--out', out, '--feature-weight', '0', *FAST])  # fmt: skip
  captured = capsys.readouterr()
  assert status == 0, captured.err
  assert "using the cached direction of 'class_3'" in captured.out
  assert "ink.npz holding class_3 at strengths 1.5" in captured.out
  assert Image.open(out).size == (3 * 30 + 2, 30 + 2)


def _one_line_error(capsys, argv, *fragments):
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('gan-jax: error: ') and '\n' not in err, err
  for fragment in fragments:
    assert fragment in err, err


@pytest.mark.parametrize(
  'args, fragments',
  [
    (['--image', 'MISSING.png', '--attribute', 'ink'], ['MISSING.png', 'not found']),
    (['--image', 'big.png', '--attribute', 'ink'], ['is 32x32', 'makes 28x28', '--resize']),
    (
      ['--image', 'digit0.png', '--attribute', 'smile'],
      ["unknown --attribute 'smile'", 'ink, class_0, class_1', 'class_9'],
    ),
    (['--image', 'digit0.png', '--attribute', 'ink', '--hold', 'ink'], ['edited attribute']),
    (['--image', 'digit0.png', '--attribute', 'ink', '--strengths', 'a,b'], ['comma-separated']),
    (['--image', 'digit0.png', '--direction', 'MISSING.npz'], ['cannot read --direction']),
  ],
)
def test_edit_command_errors(mnist_run, capsys, args, fragments):
  args = [str(mnist_run / a) if a.endswith(('.png', '.npz')) else a for a in args]
  _one_line_error(capsys, ['edit', '--workdir', str(mnist_run / 'run'), *args], *fragments)


def test_edit_command_missing_workdir(capsys, tmp_path):
  _one_line_error(
    capsys,
    ['edit', '--workdir', str(tmp_path / 'nope'), '--image', 'x.png', '--attribute', 'ink'],
    'does not exist',
  )
