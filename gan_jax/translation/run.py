"""Translation run folders: the record written beside the checkpoints, and loading it back.

A translation run folder (written by `gan-jax train` of a translation config into
`--workdir`, by `scripts/pix2pix_task.py` into `--out`, by `scripts/cyclegan_task.py` into
each `OUT/seed_<s>`, or by `save_translation_run`) holds

    translation_run.json   the record: kind, task, image shapes, the model's arguments
    checkpoints/<step>/    Orbax checkpoints of the whole state (`gan_jax.training.checkpoint`)

The record (`RECORD_FILE`, written atomically: a temporary file renamed over the old one):

    {"format_version": 1,
     "kind": "pix2pix" | "cyclegan",
     "task": {...},                  the task's description (`tasks.describe` /
                                     `tasks.describe_unpaired`); task["task"] is its name
     "image_shapes": {"a": [H, W, C], "b": [H, W, C]},   domain A = the inputs of 'a2b'
                                     (pix2pix: the condition x), domain B = its outputs
     "model": {...},                 every argument of `create_pix2pix` / `create_cyclegan`,
                                     so that `create_*(**model)` rebuilds the state's structure
     "seed": int}

`load_translation_run(workdir)` rebuilds the state from `model`, restores the latest readable
checkpoint into it and returns a `TranslationRun`: the generator(s) in inference mode, G 'a2b'
(pix2pix: the U-Net; CycleGAN: G: A -> B) and, for CycleGAN, F 'b2a'.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

import jax
import numpy as np
from flax import nnx

from gan_jax.errors import UnreadableCheckpointError
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.translation import cyclegan as cyclegan_lib
from gan_jax.translation import pix2pix as pix2pix_lib

RECORD_FILE = 'translation_run.json'
FORMAT_VERSION = 1
KINDS = ('pix2pix', 'cyclegan')
# The directions each kind can translate: pix2pix learns x -> y only.
DIRECTIONS = {'pix2pix': ('a2b',), 'cyclegan': ('a2b', 'b2a')}
_TRAIN_HINT = (
  'train one with gan-jax train --config experiments/pix2pix_inpaint_mnist.py --workdir DIR, '
  'scripts/pix2pix_task.py --out DIR or scripts/cyclegan_task.py --out DIR (then DIR/seed_<s>)'
)


def image_shapes(kind: str, model_args: dict[str, Any]) -> dict[str, list[int]]:
  """{'a': [S, S, C_a], 'b': [S, S, C_b]} of a kind's `create_*` arguments.

  Raises:
    ValueError: for an unknown kind, or arguments without the image size and channels.
  """
  try:
    s = int(model_args['image_size'])
    if kind == 'pix2pix':
      c_a, c_b = int(model_args['in_channels']), int(model_args['out_channels'])
    elif kind == 'cyclegan':
      c_a = int(model_args['a_channels'])
      c_b = int(model_args.get('b_channels') or c_a)
    else:
      raise ValueError(f'unknown translation kind {kind!r}; one of {list(KINDS)}.')
  except (KeyError, TypeError) as e:
    raise ValueError(f'{kind} model arguments lack the image size or channels ({e}).') from None
  return {'a': [s, s, c_a], 'b': [s, s, c_b]}


def write_run_record(
  workdir: str, kind: str, task: dict[str, Any], model_args: dict[str, Any], *, seed: int
) -> dict[str, Any]:
  """Writes `workdir/translation_run.json` atomically (creating `workdir`); returns the record.

  Args:
    workdir: the run folder.
    kind: 'pix2pix' or 'cyclegan'.
    task: JSON-able description of the task; `task['task']` names it ('colorize',
      'superres', 'inpaint', 'sneakers_boots'), which selects how `gan-jax translate` reads
      images (`gan_jax.translation.translate`).
    model_args: the keyword arguments the state was created with (`create_pix2pix(**args)`
      or `create_cyclegan(**args)`), JSON-able.
    seed: the run's seed.

  Raises:
    ValueError: for an unknown kind or arguments without the image size and channels.
  """
  record = {
    'format_version': FORMAT_VERSION,
    'kind': kind,
    'task': dict(task),
    'image_shapes': image_shapes(kind, model_args),
    'model': dict(model_args),
    'seed': int(seed),
  }
  os.makedirs(workdir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{RECORD_FILE}.', dir=workdir)
  try:
    with os.fdopen(fd, 'w') as f:
      json.dump(record, f, indent=2)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600, widened as open() would create it
    os.replace(tmp, os.path.join(workdir, RECORD_FILE))
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return record


def save_translation_run(
  workdir: str,
  kind: str,
  task: dict[str, Any],
  model_args: dict[str, Any],
  state: Any,
  *,
  seed: int,
) -> int:
  """Writes the record and `state` as the checkpoint of its step; returns that step.

  Raises:
    ValueError: as `write_run_record`.
    gan_jax.errors.CheckpointWriteError: the checkpoint could not be written.
  """
  write_run_record(workdir, kind, task, model_args, seed=seed)
  with Checkpointer(workdir, keep=1) as ckpt:
    return ckpt.save(state)


def _not_a_run(workdir: str) -> FileNotFoundError:
  seeds = sorted(
    d
    for d in os.listdir(workdir)
    if d.startswith('seed_') and os.path.isfile(os.path.join(workdir, d, RECORD_FILE))
  )
  if seeds:
    return FileNotFoundError(
      f'{workdir!r} holds the seeds of a CycleGAN run ({", ".join(seeds)}); give one of them, '
      f'e.g. --workdir {os.path.join(workdir, seeds[0])}.'
    )
  if os.path.isfile(os.path.join(workdir, 'config.json')):
    return FileNotFoundError(
      f'{workdir!r} is a `gan-jax train` run (it has config.json), not a translation run; '
      'use `gan-jax sample` for it, or ' + _TRAIN_HINT + '.'
    )
  return FileNotFoundError(
    f'{workdir!r} is not a translation run: it has no {RECORD_FILE}; ' + _TRAIN_HINT + '.'
  )


def read_run_record(workdir: str) -> dict[str, Any]:
  """The record of a translation run folder, checked (cheap: no JAX, no checkpoint).

  Raises:
    FileNotFoundError: `workdir` does not exist or holds no record (the message says what
      it is instead: a `gan-jax train` run, or a CycleGAN folder of seeds).
    gan_jax.errors.UnreadableCheckpointError: the record is not valid JSON, or names an
      unknown kind or lacks the model's arguments.
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'workdir {workdir!r} does not exist; ' + _TRAIN_HINT + '.')
  path = os.path.join(workdir, RECORD_FILE)
  if not os.path.isfile(path):
    raise _not_a_run(workdir)
  try:
    with open(path, encoding='utf-8') as f:
      record = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise UnreadableCheckpointError(
      f'{path!r} is not valid JSON ({e}); it is written by the translation scripts: train '
      'again in a new folder.'
    ) from None
  problem = None
  if not isinstance(record, dict):
    problem = f'a JSON {type(record).__name__}, not an object'
  elif record.get('kind') not in KINDS:
    problem = f'kind {record.get("kind")!r}, not one of {list(KINDS)}'
  elif not isinstance(record.get('model'), dict) or not isinstance(record.get('task'), dict):
    problem = 'no "model" or "task" object'
  else:
    try:
      shapes = image_shapes(record['kind'], record['model'])
    except ValueError as e:
      problem = str(e)
    else:
      record = {**record, 'image_shapes': shapes}
  if problem:
    raise UnreadableCheckpointError(
      f'{path!r} holds {problem}; it is written by the translation scripts: train again in a '
      'new folder.'
    )
  return record


