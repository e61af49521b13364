"""The `gan-jax` command line: `train` and `sample`.

    gan-jax train --config experiments/mnist_dcgan.py --workdir runs/mnist_dcgan \
        [--config.train.steps=200 --config.data.data_dir=../shared/tfds ...]
    gan-jax sample --workdir runs/mnist_dcgan --num 64 --out samples.png

Kept short so that everything it calls can be imported in a notebook. A usage problem (a
missing or broken config file, an unknown config key, a value of the wrong type, an invalid
field, a missing dataset or workdir) prints one line, `gan-jax: error: ...`, and exits with
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import os
import sys
from typing import Any, Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position

from gan_jax.errors import (  # pylint: disable=wrong-import-position
  ConfigError,
  NonFiniteError,
  UnreadableCheckpointError,
)


class UsageError(Exception):
  """A command-line mistake; printed as one line, exit status 2."""


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads `path.py` or `path.py:variant` and returns its `get_config([variant])`.

  Raises:
    UsageError: if the file is missing, has no get_config, or get_config fails.
  """
  path, _, variant = spec.partition(':')
  if not os.path.isfile(path):
    raise UsageError(
      f'config file {path!r} not found (give a path such as experiments/mnist_dcgan.py).'
    )
  module_spec = importlib.util.spec_from_file_location('_gan_jax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'config file {path!r} failed to load: {type(e).__name__}: {e}') from e
  if not hasattr(module, 'get_config'):
    raise UsageError(f'config file {path!r} defines no get_config() function.')
  try:
    return module.get_config(variant) if variant else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'{path}: get_config({variant!r}) failed: {e}') from e


def _all_keys(config: ml_collections.ConfigDict, prefix: str = '') -> list[str]:
  keys = []
  for k, v in config.items():
    if isinstance(v, ml_collections.ConfigDict):
      keys += _all_keys(v, f'{prefix}{k}.')
    else:
      keys.append(f'{prefix}{k}')
  return keys


def _parse_value(raw: str, kind: type, key: str) -> Any:
  try:
    if kind is bool:
      low = raw.lower()
      if low in ('true', '1', 'yes'):
        return True
      if low in ('false', '0', 'no'):
        return False
      raise ValueError
    if kind is int:
      return int(raw)
    if kind is float:
      return float(raw)
    if kind is str:
      return raw
    if kind in (tuple, list):
      value = ast.literal_eval(raw)
      if not isinstance(value, (tuple, list)):
        value = (value,)
      return kind(value)
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    raise UsageError(f'--config.{key}={raw!r}: expected a value of type {kind.__name__}.') from None


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: Sequence[str]
) -> ml_collections.ConfigDict:
  """Applies `--config.a.b=value` (or `--config.a.b value`) arguments to `config`.

  Values are parsed as the type of the field they replace (bool: true/false; tuples as
  Python literals).

  Raises:
    UsageError: for an unknown key (with the closest known ones) or a value of the wrong type.
  """
  known = _all_keys(config)
  items = list(overrides)
  i = 0
  while i < len(items):
    arg = items[i]
    if not arg.startswith('--config.'):
      raise UsageError(f'unrecognized argument {arg!r}.')
    key, eq, raw = arg[len('--config.') :].partition('=')
    if not eq:
      if i + 1 >= len(items):
        raise UsageError(f'--config.{key} needs a value (--config.{key}=VALUE).')
      raw = items[i + 1]
      i += 1
    i += 1
    if key not in known:
      close = difflib.get_close_matches(key, known, n=3)
      hint = f' Did you mean {", ".join(close)}?' if close else f' Known keys: {", ".join(known)}.'
      raise UsageError(f'unknown config key {key!r}.{hint}')
    *parents, leaf = key.split('.')
    node = config
    for p in parents:
      node = node[p]
    kind = node.get_type(leaf)
    value = None if raw.lower() == 'none' and node[leaf] is None else _parse_value(raw, kind, key)
    if kind is float and isinstance(value, int):
      value = float(value)
    try:
      node[leaf] = value
    except (TypeError, ValueError) as e:
      raise UsageError(f'--config.{key}={raw!r}: {e}') from None
  return config


def _train(args: argparse.Namespace, overrides: list[str]) -> None:
  config = apply_overrides(load_config_file(args.config), overrides)
  from gan_jax import train  # pylint: disable=g-import-not-at-top

  state = train.train_and_evaluate(config, args.workdir)
  step = int(state.step)
  if step < config.train.steps:
    print(
      f'stopped at step {step} of {config.train.steps} with a checkpoint in {args.workdir}; '
      'run the same command again to resume.'
    )
  else:
    print(f'done: checkpoints, samples and logs in {args.workdir}')


def _sample(args: argparse.Namespace) -> None:
  if not os.path.isdir(args.workdir):
    raise UsageError(
      f'workdir {args.workdir!r} does not exist; train first with '
      '`gan-jax train --config ... --workdir ...`.'
    )
  if args.num <= 0:
    raise UsageError(f'--num={args.num} must be a positive number of images.')
  import jax  # pylint: disable=g-import-not-at-top
  from gan_jax import sampling  # pylint: disable=g-import-not-at-top
  from gan_jax.checkpoint import load_run  # pylint: disable=g-import-not-at-top

  config, gan, state = load_run(args.workdir, args.step)
  use_ema = config.train.ema_decay > 0 and not args.no_ema
  z = gan.sample_latents(jax.random.PRNGKey(args.seed), args.num)
  images = jax.device_get(sampling.sample(gan, state, z, use_ema=use_ema))
  sampling.save_grid(args.out, images, scale=args.scale)
  print(f'wrote {args.num} samples from step {int(state.step)} to {args.out}')


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='gan-jax', description='GAN research library for JAX.')
  sub = parser.add_subparsers(dest='command', required=True)
  t = sub.add_parser(
    'train',
    help='train a GAN (resumes from the latest checkpoint in workdir)',
    epilog='Override any config field with --config.FIELD=VALUE, e.g. --config.train.steps=200.',
  )
  t.add_argument(
    '--config',
    required=True,
    help='experiment file, e.g. experiments/mnist_dcgan.py'
    ' (optionally :variant, e.g. experiments/mnist_dcgan.py:tiny)',
  )
  t.add_argument('--workdir', required=True, help='run folder for checkpoints, samples and logs')
  s = sub.add_parser('sample', help='write a grid of samples from a run\'s latest checkpoint')
  s.add_argument('--workdir', required=True, help='run folder written by `gan-jax train`')
  s.add_argument('--num', type=int, default=64, help='number of images (default 64)')
  s.add_argument('--out', default='samples.png', help='PNG file to write (default samples.png)')
  s.add_argument('--seed', type=int, default=0, help='seed of the latent vectors (default 0)')
  s.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  s.add_argument('--scale', type=int, default=2, help='pixel upscaling of the grid (default 2)')
  s.add_argument('--no-ema', action='store_true', help='sample from the raw, not the EMA, G')
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the `gan-jax` console script; returns the exit status."""
  parser = build_parser()
  args, rest = parser.parse_known_args(argv)

  try:
    if args.command == 'train':
      _train(args, rest)
    else:
      if rest:
        raise UsageError(f'unrecognized arguments: {" ".join(rest)}')
      _sample(args)
  except (
    UsageError,
    ConfigError,
    FileNotFoundError,
    PermissionError,
    UnreadableCheckpointError,
  ) as e:
    print(f'gan-jax: error: {e}', file=sys.stderr)
    return 2
  except NonFiniteError as e:
    print(f'gan-jax: error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
