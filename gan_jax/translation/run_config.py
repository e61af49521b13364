"""Translation configs for `gan-jax train`: a run config with a `translation` block.

A translation config is `gan_jax.config.base_config()` with one more block, `translation`
(`translation_config(kind)`), so that config files, `--config.<field>=<value>` overrides,
`:variant`s and ablation files work as for a GAN. `gan-jax train` sends a config with that
block to `gan_jax.translation.train.train_translation` instead of the GAN loop.

Of the base fields a translation run reads only these (the others are ignored):

    seed                 the models' initialisation, the batch order, dropout, histories
    num_replicas, replica_values, replica_seeds, replica_impl
                         K runs in one compiled program (`gan_jax.translation.replicas`)
    train.steps          train steps (pix2pix: one D + one G update; CycleGAN: G then D)
    train.batch_size     images per step (per domain for CycleGAN)
    log_every, sample_every, checkpoint_every, keep_checkpoints, eval_every, progress_bar
    data.data_dir        the TFDS data dir (None: $TFDS_DATA_DIR)

The `translation` block (defaults: those of `scripts/pix2pix_task.py` and
`scripts/cyclegan_task.py`):

    kind            'pix2pix' or 'cyclegan'
    task            a built-in task: 'inpaint', 'colorize', 'superres' (pix2pix),
                    'sneakers_boots' (CycleGAN); '' with `data`
    data            your own images instead of `task` (`gan_jax.data.translation_sources`):
                    'pairs:/path' (pix2pix), 'unpaired:/a,/b' or 'cycle_gan/<name>' (CycleGAN)
    image_size      `data`: the image side (default 64); channels: 1, 3 or 0 (the data's)
    download        `data` cycle_gan/*: let TFDS download it
    direction       pix2pix with `data` 'pairs:': 'a2b' (A -> B, default) or 'b2a' (B -> A)
    num_train, num_test   training and held-out images (per domain for CycleGAN)
    num_grid        test images in each grid of input | output | target (CycleGAN:
                    input | translation | cycle, first domain A's, then B's)
    lr              Adam's learning rate (beta1 0.5, beta2 0.999)
  pix2pix only:
    dataset         'inpaint': 'mnist', 'fashion_mnist' or 'cifar10_jpeg' ('' = mnist)
    hole            'inpaint': side of the hidden square (0 = image side // 2)
    g_width, d_width  the U-Net's and PatchGAN's first widths (max 8x)
    patch_layers    PatchGAN stride-2 layers (-1: from the image size)
    loss            the adversarial loss (`gan_jax.core.losses`)
    l1_weight       lambda of the L1 term
  CycleGAN only:
    width, blocks   the ResNet generators' first width and residual blocks
    d_width, patch_layers   the PatchGANs'
    history         images per discriminator history (Shrivastava et al. 2017: 50)
    cycle_weight, identity_ratio   lambda and mu / lambda
    hold_steps      steps at the full learning rate before the linear decay to 0
                    (-1: half of train.steps)

Evaluation (`eval_every` steps and at the end) logs `eval/<name>` for the names of
`EVAL_METRICS[kind]`.
"""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections

from gan_jax.config import base_config
from gan_jax.errors import ConfigError

KINDS = ('pix2pix', 'cyclegan')
PAIRED_TASKS = ('inpaint', 'colorize', 'superres')
UNPAIRED_TASKS = ('sneakers_boots',)

# What an evaluation logs (as eval/<name>): pix2pix's PSNR (dB) and SSIM of the model and of
# the task's baseline on the held-out images; CycleGAN's `direction_scores` per direction,
# FID on the Fashion-MNIST LeNet's features (None, so not logged, without a classifier or
# with too few images).
_DIRECTION_SCORES = (
  'accuracy', 'baseline_accuracy', 'target_accuracy', 'cycle_l1', 'baseline_cycle_l1',
  'change_l1', 'fid_lenet', 'baseline_fid_lenet',
)  # fmt: skip
EVAL_METRICS = {
  'pix2pix': ('psnr', 'ssim', 'baseline_psnr', 'baseline_ssim'),
  'cyclegan': tuple(f'{d}_{s}' for d in ('a2b', 'b2a') for s in _DIRECTION_SCORES),
}


