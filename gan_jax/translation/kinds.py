"""The two kinds of translation run, as `gan_jax.translation.train` drives them: one registry
entry each (`KINDS`), holding what differs between pix2pix and CycleGAN.

Each `Kind` turns a translation config (`gan_jax.translation.run_config`) into its task, its
model's arguments and state, its jitted step, the step's batches, its evaluation and its
picture. Batches are a function of (seed, step) only (`batch_indices`), so a run resumed from
a checkpoint draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections
import numpy as np

from gan_jax.errors import ConfigError
from gan_jax.models.resnet_generator import check_resnet_size
from gan_jax.translation import cyclegan as cyclegan_lib
from gan_jax.translation import pix2pix as pix2pix_lib
from gan_jax.translation import run_config
from gan_jax.translation import tasks as tasks_lib
from gan_jax.translation.metrics import direction_scores, image_quality


def batch_indices(seed: int, step: int, stream: int, n: int, size: int) -> np.ndarray:
  """The training images of `stream` (pix2pix: 0, the pairs; CycleGAN: 0 for domain A, 1 for
  B) in step `step`: `size` distinct indices in [0, n), a function of (seed, step, stream)
  only, so that a resumed run draws the same batches (`scripts/cyclegan_task.py`'s order).

  Returns:
    int64 `[size]`.
  """
  return np.random.default_rng([seed, 2 + stream, step]).choice(n, size=size, replace=False)


def _own_data(config: ml_collections.ConfigDict, kind: str):
  t = config.translation
  return tasks_lib.build_source_task(
    t.data,
    kind=kind,
    image_size=t.image_size,
    channels=t.channels or None,
    num_train=t.num_train,
    num_test=t.num_test,
    data_dir=config.data.data_dir,
    download=t.download,
  )


@dataclasses.dataclass(frozen=True)
class Kind:
  """What differs between translation kinds.

  Attributes:
    name: 'pix2pix' or 'cyclegan'.
    build_task: config -> the `PairedTask` / `UnpairedTask` (reads the data).
    describe: (config, task) -> its JSON-able description (translation_run.json's 'task').
    model_args: (config, task) -> the keyword arguments of `create`.
    create: `create_pix2pix` / `create_cyclegan`.
    make_step: (model, mesh) -> jitted `step(state, *batch) -> (state, metrics)`.
    train_step: the pure `train_step(model, state, *batch) -> (state, metrics)` that
      `make_step` jits (`gan_jax.translation.replicas` replicates it).
    batch: (task, seed, step, batch_size) -> the step's numpy batch, a tuple.
    evaluate: (model, state, task, net) -> {metric: float} (`run_config.EVAL_METRICS`).
    picture: (model, state, task, k) -> (rows float32 `[3 k', S, S, C]` in [-1, 1], 3 per
      row).
    classifier: task -> the domain classifier evaluations need, or None.
  """

  name: str
  build_task: Callable[[ml_collections.ConfigDict], Any]
  describe: Callable[[Any], dict[str, Any]]
  model_args: Callable[[ml_collections.ConfigDict, Any], dict[str, Any]]
  create: Callable[..., tuple[Any, Any]]
  make_step: Callable[[Any, Any], Callable[..., Any]]
  train_step: Callable[..., Any]
  batch: Callable[[Any, int, int, int], tuple[np.ndarray, ...]]
  evaluate: Callable[[Any, Any, Any, Any], dict[str, float]]
  picture: Callable[[Any, Any, Any, int], np.ndarray]
  classifier: Callable[[Any], Any]


# -- pix2pix ----------------------------------------------------------------------------------


def _pix2pix_task(config: ml_collections.ConfigDict) -> tasks_lib.PairedTask:
  t = config.translation
  if t.data:
    task = _own_data(config, 'paired')
    return tasks_lib.reversed_pairs(task) if t.direction == 'b2a' else task
  return tasks_lib.build_task(
    t.task,
    data_dir=config.data.data_dir,
    dataset=t.dataset or None,
    num_train=t.num_train,
    num_test=t.num_test,
    seed=config.seed,
    hole=t.hole or None,
  )


def _pix2pix_describe(config: ml_collections.ConfigDict, task: tasks_lib.PairedTask) -> dict:
  out = tasks_lib.describe(task)
  if config.translation.data:
    out['direction'] = config.translation.direction  # 'b2a': B the inputs, A the targets
  return out


def _pix2pix_args(config: ml_collections.ConfigDict, task: tasks_lib.PairedTask) -> dict:
  t = config.translation
  return dict(
    image_size=task.image_size,
    in_channels=task.in_channels,
    out_channels=task.out_channels,
    seed=config.seed,
    g_width=t.g_width,
    g_max_width=8 * t.g_width,
    d_width=t.d_width,
    d_max_width=8 * t.d_width,
    patch_layers=None if t.patch_layers < 0 else t.patch_layers,
    loss=t.loss,
    l1_weight=t.l1_weight,
    lr=t.lr,
  )


def _pix2pix_step(model: pix2pix_lib.Pix2Pix, mesh: Any) -> Callable[..., Any]:
  del mesh  # one device, as scripts/pix2pix_task.py
  return pix2pix_lib.make_train_step(model)


def _pix2pix_batch(task: tasks_lib.PairedTask, seed: int, step: int, bs: int) -> tuple:
  n = task.train_inputs.shape[0]
  idx = batch_indices(seed, step, 0, n, min(bs, n))
  return task.train_inputs[idx], task.train_targets[idx]


def _pix2pix_evaluate(model, state, task: tasks_lib.PairedTask, net) -> dict[str, float]:
  del net
  outputs = pix2pix_lib.translate_batches(model, state, task.test_inputs)
  model_q = image_quality(outputs, task.test_targets)
  base_q = image_quality(task.test_baseline, task.test_targets)
  return {
    'psnr': model_q['psnr'],
    'ssim': model_q['ssim'],
    'baseline_psnr': base_q['psnr'],
    'baseline_ssim': base_q['ssim'],
  }


def _pix2pix_picture(model, state, task: tasks_lib.PairedTask, k: int) -> np.ndarray:
  inputs = task.test_inputs[:k]
  outputs = pix2pix_lib.translate_batches(model, state, inputs)
  rows = np.stack([task.display_inputs(inputs), outputs, task.test_targets[:k]], axis=1)
  return rows.reshape((-1,) + outputs.shape[1:])


# -- CycleGAN ---------------------------------------------------------------------------------


def _cyclegan_task(config: ml_collections.ConfigDict) -> tasks_lib.UnpairedTask:
  t = config.translation
  if t.data:
    task = _own_data(config, 'unpaired')
    try:
      check_resnet_size(task.image_size)
    except ValueError as e:
      raise ConfigError(f'translation.image_size={task.image_size} is invalid: {e}') from None
    return task
  return tasks_lib.build_unpaired_task(
    t.task, data_dir=config.data.data_dir, num_train=t.num_train, num_test=t.num_test
  )


def _cyclegan_args(config: ml_collections.ConfigDict, task: tasks_lib.UnpairedTask) -> dict:
  t = config.translation
  hold = run_config.hold_steps(config)
  return dict(
    image_size=task.image_size,
    a_channels=task.channels,
    seed=config.seed,
    width=t.width,
    num_blocks=t.blocks,
    d_width=t.d_width,
    patch_layers=t.patch_layers,
    history_size=t.history,
    cycle_weight=t.cycle_weight,
    identity_ratio=t.identity_ratio,
    lr=t.lr,
    hold_steps=hold,
    decay_steps=config.train.steps - hold,
  )


def _cyclegan_step(model: cyclegan_lib.CycleGAN, mesh: Any) -> Callable[..., Any]:
  return cyclegan_lib.make_train_step(model, mesh=mesh)


def _cyclegan_batch(task: tasks_lib.UnpairedTask, seed: int, step: int, bs: int) -> tuple:
  n_a, n_b = task.train_a.shape[0], task.train_b.shape[0]
  bs = min(bs, n_a, n_b)
  ia, ib = batch_indices(seed, step, 0, n_a, bs), batch_indices(seed, step, 1, n_b, bs)
  return task.train_a[ia], task.train_b[ib]


def _cycled(model, state, inputs: np.ndarray, direction: str) -> tuple[np.ndarray, ...]:
  """(inputs, their translations, the translations translated back)."""
  outputs = cyclegan_lib.translate_batches(model, state, inputs, direction)
  back = 'b2a' if direction == 'a2b' else 'a2b'
  return inputs, outputs, cyclegan_lib.translate_batches(model, state, outputs, back)


def _cyclegan_evaluate(model, state, task: tasks_lib.UnpairedTask, net) -> dict[str, float]:
  out = {}
  for direction, inputs, targets, label, source in (
    ('a2b', task.test_a, task.test_b, task.class_b, task.train_a),
    ('b2a', task.test_b, task.test_a, task.class_a, task.train_b),
  ):
    scores = direction_scores(
      net, *_cycled(model, state, inputs, direction), targets, label, source.mean(axis=0)
    )
    for key, value in scores.items():
      if value is not None:
        key = key.replace('fid', 'fid_lenet')
        out[f'{direction}_{key}'] = float(value)
  return out


def _cyclegan_picture(model, state, task: tasks_lib.UnpairedTask, k: int) -> np.ndarray:
  rows = []
  for direction, inputs in (('a2b', task.test_a[:k]), ('b2a', task.test_b[:k])):
    triple = _cycled(model, state, inputs, direction)
    rows.append(np.stack(triple, axis=1).reshape((-1,) + inputs.shape[1:]))
  return np.concatenate(rows)


def _cyclegan_classifier(task: tasks_lib.UnpairedTask):
  """The Fashion-MNIST LeNet of the built-in task; own data has no classifier."""
  if task.class_a is None:
    return None
  from gan_jax.metrics.lenet import load_lenet  # pylint: disable=g-import-not-at-top

  return load_lenet(task.dataset)


KINDS = {
  'pix2pix': Kind(
    name='pix2pix',
    build_task=_pix2pix_task,
    describe=_pix2pix_describe,
    model_args=_pix2pix_args,
    create=pix2pix_lib.create_pix2pix,
    make_step=_pix2pix_step,
    train_step=pix2pix_lib.train_step,
    batch=_pix2pix_batch,
    evaluate=_pix2pix_evaluate,
    picture=_pix2pix_picture,
    classifier=lambda task: None,
  ),
  'cyclegan': Kind(
    name='cyclegan',
    build_task=_cyclegan_task,
    describe=lambda config, task: tasks_lib.describe_unpaired(task),
    model_args=_cyclegan_args,
    create=cyclegan_lib.create_cyclegan,
    make_step=_cyclegan_step,
    train_step=cyclegan_lib.train_step,
    batch=_cyclegan_batch,
    evaluate=_cyclegan_evaluate,
    picture=_cyclegan_picture,
    classifier=_cyclegan_classifier,
  ),
}
