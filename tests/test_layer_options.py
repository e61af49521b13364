"""The speed-only layer options of the model config (issue 21): `model.tconv_backward`,
`model.g_conv_chunk` and `model.d_conv_chunk` reach every layer of a DCGAN's G and D, give
the same outputs and gradients as the defaults to float32 rounding (the defaults' autodiff is
the reference), are refused in one line where they cannot apply, and train end to end."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gan_jax import config as config_lib
from gan_jax import models
from gan_jax.errors import ConfigError
from gan_jax.models import layers


def _cfg(name='dcgan28', **options):
  c = config_lib.base_config()
  c.model.name = name
  c.model.g_width, c.model.d_width, c.model.latent_dim = 8, 8, 16
  for k, v in options.items():
    c.model[k] = v
  return c


def _layers(module):
  return [
    m for _, m in nnx.iter_modules(module) if isinstance(m, (layers.Conv, layers.ConvTranspose))
  ]


@pytest.mark.parametrize('name,size', [('dcgan28', 28), ('dcgan', 32), ('sngan32', 32)])
def test_options_reach_every_layer_and_keep_outputs_and_gradients(name, size):
  """G's transposed convolutions get the adjoint backward, G's layers 4-image chunks, D's
  convolutions 2-image chunks; D(G(z)) and the gradients of a scalar of it with respect to every parameter
  of G and D equal the default models' (same seed, same parameters) to float32 rounding."""
  shape = (size, size, 1)
  ref_g, ref_d = models.build_models(_cfg(name).model, shape, 0)
  g, d = models.build_models(
    _cfg(name, tconv_backward='adjoint', g_conv_chunk=4, d_conv_chunk=2).model, shape, 0
  )
  g_layers, d_layers = _layers(g), _layers(d)
  # DCGANs' G upsamples with transposed convolutions, SNGAN's with nearest + convolutions.
  assert any(isinstance(m, layers.ConvTranspose) for m in g_layers) == (name != 'sngan32')
  assert all(m.batch_chunk == 4 for m in g_layers)
  assert all(m.batch_chunk == 2 for m in d_layers)
  assert all(m.backward == 'adjoint' for m in g_layers if isinstance(m, layers.ConvTranspose))
  assert all(m.batch_chunk is None for m in _layers(ref_g) + _layers(ref_d))
  # The classes keep their defaults: the options are per model, not global.
  assert layers.ConvTranspose.backward == 'autodiff' and layers.Conv.batch_chunk is None

  z = jax.random.normal(jax.random.key(1), (8, 16))

  def out_and_grads(g, d):
    gd, gp, gs = nnx.split(g, nnx.Param, ...)
    dd, dp, ds = nnx.split(d, nnx.Param, ...)

    def f(gp, dp):
      gen = nnx.merge(gd, gp, gs)
      disc = nnx.merge(dd, dp, ds)
      logits = disc(gen(z, train=False), train=False)  # running statistics: no state updates
      return jnp.sum(jnp.sin(logits)), logits

    (_, logits), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(gp, dp)
    return logits, jax.tree.leaves(grads)

  ref_logits, ref_grads = out_and_grads(ref_g, ref_d)
  logits, grads = out_and_grads(g, d)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
  assert len(grads) == len(ref_grads)
  for a, b in zip(grads, ref_grads):
    scale = float(np.max(np.abs(b))) + 1e-12
    np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=1e-5)


def test_invalid_values_and_models_without_the_layers_are_refused_in_one_line():
  with pytest.raises(
    ConfigError, match=r"model.tconv_backward='fast' is invalid: use autodiff or adjoint"
  ):
    config_lib.validate(_cfg(tconv_backward='fast'))
  with pytest.raises(
    ConfigError, match=r"model.conv_kernel_grad='fast' is invalid: use xla or im2col"
  ):
    config_lib.validate(_cfg(conv_kernel_grad='fast'))
  with pytest.raises(ConfigError, match='model.d_conv_chunk=-1 is invalid: must be 0'):
    config_lib.validate(_cfg(d_conv_chunk=-1))
  c = _cfg('r3gan', d_conv_chunk=64)
  with pytest.raises(
    ConfigError,
    match='model "r3gan" does not support it; use model.name=dcgan28, dcgan or sngan32',
  ):
    config_lib.validate(c)
  c.model.d_conv_chunk = 0
  config_lib.validate(c)  # the defaults apply to every model
  with pytest.raises(ValueError, match='model "mlp" does not support model.tconv_backward'):
    models.build_models(_cfg('mlp', tconv_backward='adjoint').model, (28, 28, 1), 0)