# The fields that may differ between the replicas of one compiled program
# (`config.replica_values`; `gan_jax.translation.replicas`): they enter the step as traced
# float32 `[K]` inputs. The others (model shapes, the loss, the identity ratio, ...) shape
# the program, so replicas share them.
REPLICA_FIELDS = {
  'pix2pix': ('translation.lr', 'translation.l1_weight'),
  'cyclegan': ('translation.lr', 'translation.cycle_weight'),
}


def is_translation(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` is a translation config (it has a `translation` block)."""
  return isinstance(config.get('translation'), ml_collections.ConfigDict)


def translation_config(kind: str) -> ml_collections.ConfigDict:
  """A translation config of `kind` with the scripts' defaults (module docstring).

  Raises:
    ValueError: for an unknown kind.
  """
  if kind not in KINDS:
    raise ValueError(f'unknown translation kind {kind!r}; one of {list(KINDS)}.')
  c = base_config()
  t = ml_collections.ConfigDict()
  t.kind = kind
  t.task = 'inpaint' if kind == 'pix2pix' else 'sneakers_boots'
  t.data = ''
  t.image_size = 64
  t.channels = 0
  t.download = False
  t.num_grid = 8 if kind == 'pix2pix' else 6
  t.lr = 2e-4
  if kind == 'pix2pix':
    t.direction = 'a2b'
    t.num_train = 4096
    t.num_test = 512
    t.dataset = ''
    t.hole = 0
    t.g_width = 64
    t.d_width = 64
    t.patch_layers = -1
    t.loss = 'non_saturating'
    t.l1_weight = 100.0
    c.train.batch_size = 32
  else:
    t.num_train = 2048
    t.num_test = 1000
    t.width = 16
    t.blocks = 3
    t.d_width = 32
    t.patch_layers = 1
    t.history = 50
    t.cycle_weight = 10.0
    t.identity_ratio = 0.5
    t.hold_steps = -1
    c.train.batch_size = 16
    c.checkpoint_every = 200
  c.log_every = 50
  with c.unlocked():
    c.translation = t
  return c


def apply_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a translation config in place to seconds of CPU (the scripts' `--tiny`), with a
  checkpoint every 2 steps, a grid and an evaluation at the end, no progress bar."""
  t = c.translation
  c.log_every = 1
  c.checkpoint_every = 2
  c.progress_bar = False
  if t.kind == 'pix2pix':
    c.train.steps, c.train.batch_size = 3, 8
    t.num_train, t.num_test, t.g_width, t.d_width = 64, 16, 8, 8
  else:
    c.train.steps, c.train.batch_size = 2, 4
    t.num_train, t.num_test, t.width, t.blocks, t.d_width, t.history = 16, 8, 4, 1, 4, 4
  c.sample_every = c.train.steps
  c.eval_every = c.train.steps
  return c


def _err(field: str, value: Any, need: str) -> ConfigError:
  return ConfigError(f'{field}={value!r} is invalid: {need}.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the fields a translation run reads (no file is read).

  Raises:
    ConfigError: (a ValueError) one line naming the first bad field and a valid choice.
  """
  t = config.translation
  if t.get('kind') not in KINDS:
    raise _err('translation.kind', t.get('kind'), f'use one of {list(KINDS)}')
  for field in ('train.steps', 'train.batch_size', 'log_every', 'sample_every',
                'checkpoint_every', 'keep_checkpoints', 'translation.num_train',
                'translation.num_test', 'translation.num_grid'):  # fmt: skip
    section, name = field.split('.') if '.' in field else (None, field)
    value = config[section][name] if section else config[name]
    if not isinstance(value, int) or value < 1:
      raise _err(field, value, 'use an integer >= 1')
  if config.eval_every < 0:
    raise _err('eval_every', config.eval_every, 'use >= 0 (0 turns evaluation off)')
  _validate_replicas(config)
  if not t.lr > 0:
    raise _err('translation.lr', t.lr, 'use a learning rate > 0')
  tasks = PAIRED_TASKS if t.kind == 'pix2pix' else UNPAIRED_TASKS
  if t.data:
    if t.task:
      raise ConfigError(
        f"translation.task={t.task!r} and translation.data={t.data!r} both set: give one "
        "(set translation.task='' to train on your own data)."
      )
    if t.image_size < 4:
      raise _err('translation.image_size', t.image_size, 'use an image side >= 4')
  elif t.task not in tasks:
    raise _err('translation.task', t.task, f'{t.kind} tasks are {list(tasks)} (or set data)')
  if t.channels not in (0, 1, 3):
    raise _err('translation.channels', t.channels, "use 1, 3 or 0 (the data's own)")
  if t.kind == 'pix2pix':
    _validate_pix2pix(t)
  else:
    _validate_cyclegan(config)


def _validate_replicas(config: ml_collections.ConfigDict) -> None:
  from gan_jax.config import parse_replica_values  # pylint: disable=g-import-not-at-top

  k = config.get('num_replicas', 1)
  if not isinstance(k, int) or k < 1:
    raise _err('num_replicas', k, 'use a positive integer (1: one model)')
  if config.get('replica_values', ''):
    if k < 2:
      raise _err('replica_values', config.replica_values, 'needs num_replicas > 1')
    parse_replica_values(config.replica_values, k, REPLICA_FIELDS[config.translation.kind])
  if config.get('replica_impl', 'auto') not in ('auto', 'vmap', 'unroll'):
    raise _err('replica_impl', config.replica_impl, "use 'auto', 'vmap' or 'unroll'")


def _validate_pix2pix(t: ml_collections.ConfigDict) -> None:
  from gan_jax.core import losses  # pylint: disable=g-import-not-at-top

  if t.direction not in ('a2b', 'b2a'):
    raise _err('translation.direction', t.direction, "use 'a2b' or 'b2a'")
  if t.direction == 'b2a' and not t.data.startswith('pairs:'):
    raise _err(
      'translation.direction', t.direction,
      "'b2a' (train B -> A) needs your own pairs, translation.data='pairs:/path'",
    )  # fmt: skip
  if t.loss not in losses.LOSSES:
    raise _err('translation.loss', t.loss, f'use one of {sorted(losses.LOSSES)}')
  for field in ('g_width', 'd_width'):
    if t[field] < 1:
      raise _err(f'translation.{field}', t[field], 'use a width >= 1')
  if t.patch_layers < -1:
    raise _err('translation.patch_layers', t.patch_layers, 'use >= 0, or -1 (from the size)')
  if t.hole < 0:
    raise _err('translation.hole', t.hole, 'use a side >= 1, or 0 (half the image side)')
  if t.l1_weight < 0:
    raise _err('translation.l1_weight', t.l1_weight, 'use a weight >= 0')


def _validate_cyclegan(config: ml_collections.ConfigDict) -> None:
  t = config.translation
  for field in ('width', 'blocks', 'd_width'):
    if t[field] < 1:
      raise _err(f'translation.{field}', t[field], 'use an integer >= 1')
  if t.patch_layers < 0:
    raise _err('translation.patch_layers', t.patch_layers, 'use >= 0')
  if t.history < 0:
    raise _err('translation.history', t.history, 'use >= 0 (0 turns the history off)')
  if t.cycle_weight < 0 or t.identity_ratio < 0:
    raise ConfigError(
      f'translation.cycle_weight={t.cycle_weight} and translation.identity_ratio='
      f'{t.identity_ratio} must be >= 0.'
    )
  if t.hold_steps != -1 and not 0 <= t.hold_steps < config.train.steps:
    raise _err(
      'translation.hold_steps', t.hold_steps,
      f'use -1 (half of train.steps) or a value in [0, {config.train.steps - 1}]',
    )  # fmt: skip


def hold_steps(config: ml_collections.ConfigDict) -> int:
  """CycleGAN's steps at the full learning rate: `translation.hold_steps`, or half of
  `train.steps` for -1 (the script's default)."""
  t = config.translation
  return config.train.steps // 2 if t.hold_steps == -1 else int(t.hold_steps)


def check_metrics(config: ml_collections.ConfigDict, metrics: Sequence[str]) -> None:
  """Raises a one-line ConfigError unless a run of `config` logs every name in `metrics`.

  Raises:
    ConfigError: evaluation is off, or a name that the kind's evaluation never logs.
  """
  kind = config.translation.kind
  if not config.eval_every:
    raise ConfigError(
      f'eval_every=0 (evaluation off), but metrics {", ".join(metrics)} are asked for; set '
      'eval_every > 0.'
    )
  for metric in metrics:
    if metric not in EVAL_METRICS[kind]:
      raise ConfigError(
        f'metric {metric!r} is never computed by a {kind} run; its evaluations are named '
        f'{", ".join(EVAL_METRICS[kind])}.'
      )
