"""`gan-jax edit`: invert an image, move its latent along an attribute direction, write a strip.

    gan-jax edit --workdir runs/mnist_dcgan --image digit.png --attribute ink --out strip.png
    gan-jax edit --workdir runs/mnist_dcgan --image a.png b.png --attribute class_8 \
        --strengths -4,-2,0,2,4 --hold ink
    gan-jax edit --workdir runs/celeba_dcgan --image face.png --direction smiling.npz

For each input image the strip shows one row: [input | reconstruction | G(z + s n) for each
strength s], where z is the image's inversion (`gan_jax.latent.invert`, EMA G in inference
mode, with the BatchNorm statistics the run's `eval.ema_batch_stats` or `--ema-stats` gives
it, `gan_jax.core.sampling.sampling_batch_stats`) and n the attribute's unit direction
(InterFaceGAN, `gan_jax.latent`), fitted on `--num-latents` samples of G (the same G). Attributes: 'ink' (mean ink / brightness) for every run, and
'class_0'..'class_9' (the pinned LeNet's log-odds of the class) for MNIST and Fashion-MNIST
runs; `--direction FILE.npz` takes any direction saved with `gan_jax.latent.save_direction`
(e.g. a CelebA attribute fitted from labelled faces). Fitted directions are cached in
`<workdir>/directions/<attribute>.npz`, together with the checkpoint step and fitting options
they came from; another step or option refits them (as does --refit).

This module only builds the parser and runs the command; JAX is imported when the command
runs, so `gan-jax --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from typing import Any

from gan_jax.training import run_lock
from gan_jax.errors import WorkdirLockedError

DEFAULT_STRENGTHS = (-3.0, -1.5, 0.0, 1.5, 3.0)


class EditUsageError(ValueError):
  """A mistake in the `edit` command's arguments; `gan-jax` prints it as one line (status 2)."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
  """Adds the `edit` subcommand to `build_parser`'s subparsers; returns it."""
  p = sub.add_parser(
    'edit',
    help='invert an image and edit it along an attribute direction (InterFaceGAN)',
    description='Inverts each --image into the run\'s latent space, fits (or reads from '
    '<workdir>/directions/) the attribute\'s direction, and writes a PNG strip per image: '
    '[input | reconstruction | edits at each strength].',
  )
  p.add_argument('--workdir', required=True, help='run folder written by `gan-jax train`')
  p.add_argument(
    '--image', required=True, nargs='+', help='PNG/JPEG image(s) to edit (one strip row each)'
  )
  which = p.add_mutually_exclusive_group(required=True)
  which.add_argument(
    '--attribute', help='attribute to edit: ink, or class_0..class_9 for MNIST-like runs'
  )
  which.add_argument(
    '--direction', help='a direction .npz file (gan_jax.latent.save_direction) instead'
  )
  amount = p.add_mutually_exclusive_group()
  amount.add_argument(
    '--strength', type=float, help='one edit strength: z moves this far along the unit direction'
  )
  amount.add_argument(
    '--strengths', help='comma-separated strengths (default -3,-1.5,0,1.5,3); |z| ~ sqrt(d)'
  )
  p.add_argument('--out', default='edit.png', help='PNG file to write (default edit.png)')
  p.add_argument('--step', type=int, help='checkpoint step (default: latest)')
  p.add_argument('--no-ema', action='store_true', help='use the raw, not the EMA, G')
  p.add_argument(
    '--ema-stats',
    choices=('raw', 'standing'),
    default=None,
    help="BatchNorm statistics of the EMA G: 'raw' (the raw G's running averages) or "
    "'standing' (recomputed from the EMA weights, seeded with the run's seed, Brock et al. "
    "2019); default: the run's eval.ema_batch_stats",
  )
  p.add_argument(
    '--hold',
    default='',
    help='comma-separated attributes to hold fixed: their directions are projected out '
    '(conditional manipulation, Shen et al. 2020 eq. 5)',
  )
  p.add_argument(
    '--num-latents', type=int, default=5000, help='latents sampled to fit a direction (5000)'
  )
  p.add_argument(
    '--method', default='svm', choices=('svm', 'logistic', 'mean_diff'), help='direction fit'
  )
  p.add_argument('--refit', action='store_true', help='fit the direction even if cached')
  p.add_argument('--seed', type=int, default=0, help='seed of fitting latents and inversion')
  p.add_argument('--inversion-steps', type=int, default=300, help='Adam steps (default 300)')
  p.add_argument('--restarts', type=int, default=8, help='random starts per image (default 8)')
  p.add_argument('--lr', type=float, default=0.1, help='Adam learning rate (default 0.1)')
  p.add_argument(
    '--feature-weight',
    type=float,
    default=1.0,
    help='weight of the LeNet feature distance in the inversion (MNIST-like runs; default 1)',
  )
  p.add_argument(
    '--latent-reg',
    default='norm',
    choices=('norm', 'sphere', 'none'),
    help='keep z near the prior: penalty (|z|^2/d - 1)^2, projection on the sphere, or none',
  )
  p.add_argument('--resize', action='store_true', help='resize images to the run\'s size')
  p.add_argument('--label', type=int, help='class label, for a class-conditional generator')
  p.add_argument('--scale', type=int, default=2, help='pixel upscaling of the strip (default 2)')
  if hasattr(p, '_negative_number_matcher'):
    # argparse reads '-3,-1.5,0' as an unknown option (only '-3' or '-1.5' look like numbers to
    # it), so `--strengths -3,-1.5,0` would fail; this parser has no options that start with a
    # digit, so every '-<digit>...' word is a value here. (`--strengths=-3,...` works anyway.)
    p._negative_number_matcher = re.compile(r'^-\.?\d[\d.eE+,-]*$')
  return p