def test_sngan_kernel_grad_option_reaches_every_conv_and_keeps_outputs_and_gradients(
  monkeypatch,
):
  """`model.conv_kernel_grad='im2col'` on SNGAN-32 (width 16, so its 32x32 layers take the
  im2col kernel gradient): every `Conv` of G and D gets it, and D(G(z)) and every parameter
  gradient equal the default models' to float32 rounding."""
  shape = (32, 32, 3)
  cfg = lambda **o: _cfg('sngan32', **o).model  # noqa: E731
  ref_cfg, cfg_im2col = cfg(), cfg(conv_kernel_grad='im2col')
  for c in (ref_cfg, cfg_im2col):
    c.g_width = c.d_width = 16
  ref_g, ref_d = models.build_models(ref_cfg, shape, 0)
  g, d = models.build_models(cfg_im2col, shape, 0)
  convs = [m for m in _layers(g) + _layers(d) if isinstance(m, layers.Conv)]
  assert convs and all(m.kernel_grad == 'im2col' for m in convs)
  assert layers.Conv.kernel_grad == 'xla'  # per model, not global
  z = jax.random.normal(jax.random.key(1), (2, 16))

  def out_and_grads(g, d):
    gd, gp, gs = nnx.split(g, nnx.Param, ...)
    dd, dp, ds = nnx.split(d, nnx.Param, ...)

    def f(gp, dp):
      logits = nnx.merge(dd, dp, ds)(nnx.merge(gd, gp, gs)(z, train=False), train=False)
      return jnp.sum(jnp.sin(logits)), logits

    (_, logits), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(gp, dp)
    return logits, jax.tree.leaves(grads)

  ref_logits, ref_grads = out_and_grads(ref_g, ref_d)
  calls = []
  real = layers.conv_im2col_vjp
  monkeypatch.setattr(layers, 'conv_im2col_vjp', lambda *a: calls.append(1) or real(*a))
  logits, grads = out_and_grads(g, d)
  assert calls  # its 32x32 layers with 16 channels took the im2col kernel gradient
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
  for a, b in zip(grads, ref_grads, strict=True):
    scale = float(np.max(np.abs(b))) + 1e-12
    np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=1e-5)


def test_set_layer_options_refuses_bad_values():
  g, _ = models.build_models(_cfg().model, (28, 28, 1), 0)
  with pytest.raises(ValueError, match="tconv_backward='x': use 'autodiff' or 'adjoint'"):
    layers.set_layer_options(g, tconv_backward='x')
  with pytest.raises(ValueError, match='batch_chunk=-2'):
    layers.set_layer_options(g, batch_chunk=-2)
  with pytest.raises(ValueError, match="kernel_grad='x'"):
    layers.set_layer_options(g, kernel_grad='x')
  # DCGAN-28's G: a Dense to 7x7, then two transposed convolutions (up1, up2).
  assert layers.set_layer_options(g, batch_chunk=2) == len(_layers(g)) == 2


def test_a_run_resumes_with_other_layer_options_and_an_older_runs_config(tiny_config, tmp_path):
  """The options change no shape: a run saved with the defaults (and one whose config.json
  predates the fields) resumes with the adjoint backward and chunks, and a changed
  architecture field is still refused."""
  import json

  from gan_jax.training import train

  workdir = str(tmp_path / 'run')
  tiny_config.train.steps = 2
  train.train_and_evaluate(tiny_config, workdir)
  path = os.path.join(workdir, 'config.json')
  with open(path) as f:
    saved = json.load(f)
  for field in ('tconv_backward', 'g_conv_chunk', 'd_conv_chunk', 'conv_kernel_grad'):
    del saved['model'][field]  # as written before the fields existed
  with open(path, 'w') as f:
    json.dump(saved, f)
  tiny_config.train.steps = 4
  tiny_config.model.tconv_backward, tiny_config.model.d_conv_chunk = 'adjoint', 2
  state = train.train_and_evaluate(tiny_config, workdir)
  assert int(state.step) == 4
  tiny_config.model.g_width *= 2
  with pytest.raises(ConfigError, match='another model or image shape .model.g_width'):
    train.train_and_evaluate(tiny_config, workdir)