@dataclasses.dataclass(frozen=True, eq=False)
class TranslationRun:
  """A translation run restored from its latest checkpoint.

  Attributes:
    workdir: the run folder.
    kind: 'pix2pix' or 'cyclegan'.
    record: the checked `translation_run.json` (task, image_shapes, model, seed).
    step: the step of the restored checkpoint.
    model: the static `Pix2Pix` or `CycleGAN`.
    state: the restored `Pix2PixState` or `CycleGANState` (on the default device).
  """

  workdir: str
  kind: str
  record: dict[str, Any]
  step: int
  model: Any
  state: Any
  _compiled: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def task(self) -> str:
    """The task's name ('colorize', 'superres', 'inpaint', 'sneakers_boots', ...)."""
    return str(self.record['task'].get('task', ''))

  @property
  def directions(self) -> tuple[str, ...]:
    """('a2b',) for pix2pix, ('a2b', 'b2a') for CycleGAN."""
    return DIRECTIONS[self.kind]

  def check_direction(self, direction: str) -> None:
    """Raises a one-line ValueError unless this run translates in `direction`."""
    check_direction(self.kind, direction)

  def input_shape(self, direction: str = 'a2b') -> tuple[int, int, int]:
    """(H, W, C) of the generator's inputs in `direction`."""
    self.check_direction(direction)
    return tuple(self.record['image_shapes'][direction[0]])

  def output_shape(self, direction: str = 'a2b') -> tuple[int, int, int]:
    """(H, W, C) of the generator's outputs in `direction`."""
    self.check_direction(direction)
    return tuple(self.record['image_shapes'][direction[-1]])

  def generator(self, direction: str = 'a2b') -> nnx.Module:
    """The generator of `direction` as an NNX module holding the checkpoint's weights
    (pix2pix: `UNetGenerator`, call with `train=False` for inference: BatchNorm running
    averages, no dropout; CycleGAN: `ResnetGenerator`, deterministic)."""
    self.check_direction(direction)
    if self.kind == 'pix2pix':
      return nnx.merge(self.model.g_graphdef, self.state.g_params, self.state.g_batch_stats)
    return nnx.merge(self.model.g_graphdefs[direction], self.state.g_params[direction])

  def translate(
    self, inputs: np.ndarray, direction: str = 'a2b', *, batch_size: int = 64
  ) -> np.ndarray:
    """The generator of `direction` in inference mode over `inputs`, in batches.

    Args:
      inputs: float32 `[N, H, W, C_in]` in [-1, 1] (`input_shape(direction)`).
      direction: 'a2b', or 'b2a' (CycleGAN's F).
      batch_size: images per call (>= 1).

    Returns:
      float32 numpy `[N, H, W, C_out]` in [-1, 1].

    Raises:
      ValueError: for a direction the run lacks, or inputs of another shape.
    """
    want = self.input_shape(direction)
    x = np.asarray(inputs, np.float32)
    if x.ndim != 4 or x.shape[1:] != want:
      raise ValueError(f'{self.kind} {direction} inputs must be [N, {", ".join(map(str, want))}], '
                       f'got {x.shape}.')  # fmt: skip
    if direction not in self._compiled:
      model = self.model
      if self.kind == 'pix2pix':
        fn = lambda st, x: model.translate(st.g_params, st.g_batch_stats, x, train=False)[0]
      else:
        fn = lambda st, x: model.translate(st.g_params, direction, x)
      self._compiled[direction] = jax.jit(fn)
    run = self._compiled[direction]
    outs = [
      np.asarray(run(self.state, x[i : i + batch_size])) for i in range(0, x.shape[0], batch_size)
    ]
    if not outs:
      return np.zeros((0, *self.output_shape(direction)), np.float32)
    return np.concatenate(outs, axis=0)