def _strengths(args: argparse.Namespace) -> tuple[float, ...]:
  if args.strength is not None:
    return (args.strength,)
  if args.strengths is None:
    return DEFAULT_STRENGTHS
  try:
    values = tuple(float(s) for s in args.strengths.split(',') if s.strip())
  except ValueError:
    values = ()
  if not values or not all(math.isfinite(v) for v in values):
    raise EditUsageError(
      f'--strengths={args.strengths!r} must be comma-separated finite numbers, e.g. '
      '-3,-1.5,0,1.5,3.'
    )
  return values


def read_images(paths: list[str], image_shape: tuple[int, int, int], resize: bool):
  """float32 `[N, H, W, C]` in [-1, 1] from image files, converted to C channels.

  Raises:
    EditUsageError: a missing or unreadable file, or one of another size (without resize).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top

  h, w, c = image_shape
  out = []
  for path in paths:
    if not os.path.isfile(path):
      raise EditUsageError(f'--image {path!r} not found.')
    try:
      with Image.open(path) as img:
        img = img.convert('L' if c == 1 else 'RGB')
        if img.size != (w, h):
          if not resize:
            raise EditUsageError(
              f'--image {path!r} is {img.width}x{img.height} but this run\'s generator makes '
              f'{w}x{h} images; resize it, or pass --resize.'
            )
          img = img.resize((w, h), Image.BILINEAR)
        x = np.asarray(img, np.float32)
    except (UnidentifiedImageError, OSError) as e:
      raise EditUsageError(f'cannot read --image {path!r}: {e}') from None
    out.append((x[..., None] if x.ndim == 2 else x) / 127.5 - 1.0)
  return np.stack(out)


class _Attributes:
  """The attribute functions of a run, built once so their jit caches are reused."""

  def __init__(self, config: Any):
    from gan_jax import latent  # pylint: disable=g-import-not-at-top

    shape = tuple(config.data.image_size for _ in range(2)) + (config.data.channels,)
    self.dataset = config.data.name
    self.names = latent.attribute_names(self.dataset, shape)
    self._fns: dict[str, Any] = {}

  def check(self, name: str, flag: str = '--attribute') -> None:
    if name not in self.names:
      raise EditUsageError(
        f'unknown {flag} {name!r} for this {self.dataset} run; choose from '
        f'{", ".join(self.names)} (or give --direction FILE.npz).'
      )

  def fn(self, name: str):
    from gan_jax import latent  # pylint: disable=g-import-not-at-top

    if name not in self._fns:
      if name == 'ink':
        self._fns[name] = latent.ink_mass
      else:
        from gan_jax.metrics.lenet import load_lenet  # pylint: disable=g-import-not-at-top

        k = int(name.split('_')[1])
        # The log-odds, not the 0/1 decision: a poorly trained G may make no image of
        # class k, and the top/bottom fractions of a continuous score always exist.
        self._fns[name] = latent.class_attribute(load_lenet(self.dataset), k, 'log_odds')
    return self._fns[name]


def _direction(
  args, attrs: _Attributes, name: str, gan, state, step: int, use_ema: bool, stats: Any = None
):
  """The unit direction of attribute `name`: cached in <workdir>/directions, else fitted.

  `stats`: (policy, G's BatchNorm statistics) of a generator sampled with standing
  statistics, which the cache records; None for the raw generator's running averages.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from gan_jax import latent  # pylint: disable=g-import-not-at-top

  meta = dict(
    attribute=name,
    score='ink_mass' if name == 'ink' else 'lenet_log_odds',
    step=step,
    method=args.method,
    num_latents=args.num_latents,
    seed=args.seed,
    ema=use_ema,
    label=-1 if args.label is None else args.label,
  )
  if stats is not None:  # only then: directions cached before the policy still match
    meta['ema_stats'] = stats[0]
  path = os.path.join(args.workdir, 'directions', f'{name}.npz')
  if os.path.isfile(path) and not args.refit:
    try:
      direction, cached = latent.load_direction(path)
    except (OSError, ValueError):
      cached = None
    if cached == meta and direction.shape == (gan.latent_dim,):
      print(f'using the cached direction of {name!r}: {path}')
      return direction
  labels = None if args.label is None else np.full(args.num_latents, args.label, np.int32)
  try:
    direction = latent.fit_attribute_direction(
      gan,
      state,
      attrs.fn(name),
      jax.random.fold_in(jax.random.PRNGKey(args.seed), 1),
      num_latents=args.num_latents,
      method=args.method,
      use_ema=use_ema,
      labels=labels,
      batch_stats=None if stats is None else stats[1],
    )
  except ValueError as e:  # e.g. an attribute that no sampled image has
    raise EditUsageError(f'cannot fit the direction of {name!r}: {e}') from None
  fitted = f'fitted the direction of {name!r} ({args.method}, {args.num_latents} latents)'
  try:
    with run_lock.hold(args.workdir):  # the run folder's one writer while it caches
      latent.save_direction(path, direction, **meta)
  except WorkdirLockedError as e:  # being trained: use the direction, write nothing there
    print(f'{fitted}; not cached in {path}: the run folder is being written by '
          f'{run_lock.describe(e.holder)}')  # fmt: skip
    return direction
  print(f'{fitted}: {path}')
  return direction


def run(args: argparse.Namespace) -> None:
  """Runs `gan-jax edit` (see the module docstring).

  Raises:
    EditUsageError: a usage mistake (printed as one line by `gan_jax.cli.main`).
    FileNotFoundError: the run has no config.json or checkpoint.
  """
  if not os.path.isdir(args.workdir):
    raise EditUsageError(
      f'workdir {args.workdir!r} does not exist; train first with '
      '`gan-jax train --config ... --workdir ...`.'
    )
  strengths = _strengths(args)
  for name, value in (
    ('--num-latents', args.num_latents),
    ('--inversion-steps', args.inversion_steps),
    ('--restarts', args.restarts),
    ('--scale', args.scale),
  ):
    if value < 1:
      raise EditUsageError(f'{name}={value} must be a positive number.')
  if args.strength is not None and not math.isfinite(args.strength):
    raise EditUsageError(f'--strength={args.strength} must be a finite number.')
  if not (math.isfinite(args.lr) and args.lr > 0):
    raise EditUsageError(f'--lr={args.lr} must be a positive finite number.')
  from gan_jax.core import sampling  # pylint: disable=g-import-not-at-top

  try:
    sampling.check_image_path(args.out)
    sampling.check_scale(args.scale)
  except ValueError as e:
    raise EditUsageError(str(e)) from None
  for path in args.image:
    if not os.path.isfile(path):
      raise EditUsageError(f'--image {path!r} not found.')
  config_path = os.path.join(args.workdir, 'config.json')
  if not os.path.isfile(config_path):
    raise EditUsageError(
      f'{args.workdir!r} holds no config.json: not a gan-jax run folder (train first).'
    )
  import ml_collections  # pylint: disable=g-import-not-at-top

  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  attrs = _Attributes(config)
  hold = [h.strip() for h in args.hold.split(',') if h.strip()]
  if args.attribute is not None:
    attrs.check(args.attribute)
    if args.attribute in hold:
      raise EditUsageError(f'--hold names the edited attribute {args.attribute!r} itself.')
  for h in hold:
    attrs.check(h, '--hold attribute')
  shape = (config.data.image_size, config.data.image_size, config.data.channels)
  images = read_images(args.image, shape, args.resize)

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from gan_jax import latent  # pylint: disable=g-import-not-at-top

  from gan_jax.core import sampling
  from gan_jax.training.checkpoint import load_run  # pylint: disable=g-import-not-at-top

  config, gan, state = load_run(args.workdir, args.step)
  num_classes = int(getattr(gan, 'num_classes', 0) or 0)  # > 0: a class-conditional G
  if args.label is not None and not num_classes:
    raise EditUsageError('--label needs a class-conditional run; this run\'s G is not: drop it.')
  if num_classes and args.label is None:
    raise EditUsageError(
      f'this run is class-conditional: give --label K (0 to {num_classes - 1}), the class '
      'the images are inverted and edited in.'
    )
  if num_classes and not 0 <= args.label < num_classes:
    raise EditUsageError(f'--label={args.label} is out of range: 0 to {num_classes - 1}.')
  step = int(jax.device_get(state.step))
  use_ema = config.train.ema_decay > 0 and not args.no_ema
  from gan_jax.config import ema_batch_stats  # pylint: disable=g-import-not-at-top

  policy = args.ema_stats or ema_batch_stats(config)
  g_stats = sampling.sampling_batch_stats(
    gan, state, use_ema=use_ema, ema_stats=policy, seed=config.seed
  )
  stats = (policy, g_stats) if use_ema and policy != 'raw' else None

  if args.direction is not None:
    try:
      direction, _ = latent.load_direction(args.direction)
    except (OSError, ValueError) as e:
      raise EditUsageError(f'cannot read --direction {args.direction!r}: {e}') from None
    if direction.shape != (gan.latent_dim,):
      raise EditUsageError(
        f'--direction {args.direction!r} has {direction.shape[0]} dimensions but this run\'s '
        f'z has {gan.latent_dim}.'
      )
    what = os.path.basename(args.direction)
  else:
    direction = _direction(args, attrs, args.attribute, gan, state, step, use_ema, stats)
    what = repr(args.attribute)
  if hold:
    others = [_direction(args, attrs, h, gan, state, step, use_ema, stats) for h in hold]
    direction = latent.orthogonalize(direction, np.stack(others))
    what += f' holding {", ".join(hold)}'

  feature_fn = None
  if args.feature_weight > 0 and any(n.startswith('class_') for n in attrs.names):
    feature_fn = latent.lenet_feature_fn(attrs.dataset)
  n = images.shape[0]
  labels = None if args.label is None else np.full(n, args.label, np.int32)
  inv = latent.invert(
    gan,
    state,
    images,
    key=jax.random.fold_in(jax.random.PRNGKey(args.seed), 2),
    steps=args.inversion_steps,
    restarts=args.restarts,
    lr=args.lr,
    feature_fn=feature_fn,
    feature_weight=args.feature_weight,
    latent_reg=None if args.latent_reg == 'none' else args.latent_reg,
    use_ema=use_ema,
    labels=labels,
    batch_stats=g_stats,
  )
  s = np.asarray(strengths, np.float32)
  z = np.asarray(latent.edit(inv.z[:, None], direction, s)).reshape(n * len(s), -1)
  edit_labels = None if labels is None else np.repeat(labels, len(s))
  edited = np.asarray(
    latent.generate(gan, state, z, use_ema=use_ema, labels=edit_labels, batch_stats=g_stats)
  )
  edited = edited.reshape((n, len(s)) + images.shape[1:])
  strip = np.concatenate([images[:, None], inv.images[:, None], edited], axis=1)
  sampling.save_grid(
    args.out, strip.reshape((-1,) + images.shape[1:]), ncol=2 + len(s), scale=args.scale
  )
  print(
    f'wrote {args.out}: {n} row(s) of [input | reconstruction | {what} at strengths '
    f'{",".join(f"{v:g}" for v in strengths)}] from step {step}; reconstruction MSE '
    f'{float(np.mean(inv.mse)):.4f} (pixels in [-1, 1])'
  )
