"""Class-conditional GANs: G/D conditioning, the AC-GAN losses, sampling by class, resume.

Kept cheap (the suite is near its time budget): tiny widths, one compiled step per variant,
and one short real-MNIST run shared at module scope by the resume, CLI and evaluation tests.
"""

import dataclasses
import json
import os
import runpy
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx
from PIL import Image

from gan_jax import config as config_lib
from gan_jax.data import pipeline as data_lib
from gan_jax.cli import main as cli
from gan_jax import models
from gan_jax.training import run_setup, train
from gan_jax.core import sampling
from gan_jax.training.checkpoint import load_run
from gan_jax.core.losses import class_cross_entropy, d_minimax_loss, g_nonsaturating_loss, get_loss
from gan_jax.core.state import create_state
from gan_jax.core.train_step import _LABEL_SALT, Stabilizers, make_train_step

from conftest import REPO, load_experiment

K = 10


def _config(model='dcgan28', size=28, channels=1, num_classes=K, **fields):
  c = config_lib.base_config()
  c.model.name, c.model.g_width, c.model.d_width = model, 4, 4
  c.data.image_size, c.data.channels = size, channels
  c.model.num_classes = num_classes
  for key, value in fields.items():
    section, name = key.split('__')
    c[section][name] = value
  return c


def _batch(n_critic=1, b=4, shape=(28, 28, 1), seed=0):
  rng = np.random.default_rng(seed)
  return {
    'image': rng.uniform(-1, 1, (n_critic, b, *shape)).astype(np.float32),
    'label': rng.integers(0, K, (n_critic, b)).astype(np.int32),
  }


def _paths(tree):
  return sorted(
    '/'.join(str(getattr(k, 'key', k)) for k in path) + f':{leaf.shape}'
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  )


# ---------------------------------------------------------------- unconditional stays as it was


# The parameter and statistics trees of the unconditional tiny DCGAN-28 as they were before
# conditioning existed: checkpoints of old runs restore into exactly these.
DCGAN28_G = [
  'bn0/bias:(392,)',
  'bn0/scale:(392,)',
  'bn1/bias:(4,)',
  'bn1/scale:(4,)',
  'fc/kernel:(100, 392)',
  'up1/kernel:(4, 4, 8, 4)',
  'up2/bias:(1,)',
  'up2/kernel:(4, 4, 4, 1)',
]
DCGAN28_D = [
  'conv1/bias:(4,)',
  'conv1/kernel:(4, 4, 1, 4)',
  'conv2/bias:(8,)',
  'conv2/kernel:(4, 4, 4, 8)',
  'fc/bias:(1,)',
  'fc/kernel:(392, 1)',
]


def test_unconditional_state_structure_is_unchanged():
  _, state = create_state(_config(num_classes=0))
  assert _paths(state.g_params) == DCGAN28_G
  assert _paths(state.d_params) == DCGAN28_D
  assert _paths(state.g_batch_stats) == ['bn0/mean:(392,)', 'bn0/var:(392,)', 'bn1/mean:(4,)',
                                         'bn1/var:(4,)']  # fmt: skip
  assert _paths(state.d_batch_stats) == []


def test_num_classes_zero_ignores_every_conditioning_field():
  """With num_classes=0 the conditioning fields change nothing: the same state, bit for bit,
  and the same traced train step (so the same computation) as the defaults."""
  base = _config(num_classes=0)
  other = _config(
    num_classes=0,
    model__g_conditioning='concat',
    model__d_conditioning='acgan',
    model__label_embed_dim=7,
    train__aux_weight=3.0,
  )
  jaxprs = []
  for c in (base, other):
    gan, state = create_state(c)
    assert not gan.conditional
    step = make_train_step(gan, get_loss('non_saturating'), aux_weight=c.train.aux_weight)
    jaxprs.append(str(jax.make_jaxpr(step)(state, _batch())))
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    if c is base:
      base_leaves = leaves
  assert all(np.array_equal(a, b) for a, b in zip(base_leaves, leaves))
  assert jaxprs[0] == jaxprs[1]
  assert 'iota' not in jaxprs[0]  # no one-hot or sampled labels anywhere in the step