def check_direction(kind: str, direction: str) -> None:
  """Raises a one-line ValueError unless a run of `kind` translates in `direction`."""
  if direction not in ('a2b', 'b2a'):
    raise ValueError(f"direction {direction!r} must be 'a2b' or 'b2a'.")
  if direction not in DIRECTIONS[kind]:
    raise ValueError(
      f'a {kind} run translates a2b only (inputs to outputs); it has no b2a generator. '
      'Drop --direction b2a (CycleGAN runs have both).'
    )


def load_translation_run(workdir: str) -> TranslationRun:
  """Loads a translation run folder: its record and its latest readable checkpoint.

  Args:
    workdir: a folder written by `scripts/pix2pix_task.py`, a seed folder of
      `scripts/cyclegan_task.py`, or one of `save_translation_run`.

  Returns:
    a `TranslationRun` (kind, record, step, model, state; `generator`, `translate`).

  Raises:
    FileNotFoundError: `workdir` is missing, is not a translation run (no record), or holds
      no checkpoint, or none that reads (one line each).
    gan_jax.errors.UnreadableCheckpointError: the record is garbled or describes no model
      that can be built.
  """
  record = read_run_record(workdir)
  kind = record['kind']
  create = pix2pix_lib.create_pix2pix if kind == 'pix2pix' else cyclegan_lib.create_cyclegan
  try:
    model, state = create(**record['model'])
  except (TypeError, ValueError, KeyError) as e:
    raise UnreadableCheckpointError(
      f'{os.path.join(workdir, RECORD_FILE)!r} does not describe a {kind} model that can be '
      f'built ({type(e).__name__}: {e}); train again in a new folder.'
    ) from None
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise FileNotFoundError(
      f'{workdir!r} has no checkpoint yet (no checkpoints/ folder); train it first, or wait '
      'for its first checkpoint.'
    )
  with Checkpointer(workdir, keep=1_000_000, read_only=True) as ckpt:
    if ckpt.latest_step() is None:
      raise FileNotFoundError(
        f'{workdir!r} has no checkpoint yet (checkpoints/ is empty); train it first, or wait '
        'for its first checkpoint.'
      )
    state = ckpt.restore(state)
  return TranslationRun(
    workdir=workdir,
    kind=kind,
    record=record,
    step=int(jax.device_get(state.step)),
    model=model,
    state=state,
  )
