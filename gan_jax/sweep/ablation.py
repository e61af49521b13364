"""Ablation files (their format: the `gan_jax.sweep` docstring): loading and checking them,
and planning them into runs whose configs are all validated before anything runs.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import itertools
import os
import re
from collections.abc import Sequence
from typing import Any

import ml_collections

from gan_jax.config_files import UsageError, apply_overrides, load_config_file
from gan_jax.sweep.spec import Ablation, Cell, Run, override_args
from gan_jax.sweep.summary import FIXED_COLUMNS, TAIL_COLUMNS

ABLATION_KEYS = ('base', 'overrides', 'grid', 'seeds', 'metrics')
_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*\Z')


def _resolve_base(base: str, ablation_path: str) -> str | None:
  """Absolute `path[:variant]` of the base config, or None if no such file is found."""
  path, colon, variant = base.partition(':')
  if os.path.isabs(path):
    candidates = [path]
  else:
    folder = os.path.dirname(os.path.abspath(ablation_path))
    candidates = []
    while True:
      candidates.append(os.path.join(folder, path))
      parent = os.path.dirname(folder)
      if parent == folder:
        break
      folder = parent
    candidates.append(os.path.abspath(path))
  for candidate in candidates:
    if os.path.isfile(candidate):
      return os.path.normpath(candidate) + colon + variant
  return None


def _check_overrides(value: Any, where: str) -> dict[str, Any]:
  if value is None:
    return {}
  if not isinstance(value, dict):
    raise UsageError(f'{where} must be a dict of config key -> value, got {type(value).__name__}.')
  for key in value:
    if not isinstance(key, str) or not key:
      raise UsageError(f'{where}: config keys must be strings such as "train.loss", got {key!r}.')
    if key == 'seed':
      raise UsageError(f"{where} sets 'seed'; give the seeds as the ablation's 'seeds' list.")
  return dict(value)


def _check_name(name: Any, what: str, where: str) -> str:
  if not isinstance(name, str) or not _NAME.match(name):
    raise UsageError(
      f'{where}: {what} {name!r} is not a valid name: use letters, digits and _ . + - '
      '(it becomes part of a folder name).'
    )
  return name


def parse_ablation(spec: Any, path: str, variant: str = '') -> Ablation:
  """Checks what `get_ablation()` returned and turns it into an `Ablation`.

  Args:
    spec: the returned dict (see the module docstring).
    path: the ablation file, for messages and to resolve `base`.
    variant: the variant it was called with.

  Raises:
    UsageError: naming the file and the first problem found.
  """
  where = path
  if not isinstance(spec, dict):
    raise UsageError(
      f'{where}: get_ablation() returned {type(spec).__name__}, not a dict with the keys '
      f'{", ".join(ABLATION_KEYS)}.'
    )
  for key in spec:
    if key not in ABLATION_KEYS:
      close = difflib.get_close_matches(str(key), ABLATION_KEYS, n=1)
      hint = f' Did you mean {close[0]!r}?' if close else ''
      raise UsageError(
        f'{where}: unknown ablation key {key!r}; known: {", ".join(ABLATION_KEYS)}.{hint}'
      )
  base = spec.get('base')
  if not isinstance(base, str) or not base:
    raise UsageError(
      f"{where}: 'base' must name the config file the runs start from, e.g. "
      "'experiments/fashion_mnist_dcgan.py'."
    )
  resolved = _resolve_base(base, path)
  if resolved is None:
    raise UsageError(
      f'{where}: base config {base.partition(":")[0]!r} not found beside the ablation file, in '
      'a folder above it, or in the current folder.'
    )
  overrides = _check_overrides(spec.get('overrides'), f"{where}: 'overrides'")
  grid = spec.get('grid')
  if not isinstance(grid, dict) or not grid:
    raise UsageError(
      f"{where}: 'grid' is empty or missing: give at least one axis with at least one label, "
      "e.g. {'loss': {'hinge': {'train.loss': 'hinge'}}}."
    )
  axes = []
  for axis, labels in grid.items():
    _check_name(axis, 'axis', where)
    if axis in FIXED_COLUMNS + TAIL_COLUMNS:
      raise UsageError(f'{where}: axis name {axis!r} is reserved for a results.csv column.')
    if not isinstance(labels, dict) or not labels:
      raise UsageError(
        f'{where}: grid axis {axis!r} has no labels: give a dict of label -> overrides.'
      )
    entries = []
    for label, label_overrides in labels.items():
      _check_name(label, f'label of axis {axis!r}', where)
      entries.append(
        (label, _check_overrides(label_overrides, f'{where}: grid[{axis!r}][{label!r}]'))
      )
    axes.append((axis, tuple(entries)))
  seeds = spec.get('seeds', [0])
  if (
    not isinstance(seeds, (list, tuple))
    or not seeds
    or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
  ):
    raise UsageError(f"{where}: 'seeds' must be a non-empty list of integers, got {seeds!r}.")
  if len(set(seeds)) != len(seeds):
    raise UsageError(f"{where}: 'seeds' repeats a seed: {list(seeds)}.")
  metrics = spec.get('metrics')
  if metrics is not None:
    if isinstance(metrics, str):
      metrics = metrics.split(',')
    if not isinstance(metrics, (list, tuple)) or not all(
      isinstance(m, str) and m.strip() for m in metrics
    ):
      raise UsageError(
        f"{where}: 'metrics' must be a list of result names such as ['fid_lenet', "
        f"'kid_lenet'], got {metrics!r}."
      )
    metrics = tuple(dict.fromkeys(m.strip().removeprefix('eval/') for m in metrics))
    if not metrics:
      metrics = None
  return Ablation(
    path=path,
    variant=variant,
    base=resolved,
    overrides=overrides,
    axes=tuple(axes),
    seeds=tuple(seeds),
    metrics=metrics,
  )


def load_ablation(spec: str) -> Ablation:
  """Loads `path.py` or `path.py:variant` and parses its `get_ablation([variant])`.

  Raises:
    UsageError: the file is missing, fails to load, has no get_ablation, get_ablation fails,
      or what it returns is malformed (see `parse_ablation`).
  """
  path, _, variant = spec.partition(':')
  if not os.path.isfile(path):
    raise UsageError(
      f'ablation file {path!r} not found (give a path such as '
      'experiments/ablations/losses_fashion.py).'
    )
  module_spec = importlib.util.spec_from_file_location('_gan_jax_ablation', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'ablation file {path!r} failed to load: {type(e).__name__}: {e}') from e
  if not hasattr(module, 'get_ablation'):
    hint = (
      ' (it defines get_config: that is a config file for `gan-jax train --config`)'
      if hasattr(module, 'get_config')
      else ''
    )
    raise UsageError(f'ablation file {path!r} defines no get_ablation() function{hint}.')
  try:
    returned = module.get_ablation(variant) if variant else module.get_ablation()
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'{path}: get_ablation({variant!r}) failed: {type(e).__name__}: {e}') from e
  return parse_ablation(returned, path, variant)


def _check_metrics(config: ml_collections.ConfigDict, metrics: Sequence[str], where: str) -> None:
  """Raises UsageError if `config` does not evaluate every result key in `metrics`."""
  from gan_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from gan_jax.metrics import evaluate, registry  # pylint: disable=g-import-not-at-top

  if not config.eval_every:
    raise UsageError(
      f'{where}: eval_every=0 (evaluation off), but the ablation reports metrics '
      f'{", ".join(metrics)}; set eval_every > 0.'
    )
  try:
    enabled = evaluate.parse_metrics(config.eval.metrics)
    net = evaluate.resolve_feature_net_name(config.eval.feature_net, config.data.name)
  except ConfigError as e:
    raise UsageError(f'{where}: eval.{e}') from None
  tag = 'inception' if net == 'inception_v3' else 'lenet'
  available = registry.result_families(tag)  # result key -> the eval.metrics entry
  if config.eval.get('raw_generator') and config.train.ema_decay > 0:  # eval/raw_<metric>
    available.update({f'raw_{k}': v for k, v in available.items()})
  for metric in metrics:
    if metric not in available:
      known = ', '.join(k for k in available if not k.endswith('_std'))
      raise UsageError(
        f'{where}: metric {metric!r} is never computed here (feature net {net}); results are '
        f'named {known}.'
      )
    if available[metric] not in enabled:
      raise UsageError(
        f'{where}: metric {metric!r} needs {available[metric]!r} in eval.metrics, which is '
        f'{config.eval.metrics!r}.'
      )


def plan(ablation: Ablation, workdir: str, cli_overrides: Sequence[str] = ()) -> list[Run]:
  """Expands an ablation into its runs and checks every run's config before anything runs.

  Args:
    ablation: a parsed ablation file.
    workdir: the sweep folder.
    cli_overrides: `--config.KEY=VALUE` arguments applied to every run, last.

  Returns:
    The runs, cell by cell (axes in order, the last one fastest), seeds innermost.

  Raises:
    UsageError: a missing base config, an unknown key or a wrongly typed value in any
      override (naming where it is), `seed` on the command line, two labels of one cell that
      set the same key, an invalid run config, or metrics that a run does not compute.
  """
  from gan_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from gan_jax.translation import run_config  # pylint: disable=g-import-not-at-top

  base_config = load_config_file(ablation.base)
  cli = list(cli_overrides)
  if any(a == '--config.seed' or a.startswith('--config.seed=') for a in cli):
    raise UsageError(
      f"--config.seed would give every run one seed; the seeds are the ablation's 'seeds' "
      f'({list(ablation.seeds)}).'
    )
  apply_overrides(copy.deepcopy(base_config), cli)  # names a bad key as `gan-jax train` does
  path = ablation.path

  def check(args: list[str], where: str) -> None:
    try:
      apply_overrides(copy.deepcopy(base_config), args)
    except UsageError as e:
      raise UsageError(f'{path}: {where}: {e}') from None

  common = override_args(ablation.overrides)
  check(common, "'overrides'")
  for axis, labels in ablation.axes:
    for label, overrides in labels:
      check(override_args(overrides), f'grid[{axis!r}][{label!r}]')

  runs = []
  for combo in itertools.product(*(labels for _, labels in ablation.axes)):
    setter: dict[str, str] = {}
    pairs: list[tuple[str, Any]] = []
    labels = tuple((axis, label) for (axis, _), (label, _) in zip(ablation.axes, combo))
    for (axis, label), (_, overrides) in zip(labels, combo):
      for key, value in overrides.items():
        if key in setter:
          raise UsageError(
            f'{path}: cell {",".join(f"{a}={b}" for a, b in labels)}: {key} is set by both '
            f'{setter[key]} and {axis}={label}.'
          )
        setter[key] = f'{axis}={label}'
        pairs.append((key, value))
    cell = Cell(labels=labels, overrides=tuple(pairs))
    for seed in ablation.seeds:
      args = tuple(common + override_args(pairs) + [f'--config.seed={seed}'] + cli)
      config = apply_overrides(copy.deepcopy(base_config), args)
      where = f'{path}: cell {cell.name} seed {seed}'
      if run_config.is_translation(config):  # pix2pix / CycleGAN (gan_jax.translation)
        try:
          run_config.validate(config)
          if ablation.metrics:
            run_config.check_metrics(config, ablation.metrics)
        except ConfigError as e:
          raise UsageError(f'{where}: {e}') from None
      else:
        try:
          config_lib.validate(config)
        except ConfigError as e:
          raise UsageError(f'{where}: {e}') from None
        if ablation.metrics:
          _check_metrics(config, ablation.metrics, where)
      runs.append(
        Run(
          cell=cell,
          seed=seed,
          workdir=os.path.join(workdir, cell.name, f'seed_{seed}'),
          args=args,
          config=config,
        )
      )
  return runs