# ---------------------------------------------------------------- config and data errors


@pytest.mark.parametrize(
  'fields,message',
  [
    (dict(model__num_classes=-1), 'model.num_classes=-1'),
    (dict(model__g_conditioning='film'), "model.g_conditioning='film'"),
    (dict(model__d_conditioning='proj'), "model.d_conditioning='proj'"),
    (dict(model__label_embed_dim=-2), 'model.label_embed_dim=-2'),
    (dict(train__aux_weight=-1.0), 'train.aux_weight=-1.0'),
    (dict(model__name='mlp'), 'model "mlp" has no class conditioning'),
    (dict(model__pack=2), 'model.pack=2'),
  ],
)
def test_bad_conditioning_configs_fail_in_one_line(fields, message):
  c = _config(**fields)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert message in str(e.value) and '\n' not in str(e.value), str(e.value)


def _one_line_cli_error(capsys, argv, fragment):
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('gan-jax: error: ') and '\n' not in err, err
  assert fragment in err, err


def test_wrong_class_count_or_unlabelled_data_fails_before_training(
  capsys, tfds_dir, tmp_path, monkeypatch
):
  config = str(REPO / 'experiments' / 'mnist_cdcgan.py') + ':tiny'
  argv = ['train', '--config', config, '--workdir', str(tmp_path / 'run')]
  argv.append(f'--config.data.data_dir={tfds_dir}')
  _one_line_cli_error(
    capsys, [*argv, '--config.model.num_classes=5'], 'has 10 classes (labels 0..9)'
  )
  monkeypatch.setattr(data_lib, 'label_classes', lambda *a, **k: None)  # a dataset without labels
  _one_line_cli_error(capsys, argv, "data.name='mnist' has no labels; set model.num_classes=0")
  assert not (tmp_path / 'run').exists()


def test_host_side_label_check():
  batches = [{'label': np.array([[0, 4]])}, {'label': np.array([[1, 7]])}]
  it = run_setup.checked_labels(iter(batches), 5, 'mnist')
  assert next(it) is batches[0]
  with pytest.raises(config_lib.ConfigError, match=r'has label 7, outside \[0, 5\)'):
    next(it)
  unlabelled = run_setup.checked_labels(iter([{'label': -np.ones((1, 2), np.int32)}]), 5, 'x')
  with pytest.raises(config_lib.ConfigError, match='unlabelled images'):
    next(unlabelled)


# ---------------------------------------------------------------- models


@nnx.jit(static_argnames=('train', 'method'))
def _call(module, *args, train=False, method='__call__'):
  """One compiled call of a model (op-by-op eager dispatch of a conv net is slower to test)."""
  return getattr(module, method)(*args, train=train)


def _g(model, conditioning, size, channels, abstract=False):
  cfg = ml_collections.ConfigDict(
    dict(name=model, latent_dim=8, g_width=4, d_width=4, num_classes=K,
         g_conditioning=conditioning, d_conditioning='projection', label_embed_dim=0)
  )  # fmt: skip
  build = lambda: models.build_models(cfg, (size, size, channels), 0)[0]  # noqa: E731
  return nnx.eval_shape(build) if abstract else build()


