"""train.reuse_fakes: one generator forward serves the last D update and the G update."""

import jax
import ml_collections
import numpy as np
import optax
import pytest

from gan_jax import config as config_lib
from gan_jax.core.losses import get_loss
from gan_jax.core.state import create_state
from gan_jax.core.train_step import make_train_step


def _setup(n_critic=1, **model):
  c = config_lib.base_config()
  c.model.name = 'dcgan28'
  c.model.g_width = c.model.d_width = 8
  for k, v in model.items():
    c.model[k] = v
  c.train.n_critic = n_critic
  gan, state = create_state(c)
  rng = np.random.default_rng(0)
  batch = {
    'image': rng.uniform(-1, 1, (n_critic, 8, 28, 28, 1)).astype(np.float32),
    'label': rng.integers(0, 10, (n_critic, 8)).astype(np.int32),
  }
  if not c.model.num_classes:
    del batch['label']
  return c, gan, state, batch


def _step(c, gan, reuse):
  return jax.jit(
    make_train_step(
      gan,
      get_loss(c.train.loss),
      n_critic=c.train.n_critic,
      ema_decay=c.train.ema_decay,
      reuse_fakes=reuse,
    )
  )


def _close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


@pytest.mark.parametrize('n_critic', [1, 2])
def test_g_update_is_the_gradient_at_the_last_d_updates_fakes(n_critic):
  c, gan, state, batch = _setup(n_critic)
  plain, plain_metrics = _step(c, gan, False)(state, batch)
  fused, metrics = _step(c, gan, True)(state, batch)
  # D's updates do not depend on the option: the same bits.
  for x, y in zip(jax.tree.leaves(plain.d_params), jax.tree.leaves(fused.d_params)):
    np.testing.assert_array_equal(x, y)
  assert metrics['d_loss'] == plain_metrics['d_loss']
  # G's: by hand, the gradient of G's loss on the latents of the last D update, through D
  # after its update (the step's key schedule: keys[n_critic - 1] of fold_in(rng, step)).
  keys = jax.random.split(jax.random.fold_in(state.rng, state.step), n_critic + 1)
  z = gan.sample_latents(keys[n_critic - 1], 8)
  loss = get_loss(c.train.loss)

  def g_loss(g_params):
    fake, stats = gan.generate(g_params, state.g_batch_stats, z, train=True)
    logits, _ = gan.discriminate(fused.d_params, fused.d_batch_stats, fake, train=True)
    return loss.g(logits, None), stats

  (want_loss, want_stats), grads = jax.value_and_grad(g_loss, has_aux=True)(state.g_params)
  updates, _ = gan.g_tx.update(grads, state.g_opt_state, state.g_params)
  want = optax.apply_updates(state.g_params, updates)
  np.testing.assert_allclose(metrics['g_loss'], want_loss, rtol=1e-6)
  np.testing.assert_allclose(metrics['g_grad_norm'], optax.tree.norm(grads), rtol=1e-5)
  _close(fused.g_params, want, rtol=1e-5, atol=1e-7)
  _close(fused.g_batch_stats, want_stats, rtol=1e-6, atol=1e-7)
  # ... which is not what the default step does (fresh latents for G).
  assert not np.allclose(metrics['g_loss'], plain_metrics['g_loss'])


def test_one_generator_forward_fewer_flops_and_conditional_labels_reused():
  c, gan, state, batch = _setup()
  flops = {
    reuse: _step(c, gan, reuse).lower(state, batch).compile().cost_analysis()['flops']
    for reuse in (False, True)
  }
  assert flops[True] < 0.97 * flops[False]
  # A conditional G reuses the labels too; the step runs and G moves.
  c, gan, state, batch = _setup(num_classes=10)
  new, metrics = _step(c, gan, True)(state, batch)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert not np.allclose(new.g_params['fc']['kernel'], state.g_params['fc']['kernel'])


def test_reuse_fakes_must_be_a_boolean():
  c = config_lib.base_config()
  c.train.reuse_fakes = True
  config_lib.validate(c)
  # A config read back from JSON (a run's config.json) is not type-checked by ConfigDict.
  d = c.to_dict()
  d['train']['reuse_fakes'] = 'yes'
  with pytest.raises(ValueError, match="train.reuse_fakes='yes' is invalid: must be true or false"):
    config_lib.validate(ml_collections.ConfigDict(d))
