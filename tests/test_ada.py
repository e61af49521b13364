"""ADA (Karras et al. 2020): the augmentation pipeline against numpy and closed forms, its
gradients, the p update against a hand computation, and ADA in training (p in the state,
logged, resumed bit for bit)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import config as config_lib
from gan_jax.core import ada, objectives
from gan_jax.core.losses import get_loss
from gan_jax.core.state import create_state
from gan_jax.core.train_step import Stabilizers, make_train_step
from gan_jax.errors import ConfigError
from gan_jax.training import train
from test_train import _assert_states_equal

KEY = jax.random.PRNGKey(3)


def _images(b=16, size=28, c=3, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (b, size, size, c)).astype(np.float32)


def _aug(x, transforms, p=1.0, key=KEY):
  return np.asarray(jax.jit(lambda x, p: ada.augment(x, key, p, transforms))(x, p))


def _luma_chroma(x):
  luma = x.mean(axis=-1, keepdims=True)
  return luma, x - luma


# --- the pipeline ------------------------------------------------------------------------------


@pytest.mark.parametrize('c', [1, 3])
def test_p_zero_is_the_identity_exactly(c):
  x = _images(c=c)
  everything = ','.join(ada.TRANSFORMS)
  assert np.array_equal(_aug(x, everything, 0.0), x)  # traced p


def test_blit_building_blocks_equal_numpy():
  x = _images(b=4, size=6, c=2)
  flags = np.array([True, False, True, False])
  want = np.stack([np.flip(im, axis=1) if f else im for im, f in zip(x, flags)])
  np.testing.assert_array_equal(ada.flip_x(jnp.asarray(x), jnp.asarray(flags)), want)
  k = np.array([0, 1, 2, 3])
  want = np.stack([np.rot90(im, int(i)) for im, i in zip(x, k)])
  np.testing.assert_array_equal(ada.rotate90(jnp.asarray(x), jnp.asarray(k)), want)
  shifts = np.array([[0, 0], [2, -1], [-5, 5], [3, 4]])  # (dy, dx), up to H - 1
  out = np.asarray(ada.translate_reflect(jnp.asarray(x), jnp.asarray(shifts)))
  for im, (dy, dx), o in zip(x, shifts, out):
    padded = np.pad(im, ((5, 5), (5, 5), (0, 0)), mode='reflect')
    np.testing.assert_array_equal(o, padded[5 - dy : 11 - dy, 5 - dx : 11 - dx])
    # The interior is np.roll's.
    rolled = np.roll(im, (dy, dx), axis=(0, 1))
    rows, cols = slice(max(dy, 0), 6 + min(dy, 0)), slice(max(dx, 0), 6 + min(dx, 0))
    np.testing.assert_array_equal(o[rows, cols], rolled[rows, cols])


def test_each_blit_transform_at_p1_gives_one_of_its_numpy_outcomes():
  x = _images(b=24, size=12, c=1)
  outs = _aug(x, 'xflip')
  flipped = [np.array_equal(o, np.flip(im, 1)) for o, im in zip(outs, x)]
  kept = [np.array_equal(o, im) for o, im in zip(outs, x)]
  assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)

  outs = _aug(x, 'rotate90')
  ks = [[np.array_equal(o, np.rot90(im, k)) for k in range(4)] for o, im in zip(outs, x)]
  assert all(any(row) for row in ks) and len({row.index(True) for row in ks}) == 4

  outs = _aug(x, 'xint')
  m = round(ada.XINT_MAX * 12)  # shifts are within +-round(0.125 * size)
  found = 0
  for o, im in zip(outs, x):
    padded = np.pad(im, ((m, m), (m, m), (0, 0)), mode='reflect')
    hits = [
      (dy, dx)
      for dy in range(-m, m + 1)
      for dx in range(-m, m + 1)
      if np.array_equal(o, padded[m - dy : m - dy + 12, m - dx : m - dx + 12])
    ]
    assert hits, 'not a reflect-padded integer shift'
    found += hits != [(0, 0)]
  assert found > 12


def test_the_general_geometric_path_against_numpy():
  x = _images(b=2, size=10, c=3)
  quarter = ada.rotation_matrix(jnp.full((2,), np.pi / 2))
  np.testing.assert_allclose(
    ada.warp(jnp.asarray(x), quarter), np.rot90(x, 1, axes=(1, 2)), atol=1e-5
  )
  # A pure integer translation: np.roll on the interior, reflection beyond the border.
  dx, dy = 3.0, -2.0
  shift = ada.translation_matrix(jnp.full((2,), -dx), jnp.full((2,), -dy))
  out = np.asarray(ada.warp(jnp.asarray(x), shift))
  rolled = np.roll(x, (int(dy), int(dx)), axis=(1, 2))
  np.testing.assert_allclose(out[:, :8, 3:], rolled[:, :8, 3:], atol=1e-6)
  shifts = jnp.asarray([[int(dy), int(dx)]] * 2)
  np.testing.assert_allclose(out, ada.translate_reflect(jnp.asarray(x), shifts), atol=1e-6)
  # Half a pixel to the right: the mean of horizontal neighbours (bilinear).
  half = ada.translation_matrix(jnp.full((2,), -0.5), jnp.zeros((2,)))
  out = np.asarray(ada.warp(jnp.asarray(x), half))
  np.testing.assert_allclose(out[:, :, 1:], (x[:, :, :-1] + x[:, :, 1:]) / 2, atol=1e-6)
  # Isotropic scaling by 2 about the centre of a linear ramp doubles its slope.
  ramp = np.broadcast_to(np.arange(10, dtype=np.float32)[None, None, :, None], (1, 10, 10, 1))
  out = np.asarray(
    ada.warp(jnp.asarray(ramp), ada.scale_matrix(jnp.full((1,), 0.5), jnp.full((1,), 0.5)))
  )
  np.testing.assert_allclose(out[0, :, 3:7, 0], (ramp[0, :, 3:7, 0] - 4.5) / 2 + 4.5, atol=1e-5)


def test_the_random_geometric_transforms_move_pixels_and_keep_finite():
  x = _images(b=8)
  for name in ada.GEOM:
    out = _aug(x, name)
    assert np.isfinite(out).all() and not np.allclose(out, x), name
    assert np.abs(out).max() <= 1 + 1e-5, name  # bilinear: within the input's range


def test_colour_transforms_closed_forms_rgb():
  x = _images()
  luma, chroma = _luma_chroma(x)
  out = _aug(x, 'brightness')  # adds one constant per image
  d = (out - x).reshape(16, -1)
  np.testing.assert_allclose(d, d[:, :1].repeat(d.shape[1], 1), atol=1e-5)
  assert 0.05 < d[:, 0].std() < 0.5

  out = _aug(x, 'contrast')  # multiplies by one positive constant per image
  r = (out / x).reshape(16, -1)
  np.testing.assert_allclose(r, r[:, :1].repeat(r.shape[1], 1), rtol=1e-4)
  assert (r > 0).all() and r[:, 0].std() > 0.1

  out = _aug(x, 'lumaflip')  # luma negated (Householder along (1,1,1)), chroma kept; or x
  o_luma, o_chroma = _luma_chroma(out)
  np.testing.assert_allclose(o_chroma, chroma, atol=1e-5)
  flipped = np.isclose(o_luma, -luma, atol=1e-5).all(axis=(1, 2, 3))
  kept = np.isclose(o_luma, luma, atol=1e-5).all(axis=(1, 2, 3))
  assert (flipped | kept).all() and flipped.any() and kept.any()

  out = _aug(x, 'hue')  # a rotation about the luma axis: luma and chroma's length kept
  o_luma, o_chroma = _luma_chroma(out)
  np.testing.assert_allclose(o_luma, luma, atol=1e-5)
  np.testing.assert_allclose(
    np.linalg.norm(o_chroma, axis=-1), np.linalg.norm(chroma, axis=-1), atol=1e-5
  )
  assert not np.allclose(o_chroma, chroma, atol=1e-2)

  out = _aug(x, 'saturation')  # chroma times one constant per image, luma kept
  o_luma, o_chroma = _luma_chroma(out)
  np.testing.assert_allclose(o_luma, luma, atol=1e-5)
  dot = lambda a, b: (a * b).sum(axis=(1, 2, 3), keepdims=True)
  s = dot(o_chroma, chroma) / dot(chroma, chroma)  # least-squares factor per image
  np.testing.assert_allclose(o_chroma, s * chroma, atol=1e-5)
  assert s.std() > 0.1


def test_colour_transforms_on_gray_images():
  x = _images(c=1)
  d = (_aug(x, 'brightness') - x).reshape(16, -1)
  np.testing.assert_allclose(d, d[:, :1].repeat(d.shape[1], 1), atol=1e-5)
  out = _aug(x, 'lumaflip')  # negation about mid-gray 0, or nothing
  neg = np.isclose(out, -x, atol=1e-6).all(axis=(1, 2, 3))
  same = np.array_equal(out[~neg], x[~neg])
  assert neg.any() and (~neg).any() and same
  for name in ('hue', 'saturation'):  # the identity on gray: skipped
    assert np.array_equal(_aug(x, name), x), name


def test_cutout_and_noise():
  x = _images(c=1) + 2.0  # no zero pixels of its own
  zeros = ada.cutout(jnp.asarray(x[:1]), jnp.asarray([[0.5, 0.5]]), jnp.asarray([0.5]))[0, ..., 0]
  want = np.ones((28, 28), bool)
  want[7:21, 7:21] = False  # (i + 0.5) / 28 within 0.25 of 0.5: rows and columns 7..20
  np.testing.assert_array_equal(np.asarray(zeros) != 0, want)
  out = _aug(x, 'cutout')
  for o, im in zip(out, x):
    cut = o[..., 0] == 0
    rows, cols = np.nonzero(cut.any(1))[0], np.nonzero(cut.any(0))[0]
    assert 0 < cut.sum() <= 14 * 14
    assert cut.sum() == len(rows) * len(cols)  # one axis-aligned rectangle
    np.testing.assert_array_equal(o[~cut], im[~cut])
  d = _aug(x, 'noise') - x
  sigma = d.reshape(16, -1).std(axis=1)
  assert (sigma < 0.5).all() and sigma.max() > 0.01 and abs(d.mean()) < 0.01


def test_p_is_the_probability_of_each_transform():
  x = _images(b=4000, size=4, c=1)
  for p in (0.3, 0.8):
    out = _aug(x, 'contrast', p)
    changed = ~np.all(out == x, axis=(1, 2, 3))
    assert abs(changed.mean() - p) < 0.03, (p, changed.mean())
  # rotate: pre or post rotation with 1 - sqrt(1 - p) each, so P(any) = p.
  out = _aug(x, 'rotate', 0.5)
  changed = ~np.all(out == x, axis=(1, 2, 3))
  assert abs(changed.mean() - 0.5) < 0.03


def test_gradients_reach_the_input():
  x = jnp.asarray(_images(b=4))
  w = jnp.asarray(_images(b=4, seed=1))
  for transforms in ('bgc,noise,cutout', 'geom', 'color'):
    g = jax.grad(lambda x, t=transforms: jnp.sum(ada.augment(x, KEY, 0.9, t) * w))(x)
    assert np.isfinite(g).all() and np.abs(g).sum() > 1.0, transforms


def test_transforms_names_and_errors():
  assert ada.parse_transforms('bgc') == (*ada.BLIT, *ada.GEOM, *ada.COLOR)
  assert ada.parse_transforms('cutout, xflip,blit') == ('xflip', 'rotate90', 'xint', 'cutout')
  for bad in ('bgcf', '', 'xflip,warp'):
    with pytest.raises(ValueError, match='ADA transforms'):
      ada.parse_transforms(bad)


# --- the p update --------------------------------------------------------------------------------


def _hand_p(logit_signs_per_step, p0, target, kimg, interval, images):
  """p after each step, computed by hand in float64."""
  p, signs, out = p0, [], []
  for t, s in enumerate(logit_signs_per_step, 1):
    signs.extend(s)
    if t % interval == 0:
      r = sum(signs) / len(signs)
      p = min(max(p + np.sign(r - target) * images * interval / (kimg * 1000), 0.0), 1.0)
      signs = []
    out.append(p)
  return out


def test_the_p_update_against_a_hand_computation():
  kimg, interval, b = 0.05, 2, 4  # p moves by 4 * 2 / 50 = 0.16 per adjustment
  confident = [[1, 1, 1, -1]] * 4  # r_t = 0.5 < 0.6: down
  overfit = [[1, 1, 1, 1]] * 6  # r_t = 1 > 0.6: up
  mixed = [[1, -1, 0, 1], [1, 1, 1, 1]]  # (1 + 4) / 8 = 0.625 > 0.6: up
  for p0, seq in ((0.25, confident), (0.1, confident), (0.7, overfit), (0.5, mixed)):
    extras = ada.initial_state({'augment': 'ada', 'ada_p_init': p0})
    got = []
    for step, signs in enumerate(seq):
      logits = jnp.asarray(signs, jnp.float32) * 3.7
      extras = ada.count_signs(extras, logits)
      extras, m = ada.adjust(
        extras, jnp.int32(step), target=0.6, kimg=kimg, interval=interval, images_per_step=b
      )
      got.append(float(m['ada_p']))
      np.testing.assert_allclose(m['ada_p'], extras['ada_p'])
    want = _hand_p(seq, p0, 0.6, kimg, interval, b)
    np.testing.assert_allclose(got, want, atol=1e-6)
  # The clipping and the directions, spelled out.
  assert _hand_p(confident, 0.1, 0.6, kimg, interval, b) == [0.1, 0.0, 0.0, 0.0]
  assert _hand_p(overfit, 0.7, 0.6, kimg, interval, b)[-1] == 1.0


def test_r_t_is_the_mean_sign_since_the_last_adjustment():
  extras = ada.initial_state({'augment': 'ada'})
  extras = ada.count_signs(extras, jnp.asarray([2.0, -1.0, 0.5]))
  extras, m = ada.adjust(extras, jnp.int32(0), target=0.6, kimg=500, interval=2, images_per_step=3)
  np.testing.assert_allclose(m['ada_rt'], 1 / 3, rtol=1e-6)
  assert float(extras['ada_sign_count']) == 3 and float(m['ada_p']) == 0.0
  extras = ada.count_signs(extras, jnp.asarray([2.0, 1.0, 0.5]))
  extras, m = ada.adjust(extras, jnp.int32(1), target=0.6, kimg=500, interval=2, images_per_step=3)
  np.testing.assert_allclose(m['ada_rt'], 4 / 6, rtol=1e-6)  # > 0.6: p up by 6 / 500,000
  np.testing.assert_allclose(m['ada_p'], 6 / 500_000, rtol=1e-5)
  assert float(extras['ada_sign_count']) == 0 and float(extras['ada_sign_sum']) == 0


# --- config and the train step ---------------------------------------------------------------


@pytest.mark.parametrize(
  'field,value,fragment',
  [
    ('augment', 'adaptive', "train.augment='adaptive' is invalid"),
    ('ada_transforms', 'bgcf', "train.ada_transforms='bgcf' is invalid"),
    ('ada_target', 1.0, 'train.ada_target=1.0 is invalid'),
    ('ada_kimg', 0.0, 'train.ada_kimg=0.0 is invalid'),
    ('ada_interval', 0, 'train.ada_interval=0 is invalid'),
    ('ada_p_init', 1.5, 'train.ada_p_init=1.5 is invalid'),
    ('diffaugment', 'color', 'ADA cannot be combined with train.diffaugment'),
  ],
)
def test_bad_ada_configs_fail_in_one_line(tiny_config, field, value, fragment):
  tiny_config.train.augment = 'ada'
  tiny_config.train[field] = value
  with pytest.raises(ConfigError) as err:
    config_lib.validate(tiny_config)
  assert fragment in str(err.value) and '\n' not in str(err.value)


def _batch(config, seed=0):
  shape = (1, config.train.batch_size, 28, 28, 1)
  return {'image': np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)}


# The step tests of p's bookkeeping use two cheap transforms (one geometric, one colour): the
# full 'bgc' pipeline, which triples a step's compile time, is trained in a step by
# test_fixed_p_zero_is_the_plain_step_and_p_one_augments_both_players.
CHEAP_TRANSFORMS = 'xflip,brightness'


def _step(config):
  gan, state = create_state(config)
  st = Stabilizers.from_config(config.train)
  return gan, state, jax.jit(make_train_step(gan, get_loss(config.train.loss), stabilizers=st))


def test_fixed_p_zero_is_the_plain_step_and_p_one_augments_both_players(tiny_config):
  _, plain, step = _step(tiny_config)
  want, m_plain = step(plain, _batch(tiny_config))
  tiny_config.train.augment = 'fixed'
  tiny_config.train.ada_p_init = 0.0
  gan, state, step = _step(tiny_config)
  assert state.extras == {}
  got, _ = step(state, _batch(tiny_config))
  _assert_states_equal(got, want)

  # p = 1: D's loss and G's loss (on the same D) differ from the plain ones, and G's
  # gradient flows through the augmentation of its images.
  tiny_config.train.ada_p_init = 1.0
  _, state, step = _step(tiny_config)
  _, m = step(state, _batch(tiny_config))
  assert float(m['d_loss']) != float(m_plain['d_loss'])
  fake, _ = gan.generate(state.g_params, state.g_batch_stats, jnp.ones((16, 100)), train=True)
  args = (None, state.d_params, state.d_batch_stats, fake, None, KEY, jnp.float32(0))
  kw = dict(gan=gan, loss=get_loss('non_saturating'), aux_weight=1.0)
  on = Stabilizers.from_config(tiny_config.train)
  g_on = jax.grad(lambda f: objectives.g_adversarial(f, *args, stabilizers=on, **kw)[0])(fake)
  g_off = jax.grad(
    lambda f: objectives.g_adversarial(f, *args, stabilizers=Stabilizers(), **kw)[0]
  )(fake)
  assert np.isfinite(g_on).all() and np.abs(g_on).sum() > 0
  assert not np.allclose(g_on, g_off)


def test_the_step_counts_signs_and_adjusts_p(tiny_config):
  tiny_config.train.augment = 'ada'
  tiny_config.train.ada_interval = 2
  tiny_config.train.ada_kimg = 0.32  # 16 images * 2 steps / 320 = 0.1 per adjustment
  tiny_config.train.ada_p_init = 0.5
  tiny_config.train.loss = 'hinge'  # raw logits in d_real
  tiny_config.train.lecam_weight = 0.3  # LeCam's EMAs share state.extras with ADA's entries
  tiny_config.train.ada_transforms = CHEAP_TRANSFORMS
  _, state, step = _step(tiny_config)
  lecam = {'lecam_ema_real', 'lecam_ema_fake'}
  assert set(state.extras) == set(ada.STATE_KEYS) | lecam
  s1, m1 = step(state, _batch(tiny_config, 0))
  assert float(s1.extras['ada_sign_count']) == 16 and float(m1['ada_p']) == 0.5
  np.testing.assert_allclose(m1['ada_rt'], s1.extras['ada_sign_sum'] / 16)
  s2, m2 = step(s1, _batch(tiny_config, 1))
  assert float(s2.extras['ada_sign_count']) == 0
  assert set(s2.extras) == set(ada.STATE_KEYS) | lecam and float(s2.extras['lecam_ema_real']) != 0
  want = 0.5 + 0.1 * np.sign(float(m2['ada_rt']) - 0.6)
  np.testing.assert_allclose(s2.extras['ada_p'], want, rtol=1e-6)
  np.testing.assert_allclose(m2['ada_p'], want, rtol=1e-6)


def test_an_ada_run_logs_p_and_resumes_bit_for_bit(tiny_config, tmp_path):
  t = tiny_config.train
  t.augment, t.ada_interval, t.ada_kimg, t.ada_p_init = 'ada', 3, 0.16, 0.5  # +-0.3 at step 3
  t.ada_transforms = CHEAP_TRANSFORMS
  tiny_config.log_every = 1
  tiny_config.checkpoint_every = 2
  tiny_config.sample_every = 4
  t.steps = 4
  whole = train.train_and_evaluate(tiny_config, str(tmp_path / 'whole'))
  with open(tmp_path / 'whole' / 'metrics.jsonl') as f:
    lines = [json.loads(line) for line in f if '"ada_p"' in line]
  assert [line['step'] for line in lines] == [1, 2, 3, 4]
  assert all(np.isfinite(line['ada_p']) and np.isfinite(line['d_loss']) for line in lines)
  assert lines[0]['ada_p'] == 0.5 and abs(lines[-1]['ada_p'] - 0.5) == pytest.approx(0.3)
  assert float(whole.extras['ada_p']) == lines[-1]['ada_p']
  assert float(whole.extras['ada_sign_count']) == 16  # step 4 counted, not yet adjusted

  t.steps = 2
  train.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
  assert sorted(os.listdir(tmp_path / 'resumed' / 'checkpoints')) == ['2']
  t.steps = 4
  resumed = train.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
  _assert_states_equal(resumed, whole)
  assert float(resumed.extras['ada_p']) == float(whole.extras['ada_p'])
  t.augment = ''  # ADA's state cannot be dropped on resume: refused in one line, up front
  with pytest.raises(ConfigError, match=r'train\.augment \(ada\): True -> False'):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