@pytest.mark.parametrize(
  'model,conditioning,size,channels',
  [
    ('dcgan28', 'concat', 28, 1),
    ('dcgan28', 'cbn', 28, 1),
    ('dcgan', 'cbn', 8, 3),
  ],
)
def test_generator_output_follows_the_label_for_a_fixed_z(model, conditioning, size, channels):
  g = _g(model, conditioning, size, channels)
  z = jnp.tile(jax.random.normal(jax.random.PRNGKey(1), (1, 8)), (3, 1))
  if conditioning == 'cbn':
    # Gains start at 1 and biases at 0: every class starts as plain BatchNorm.
    same = _call(g, z, jnp.array([0, 5, 9]))
    np.testing.assert_array_equal(same[0], same[1])
    tables = [v for _, v in nnx.iter_graph(g) if isinstance(v, nnx.Param) and v.shape[0] == K]
    cbns = [m for _, m in nnx.iter_graph(g) if isinstance(m, models.ConditionalBatchNorm)]
    assert len(tables) == 2 * len(cbns) > 0  # a gain and a bias per conditional BatchNorm
    for i, var in enumerate(tables):  # per-class gains and biases, as after some training
      var[...] = var[...] + 0.5 * jax.random.normal(jax.random.PRNGKey(i), var.shape)
  x = _call(g, z, jnp.array([0, 5, 0]))
  assert x.shape == (3, size, size, channels)
  # Another class, another image (at initialisation the images are faint, hence relative).
  assert float(jnp.abs(x[0] - x[1]).max()) > 0.05 * float(jnp.abs(x[0]).max()) > 0
  np.testing.assert_array_equal(x[0], x[2])  # same (z, y), same image
  with pytest.raises(ValueError, match='class-conditional'):
    g(z, train=False)


def _d(model, conditioning, size, channels, abstract=False, **extra):
  cfg = ml_collections.ConfigDict(
    dict(name=model, latent_dim=8, g_width=4, d_width=4, num_classes=K, g_conditioning='cbn',
         d_conditioning=conditioning, label_embed_dim=0, **extra)
  )  # fmt: skip
  build = lambda: models.build_models(cfg, (size, size, channels), 0)[1]  # noqa: E731
  return nnx.eval_shape(build) if abstract else build()


@pytest.mark.parametrize('sn', [False, True])
def test_projection_logit_is_psi_plus_the_inner_product(sn):
  """Miyato & Koyama 2018, eq. 3: D(x, y) = psi(phi(x)) + <V[y], phi(x)>, by hand; with
  spectral norm, psi's kernel and V are divided by their estimated spectral norms."""
  d = _d('dcgan28', 'projection', 28, 1, spectral_norm=sn)
  x = jax.random.uniform(jax.random.PRNGKey(2), (2, 28, 28, 1), minval=-1, maxval=1)
  phi = np.asarray(_call(d, x, method='features'), np.float64)
  fc, embed = (d.fc.layer, d.embed.layer) if sn else (d.fc, d.embed)
  w, b, v = (np.asarray(a, np.float64) for a in (fc.kernel[...], fc.bias[...], embed.kernel[...]))
  if sn:  # the layers compute with W / sigma(W) (power iteration from the stored u)
    w = w / float(d.fc.power_iteration()[0])
    v = v / float(d.embed.power_iteration()[0])
  assert isinstance(d.embed, models.SpectralNorm) == sn
  for y in range(K):
    logits = np.asarray(_call(d, x, jnp.full((2,), y)))
    np.testing.assert_allclose(logits, phi @ w[:, 0] + b[0] + phi @ v[y], rtol=2e-4, atol=2e-4)
  # The label enters only through the inner product.
  l3, l7 = (np.asarray(_call(d, x, jnp.full((2,), y)), np.float64) for y in (3, 7))
  np.testing.assert_allclose(l3 - l7, phi @ (v[3] - v[7]), rtol=2e-4, atol=2e-4)


