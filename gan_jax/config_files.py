"""Experiment config files and `--config.<field>=<value>` overrides, as the command line reads them.

`load_config_file('experiments/mnist_dcgan.py:tiny')` runs the file's `get_config('tiny')`;
`apply_overrides(config, ['--config.train.steps=200'])` sets fields, each parsed as the type
of the value it replaces. Both raise `UsageError` (a one-line command-line mistake), which
`gan_jax.cli.main` prints as `gan-jax: error: ...` with exit status 2. `gan_jax.cli.main` and
`gan_jax.sweep` both read configs this way (here, so that neither imports the other).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from typing import Any, Sequence

import ml_collections


class UsageError(Exception):
  """A command-line mistake; printed as one line, exit status 2."""


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads `path.py` or `path.py:variant` and returns its `get_config([variant])`.

  A config file is Python code, and loading it runs that code: load only files you trust.

  Raises:
    UsageError: if the file is missing or not a .py file, fails to load (or exits while
      loading), has no get_config, or get_config fails, exits, or returns something other
      than a ConfigDict with the blocks of `gan_jax.config.base_config()`.
  """
  path, _, variant = spec.partition(':')
  if not os.path.isfile(path):
    raise UsageError(
      f'config file {path!r} not found (give a path such as experiments/mnist_dcgan.py).'
    )
  if not path.endswith('.py'):
    raise UsageError(
      f'config file {path!r} is not a .py file: a config file is Python code that defines '
      'get_config() (see experiments/mnist_dcgan.py).'
    )
  module_spec = importlib.util.spec_from_file_location('_gan_jax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SystemExit as e:  # sys.exit() in a config file must not end gan-jax with status 0
    raise UsageError(
      f'config file {path!r} called sys.exit({e.code!r}) while loading; it must only define '
      'get_config().'
    ) from None
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'config file {path!r} failed to load: {type(e).__name__}: {e}') from e
  if not callable(getattr(module, 'get_config', None)):
    raise UsageError(f'config file {path!r} defines no get_config() function.')
  try:
    config = module.get_config(variant) if variant else module.get_config()
  except SystemExit as e:
    raise UsageError(
      f'{path}: get_config({variant!r}) called sys.exit({e.code!r}); it must return a config.'
    ) from None
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'{path}: get_config({variant!r}) failed: {e}') from e
  return _checked_config(config, path, variant)


def _checked_config(config: Any, path: str, variant: str) -> ml_collections.ConfigDict:
  """`config` if it is a ConfigDict holding every block of `base_config()`, else UsageError."""
  from gan_jax.config import base_config  # pylint: disable=g-import-not-at-top

  call = f'{path}: get_config({variant!r})'
  if not isinstance(config, ml_collections.ConfigDict):
    raise UsageError(
      f'{call} returned {type(config).__name__}, not an ml_collections.ConfigDict; start from '
      'gan_jax.config.base_config() and return it.'
    )
  blocks = [k for k, v in base_config().items() if isinstance(v, ml_collections.ConfigDict)]
  missing = [b for b in blocks if not isinstance(config.get(b), ml_collections.ConfigDict)]
  if missing:
    raise UsageError(
      f'{call} returned a config without the block(s) {", ".join(missing)}; start from '
      'gan_jax.config.base_config() and change its fields.'
    )
  return config


def _all_keys(config: ml_collections.ConfigDict, prefix: str = '') -> list[str]:
  keys = []
  for k, v in config.items():
    if isinstance(v, ml_collections.ConfigDict):
      keys += _all_keys(v, f'{prefix}{k}.')
    else:
      keys.append(f'{prefix}{k}')
  return keys


def _parse_value(raw: str, kind: type, key: str, default: Any = None) -> Any:
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
    example = f', e.g. --config.{key}={default}' if default is not None else ''
    raise UsageError(
      f'--config.{key}={raw!r}: expected a value of type {kind.__name__}{example}.'
    ) from None


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
    value = (
      None
      if raw.lower() == 'none' and node[leaf] is None
      else _parse_value(raw, kind, key, node[leaf])
    )
    if kind is float and isinstance(value, int):
      value = float(value)
    try:
      node[leaf] = value
    except (TypeError, ValueError) as e:
      raise UsageError(f'--config.{key}={raw!r}: {e}') from None
  return config