def test_dcgan_and_sngan32_build_every_conditioning():
  """The conditional layers where they belong (the dcgan28 ones run in the train steps below;
  sngan32 with cBN G and projection D trains in tests/test_configs.py, cifar10_csngan:tiny)."""
  d = _d('dcgan', 'concat', 8, 3, abstract=True, spectral_norm=True, minibatch_std=2)
  assert d.first.layer.kernel.shape[2] == 3 + K  # one-hot label maps join the image
  d = _d('dcgan', 'projection', 8, 3, abstract=True, spectral_norm=True, minibatch_std=2)
  assert isinstance(d.embed, models.SpectralNorm)  # V is normalised with D's layers
  assert d.embed.layer.kernel.shape == (K, 4 * 4 * (4 + 1))  # on phi(x) (+ the mbstd map)
  d = _d('dcgan', 'acgan', 8, 3, abstract=True)
  assert d.classifier.kernel.shape == (4 * 4 * 4, K) and not hasattr(d, 'embed')
  g = _g('sngan32', 'cbn', 32, 3, abstract=True)
  for block in g.blocks:  # Miyato & Koyama 2018: conditional BN in the ResBlocks ...
    assert isinstance(block.bn1, models.ConditionalBatchNorm)
    assert block.bn2.gain.kernel.shape == (K, 4)
  assert not isinstance(g.bn, models.ConditionalBatchNorm)  # ... not in the last BN
  assert _g('sngan32', 'concat', 32, 3, abstract=True).fc.kernel.shape == (8 + K, 4 * 4 * 4)
  d = _d('sngan32', 'projection', 32, 3, abstract=True)
  assert isinstance(d.embed, models.SpectralNorm) and d.embed.layer.kernel.shape == (K, 4)
  d = _d('sngan32', 'acgan', 32, 3, abstract=True)
  assert isinstance(d.classifier, models.SpectralNorm)
  assert d.classifier.layer.kernel.shape == (4, K)
  d = _d('sngan32', 'concat', 32, 3, abstract=True)
  assert d.blocks[0].conv1.layer.kernel.shape[2] == 3 + K


# ---------------------------------------------------------------- train steps


def test_concat_generator_and_concat_discriminator_train_with_a_penalty():
  c = _config(
    model__g_conditioning='concat', model__d_conditioning='concat', model__label_embed_dim=3
  )
  gan, state = create_state(c)
  assert state.g_params['label_embed']['kernel'].shape == (K, 3)
  assert state.g_params['fc']['kernel'].shape == (100 + 3, 7 * 7 * 8)
  assert state.d_params['label_embed']['kernel'].shape == (K, 3)
  assert state.d_params['conv1']['kernel'].shape == (4, 4, 1 + 3, 4)  # image + label maps
  # R2 differentiates D(G(z, y), y) with respect to the image, for G's labels y.
  step = jax.jit(make_train_step(gan, get_loss('hinge'), stabilizers=Stabilizers(r2_weight=1.0)))
  new, metrics = step(state, _batch())
  assert int(new.step) == 1 and all(np.isfinite(float(v)) for v in metrics.values())
  assert metrics['d_penalty'] > 0
  with pytest.raises(ValueError, match=r"needs batch\['label'\]"):
    step(state, {'image': _batch()['image']})


@pytest.fixture(scope='module')
def acgan_step():
  """One AC-GAN step (cBN G, aux_weight 0.5) with SGD(1) optimizers, so that the step's
  gradients are `old params - new params`."""
  c = _config(model__d_conditioning='acgan', train__aux_weight=0.5, train__ema_decay=0.0)
  gan, state = create_state(c)
  gan = dataclasses.replace(gan, g_tx=optax.sgd(1.0), d_tx=optax.sgd(1.0))
  state = state.replace(
    g_opt_state=gan.g_tx.init(state.g_params), d_opt_state=gan.d_tx.init(state.d_params)
  )
  batch = _batch(b=8)
  step = jax.jit(make_train_step(gan, get_loss('non_saturating'), aux_weight=0.5))
  new, metrics = step(state, batch)
  return gan, state, batch, new, jax.device_get(metrics)


def _ce_by_hand(class_logits, labels):
  z = np.asarray(class_logits, np.float64)
  log_p = z - z.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  return -np.mean(log_p[np.arange(len(labels)), np.asarray(labels)])


def test_acgan_losses_are_the_hand_rolled_cross_entropies(acgan_step):
  """Odena et al. 2017: D minimises adv + w (CE(real) + CE(fake)), G adv + w CE(fake)."""
  gan, state, batch, new, metrics = acgan_step
  rng = jax.random.fold_in(state.rng, state.step)
  z_d, z_g = (gan.sample_latents(k, 8) for k in jax.random.split(rng, 2))
  y_d, y_g = (gan.sample_labels(k, 8) for k in jax.random.split(jax.random.fold_in(rng, _LABEL_SALT), 2))  # fmt: skip
  real, y_real = batch['image'][0], batch['label'][0]

  fake, _ = jax.jit(lambda z, y: gan.generate(state.g_params, state.g_batch_stats, z, y, train=True))(z_d, y_d)  # fmt: skip

  def d_losses(p):
    real_logits, real_cls, _ = gan.discriminate_with_classes(p, {}, real, train=True)
    fake_logits, fake_cls, _ = gan.discriminate_with_classes(p, {}, fake, train=True)
    adv = d_minimax_loss(real_logits, fake_logits)
    aux = class_cross_entropy(real_cls, y_real) + class_cross_entropy(fake_cls, y_d)
    return adv + 0.5 * aux, (adv, real_cls, fake_cls)

  (_, (adv, real_cls, fake_cls)), d_grad = jax.jit(jax.value_and_grad(d_losses, has_aux=True))(
    state.d_params
  )
  by_hand = _ce_by_hand(real_cls, y_real) + _ce_by_hand(fake_cls, y_d)
  np.testing.assert_allclose(metrics['d_aux_loss'], by_hand, rtol=1e-5)
  np.testing.assert_allclose(metrics['d_loss'], adv, rtol=1e-5)
  step_grad = jax.tree.map(lambda a, b: a - b, state.d_params, new.d_params)
  for a, b in zip(jax.tree.leaves(step_grad), jax.tree.leaves(d_grad)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)

  def g_losses(p):
    x, _ = gan.generate(p, state.g_batch_stats, z_g, y_g, train=True)
    logits, cls, _ = gan.discriminate_with_classes(new.d_params, {}, x, train=True)
    return g_nonsaturating_loss(logits) + 0.5 * class_cross_entropy(cls, y_g), cls

  (_, cls), g_grad = jax.jit(jax.value_and_grad(g_losses, has_aux=True))(state.g_params)
  np.testing.assert_allclose(metrics['g_aux_loss'], _ce_by_hand(cls, y_g), rtol=1e-5)
  step_grad = jax.tree.map(lambda a, b: a - b, state.g_params, new.g_params)
  for a, b in zip(jax.tree.leaves(step_grad), jax.tree.leaves(g_grad)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


def test_class_cross_entropy_is_log_k_for_uniform_logits():
  labels = jnp.array([0, 3, 9])
  np.testing.assert_allclose(class_cross_entropy(jnp.zeros((3, K)), labels), np.log(K), rtol=1e-6)
  logits = jax.random.normal(jax.random.PRNGKey(0), (3, K))
  np.testing.assert_allclose(
    class_cross_entropy(logits, labels), _ce_by_hand(logits, labels), rtol=1e-5
  )


# ---------------------------------------------------------------- a real MNIST run


@pytest.fixture(scope='module')
def mnist_run(tfds_dir, tmp_path_factory):
  """The tiny conditional MNIST config (cBN G, projection D) for 4 steps, checkpoints at 2
  and 4; returns (config, workdir, final state)."""
  config = load_experiment('mnist_cdcgan', 'tiny')
  config.data.data_dir = tfds_dir
  workdir = str(tmp_path_factory.mktemp('cdcgan') / 'full')
  state = train.train_and_evaluate(config, workdir)
  return config, workdir, jax.device_get(state)


def test_real_mnist_run_resumes_bitwise(mnist_run, tmp_path):
  config, workdir, full = mnist_run
  resumed_dir = str(tmp_path / 'resumed')
  shutil.copytree(workdir, resumed_dir)
  shutil.rmtree(os.path.join(resumed_dir, 'checkpoints', '4'))  # as if killed after step 2
  resumed = jax.device_get(train.train_and_evaluate(config, resumed_dir))
  assert int(resumed.step) == 4
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  # The sample grid has one row per class: 10 rows x 2 columns of 28x28 (+2 px), scaled x2.
  grid = Image.open(os.path.join(workdir, 'samples', 'step_0000004.png'))
  assert grid.size == (2 * (2 * 30 + 2), 2 * (10 * 30 + 2))


def test_sample_cli_by_label_and_per_class(mnist_run, tmp_path, capsys):
  _, workdir, _ = mnist_run
  out = str(tmp_path / 'three.png')
  argv = ['sample', '--workdir', workdir, '--scale', '1', '--out', out]
  assert cli.main([*argv, '--label', '3', '--num', '4']) == 0
  assert 'of class 3' in capsys.readouterr().out
  assert Image.open(out).size == (2 * 30 + 2, 2 * 30 + 2)
  assert cli.main([*argv, '--per-class', '3']) == 0
  assert Image.open(out).size == (3 * 30 + 2, K * 30 + 2)
  _one_line_cli_error(capsys, [*argv, '--label', '10'], '--label=10 is out of range')
  # The CLI's class-3 images are G's for label 3, and another label gives other images.
  _, gan, state = load_run(workdir)
  z = gan.sample_latents(jax.random.PRNGKey(0), 4)  # the CLI's latents (--seed 0)
  threes = sampling.sample(gan, state, z, jnp.full((4,), 3))
  assert cli.main([*argv, '--label', '3', '--num', '4']) == 0
  grid = np.asarray(Image.open(out))
  np.testing.assert_array_equal(grid[2:30, 2:30], sampling.to_uint8(threes)[0, ..., 0])
  assert not np.array_equal(threes, sampling.sample(gan, state, z, jnp.full((4,), 4)))
  with pytest.raises(ValueError, match='label 12 is out of range'):
    sampling.sample(gan, state, z, jnp.full((4,), 12))


def test_edit_cli_on_a_conditional_run_needs_and_uses_the_label(mnist_run, tmp_path, capsys):
  """`gan-jax edit --label K` inverts and edits a real digit within class K of a conditional
  G; without --label, or with a label out of range, it stops with one line."""
  _, workdir, _ = mnist_run
  tfds_dir = load_run(workdir)[0].data.data_dir
  ds = data_lib.build_eval_dataset(
    'mnist', 'test[:1]', data_dir=tfds_dir, image_size=28, channels=1, batch_size=1
  )
  digit = sampling.to_uint8(next(ds.as_numpy_iterator())['image'])[0, ..., 0]
  image, out = str(tmp_path / 'digit.png'), str(tmp_path / 'strip.png')
  Image.fromarray(digit).save(image)
  argv = ['edit', '--workdir', workdir, '--image', image, '--attribute', 'ink', '--out', out]
  fast = ['--num-latents', '100', '--inversion-steps', '5', '--restarts', '1', '--scale', '1']
  # The raw G: after 4 steps the EMA G is still nearly the initial one, whose conditional
  # BatchNorm (gains 1, biases 0 for every class) ignores the label.
  fast.append('--no-ema')
  _one_line_cli_error(capsys, argv + fast, 'this run is class-conditional: give --label K')
  _one_line_cli_error(capsys, [*argv, *fast, '--label', '10'], '--label=10 is out of range')
  strips = {}
  for label in (3, 5):
    status = cli.main([*argv, *fast, '--label', str(label), '--strengths', '-1,1'])
    assert status == 0, capsys.readouterr().err
    # One row: input | reconstruction | 2 edits, 28x28 tiles with 2-pixel borders.
    strips[label] = np.asarray(Image.open(out))
    assert strips[label].shape[:2] == (30 + 2, 4 * 30 + 2)
    from gan_jax.latent import load_direction

    _, meta = load_direction(os.path.join(workdir, 'directions', 'ink.npz'))
    assert meta['label'] == label  # the direction was fitted on G's class-`label` images
  capsys.readouterr()
  # The input tile is the same; G's reconstruction depends on the class it was asked for.
  np.testing.assert_array_equal(strips[3][:, :32], strips[5][:, :32])
  assert not np.array_equal(strips[3][:, 32:], strips[5][:, 32:])


def test_eval_conditional_reports_accuracy_and_fid_per_class(mnist_run, tmp_path, capsys):
  _, workdir, _ = mnist_run
  script = runpy.run_path(str(REPO / 'scripts' / 'eval_conditional.py'))
  out = str(tmp_path / 'eval.json')
  argv = ['--workdir', workdir, '--num-per-class', '130', '--classes', '0,1']
  assert script['main']([*argv, '--split', 'train[:2000]', '--out', out]) == 0
  text = capsys.readouterr().out
  assert '| class | accuracy (LeNet) | FID (LeNet) |' in text and '| all |' in text
  with open(out) as f:
    results = json.load(f)
  assert [r['class'] for r in results['classes']] == [0, 1]
  for row in [*results['classes'], results['overall']]:
    assert 0 <= row['accuracy'] <= 1 and row['fid_lenet'] > 0
    assert row['real_accuracy'] > 0.9  # the classifier knows real digits
  assert results['overall']['generated'] == 260
  assert (
    results['classes'][0]['real_count'] + results['classes'][1]['real_count']
    == (results['overall']['real_count'])
  )
  assert script['main']([*argv[:2], '--classes', '12']) == 2
  assert 'must list distinct classes' in capsys.readouterr().err


def test_eval_conditional_samples_with_the_runs_ema_batch_stats(mnist_run, tmp_path, capsys):
  """The EMA G's BatchNorm statistics follow the run's eval.ema_batch_stats ('raw' for the
  tiny run) unless --ema-stats says otherwise: a copy of the run set to 'standing' gives the
  same numbers as --ema-stats standing on the original, and other ones than 'raw'."""
  _, workdir, _ = mnist_run
  standing_dir = str(tmp_path / 'standing')
  shutil.copytree(workdir, standing_dir)
  path = os.path.join(standing_dir, 'config.json')
  with open(path) as f:
    saved = json.load(f)
  saved['eval']['ema_batch_stats'] = 'standing'
  with open(path, 'w') as f:
    json.dump(saved, f)
  script = runpy.run_path(str(REPO / 'scripts' / 'eval_conditional.py'))
  argv = ['--num-per-class', '130', '--classes', '0', '--split', 'train[:2000]']
  results = {}
  for name, extra in [
    ('raw', ['--workdir', workdir]),
    ('copy', ['--workdir', standing_dir]),
    ('flag', ['--workdir', workdir, '--ema-stats', 'standing']),
  ]:
    out = str(tmp_path / f'{name}.json')
    assert script['main']([*argv, *extra, '--out', out]) == 0, capsys.readouterr().err
    with open(out) as f:
      results[name] = json.load(f)
  assert 'EMA G, standing BatchNorm statistics' in capsys.readouterr().out
  got = [results[n]['ema_stats'] for n in ('raw', 'copy', 'flag')]
  assert got == ['raw', 'standing', 'standing']
  assert results['copy']['classes'] == results['flag']['classes']
  fid = {n: results[n]['classes'][0]['fid_lenet'] for n in ('raw', 'copy')}
  assert fid['raw'] > 0 and fid['copy'] > 0 and fid['copy'] != fid['raw']
