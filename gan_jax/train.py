"""`train_and_evaluate(config, workdir)`: the training loop.

Config in, a `GANState` threaded through the jitted train step, files out:

    <workdir>/config.json             the resolved config of the run
    <workdir>/checkpoints/<step>/     Orbax checkpoints (every `checkpoint_every` steps, the
                                      last `keep_checkpoints` kept, and one at the end)
    <workdir>/samples/step_<N>.png    sample grids from one fixed latent batch
    <workdir>/events.out.tfevents.*   TensorBoard scalars
    <workdir>/metrics.jsonl           the same scalars, one JSON object per logged step, and
                                      the evaluations (`eval/fid_lenet`, ...) every `eval_every`
    <workdir>/best/<step>/            the checkpoint with the lowest FID so far (eval.keep_best)
    <workdir>/best.json               its step and FID
    <workdir>/summary.json            wall time, images/s, evaluation time and final metrics
    <workdir>/classes.json            for a folder dataset: its class names (label i = classes[i])

Running the same command again resumes from the latest checkpoint: the state, the RNG (a
function of the step) and the data order (the stream skips the steps already consumed) all
continue where they stopped, so the final state equals that of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from typing import Any

import jax
import ml_collections
import tqdm

from gan_jax import config as config_lib
from gan_jax import data as data_lib
from gan_jax import distributed
from gan_jax import image_folder
from gan_jax import rollback_state
from gan_jax import run_lock
from gan_jax import sampling
from gan_jax.checkpoint import Checkpointer
from gan_jax.errors import ConfigError, NonFiniteError
from gan_jax.signals import StopOnSignal
from gan_jax.losses import get_loss
from gan_jax.state import GAN, GANState, create_state, make_optimizers
from gan_jax.sharding import check_batch_size, make_mesh, replicate
from gan_jax.train_step import METRIC_NAMES, Stabilizers, jit_train_step, make_train_step

log = logging.getLogger(__name__)


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Returns a copy with environment-dependent fields filled in (`data.data_dir`).

  `data.data_dir` unset becomes `$TFDS_DATA_DIR` when that is set, and a relative
  'folder:' path becomes absolute, so the run's config.json records where the data came
  from. Then `gan_jax.config.validate` checks every field.

  Raises:
    ValueError: from `validate`, naming the bad field.
  """
  config = ml_collections.ConfigDict(config.to_dict())  # unlocked deep copy
  config.data.data_dir = data_lib.resolve_data_dir(config.data.data_dir)
  config_lib.validate(config)
  if image_folder.is_folder_name(config.data.name):  # recorded absolute: resumable from anywhere
    config.data.name = image_folder.absolute_name(config.data.name)
  return config


# Fields that change the shapes in the checkpointed state: a run cannot resume across them.
SHAPE_FIELDS = ('model', 'data.image_size', 'data.channels')


def _flatten(d: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = list(v) if isinstance(v, tuple) else v
  return out


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to resume a run whose checkpointed config differs in a shape-changing field.

  Other fields (steps, learning rates, logging intervals, ...) may change between runs.

  Raises:
    ConfigError: naming each differing field with its checkpointed and its new value.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = _flatten(json.load(f))
  new = _flatten(config.to_dict())
  # A field missing from an older run's config.json did not exist when it was written: that
  # run behaved as the field's default does.
  defaults = _flatten(config_lib.base_config().to_dict())
  old = {**{k: v for k, v in defaults.items() if k not in old}, **old}
  # LeCam on or off changes the state's structure (its EMAs live in GANState.extras).
  for flat in (old, new):
    flat['train.lecam (on)'] = bool(flat.get('train.lecam_weight') or 0)
  changed = [
    f'{k}: {old.get(k)!r} -> {new.get(k)!r}'
    for k in sorted(set(old) | set(new))
    if (k.startswith(SHAPE_FIELDS) or k == 'train.lecam (on)') and old.get(k) != new.get(k)
  ]
  if changed:
    raise ConfigError(
      f'{workdir} holds checkpoints of a run with another model or image shape ('
      + '; '.join(changed)
      + '). Use a new --workdir, or set these fields back to resume.'
    )


class _BestCheckpoint:
  """Keeps the checkpoint with the lowest FID in <workdir>/best/ (and best.json)."""

  def __init__(self, workdir: str, fid_key: str):
    self.fid_key = fid_key
    self.path = os.path.join(workdir, 'best.json')
    self.ckpt = Checkpointer(workdir, keep=1, subdir='best')
    self.value = math.inf
    step = self.ckpt.latest_step()
    if step is None:
      return
    info = {}
    if os.path.exists(self.path):
      with open(self.path) as f:
        info = json.load(f)
    if info.get('step') == step:
      self.value = info['value']
    else:  # killed between saving the checkpoint and writing best.json: use the log
      self.value = self._logged(os.path.join(workdir, 'metrics.jsonl'), step)
      self._write(step)

  def _logged(self, metrics_path: str, step: int) -> float:
    if os.path.exists(metrics_path):
      with open(metrics_path) as f:
        for line in f:
          try:
            entry = json.loads(line)
          except ValueError:
            continue
          if entry['step'] == step and f'eval/{self.fid_key}' in entry:
            return entry[f'eval/{self.fid_key}']
    return math.inf

  def _write(self, step: int) -> None:
    if jax.process_index() == 0:
      with open(self.path, 'w') as f:
        json.dump({'step': step, 'metric': self.fid_key, 'value': self.value}, f)

  def offer(self, state: GANState, step: int, results: dict[str, Any]) -> bool:
    value = results.get(self.fid_key)
    if value is None or not value < self.value:
      return False
    self.ckpt.save(state)
    self.value = value
    self._write(step)
    return True

  def close(self) -> None:
    self.ckpt.close()


def _evaluate(evaluator, gan, state, step, use_ema, scalars, best, bar, raw_too=False) -> float:
  """Runs one evaluation, logs it, offers the state to the best-FID keeper; returns seconds.

  With `raw_too` (eval.raw_generator) and the EMA on, the raw generator is evaluated as well
  and logged as `eval/raw_<metric>`; the best-FID checkpoint follows the EMA generator's FID.
  A failed evaluation (e.g. NaN samples from a diverging generator) is logged as a warning
  and training goes on; the NaN guard on the losses decides whether the run stops.
  """
  t0 = time.perf_counter()
  try:
    results = evaluator.evaluate_state(gan, state, use_ema=use_ema)
    raw = evaluator.evaluate_state(gan, state, use_ema=False) if raw_too and use_ema else {}
  except ValueError as err:
    log.warning('Evaluation at step %d failed: %s', step, err)
    return time.perf_counter() - t0
  scalars.write(
    step,
    {
      **{f'eval/{k}': v for k, v in results.items()},
      **{f'eval/raw_{k}': v for k, v in raw.items()},
    },
  )
  if best is not None:
    best.offer(state, step, results)
  shown = {**results, **{f'raw_{k}': v for k, v in raw.items()}}
  if distributed.is_writer():
    bar.write(
      f'step {step}: ' + ', '.join(f'{k}={v:.4g}' for k, v in shown.items() if 'eval_' not in k)
    )
  return time.perf_counter() - t0


def _fixed_latents(gan: GAN, config: Any) -> jax.Array:
  """The sample grids' latents: `num_samples` of them; for a conditional GAN
  `max(1, num_samples // K)` latents repeated for each class (see `_fixed_labels`)."""
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x5A3D1E)
  if gan.conditional:
    return sampling.per_class_inputs(gan, key, max(1, config.num_samples // gan.num_classes))[0]
  return gan.sample_latents(key, config.num_samples)


def _fixed_labels(gan: GAN, config: Any) -> jax.Array | None:
  """The sample grids' labels: one row per class (None for an unconditional GAN)."""
  if not gan.conditional:
    return None
  per_class = max(1, config.num_samples // gan.num_classes)
  return sampling.per_class_labels(gan.num_classes, per_class)


def _write_grid(
  gan: GAN,
  state: GANState,
  z: jax.Array,
  path: str,
  use_ema: bool,
  labels: jax.Array | None = None,
) -> None:
  """Writes a sample grid; a failed write (e.g. a full disk) is a warning, not the end of
  the run: grids are a view of training, checkpoints are what must not be lost. With labels
  (a conditional GAN) the grid has one row per class.

  Every process samples (a computation over all devices); process 0 alone writes the PNG.
  """
  images = jax.device_get(sampling.sample(gan, state, z, labels, use_ema=use_ema))
  if not distributed.is_writer():
    return
  ncol = len(z) // gan.num_classes if labels is not None else None
  try:
    sampling.save_grid(path, images, ncol=ncol, scale=2)
  except OSError as err:
    log.warning('Could not write the sample grid %s: %s', path, err)


class _ScalarLog:
  """Buffers per-step metrics on device, checks them for NaN/Inf, writes TB + JSONL.

  Every process checks the metrics (so all of them stop or roll back at the same step);
  process 0 alone writes metrics.jsonl and the TensorBoard events.
  """

  def __init__(self, workdir: str, start_step: int):
    self.workdir = workdir
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.writer = None
    self.is_writer = distributed.is_writer()
    self.eval_steps: set[int] = set()
    self.rewind(start_step)

  def rewind(self, step: int) -> None:
    """Drops what was logged after `step` (before an interruption or a rollback), so the
    log of a resumed run has every step once; then (re)opens the TensorBoard writer."""
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

    self.pending: list[tuple[int, dict[str, jax.Array]]] = []
    if os.path.exists(self.path):
      kept = []
      with open(self.path) as f:
        for line in f:
          try:
            entry = json.loads(line)
          except ValueError:  # a line cut short by a crash (SIGKILL, power loss)
            continue
          if entry['step'] <= step:
            kept.append(line if line.endswith('\n') else line + '\n')
            if any(k.startswith('eval/') for k in entry):
              self.eval_steps.add(entry['step'])
      if self.is_writer:
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
          f.writelines(kept)
        os.replace(tmp, self.path)  # atomic: a crash here leaves the old or the new log
    self.eval_steps = {s for s in self.eval_steps if s <= step}
    if self.writer is not None:
      self.writer.close()
    if self.is_writer:
      self.writer = SummaryWriter(self.workdir, purge_step=step + 1 if step else None)

  def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
    self.pending.append((step, metrics))

  def check(self) -> list[tuple[int, dict[str, float]]]:
    """Fetches pending metrics; raises NonFiniteError at the first NaN/Inf."""
    fetched = jax.device_get(self.pending)
    self.pending = []
    out = []
    for step, m in fetched:
      # Losses first, so the message names the first quantity that went wrong.
      for name in sorted(m, key=lambda k: METRIC_NAMES.index(k) if k in METRIC_NAMES else 99):
        value = m[name]
        if not math.isfinite(float(value)):
          raise NonFiniteError(
            f'non-finite {name}={float(value)} at step {step}; training stopped. The last good '
            'checkpoint is kept: lower train.g_lr/train.d_lr or change the loss, then rerun to '
            "resume from it (or start over in a new workdir); on_nonfinite='rollback' does "
            'this automatically.'
          )
      out.append((step, {k: float(v) for k, v in m.items()}))
    return out

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if any(k.startswith('eval/') for k in scalars):
      self.eval_steps.add(step)
    if not self.is_writer:
      return
    for name, value in scalars.items():
      self.writer.add_scalar(name, value, step)
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': step, **scalars}) + '\n')

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()


def _has_checkpoints(workdir: str) -> bool:
  folder = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(folder) and any(n.isdigit() for n in os.listdir(folder))


def _prepare_workdir(workdir: str) -> None:
  """Creates `workdir` and proves it writable (a temporary file, removed at once).

  A real write, not `os.access`, so read-only mounts are caught even when running as root.

  Raises:
    PermissionError: naming the folder and the reason, asking for another --workdir.
  """
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as err:
    raise PermissionError(
      f'workdir {workdir!r} is not a writable folder ({err.strerror or err}); choose another '
      '--workdir.'
    ) from None


# What a run writes into its workdir; `overwrite=True` removes these and nothing else.
RUN_FILES = (
  'checkpoints',
  'best',
  'samples',
  'config.json',
  'metrics.jsonl',
  'summary.json',
  'best.json',
  'rollbacks.json',
  'classes.json',
)


def _clear_run(workdir: str) -> list[str]:
  removed = []
  for name in sorted(os.listdir(workdir)):
    if name in RUN_FILES or name.startswith('events.out.tfevents.'):
      path = os.path.join(workdir, name)
      shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
      removed.append(name)
  return removed


def preflight(
  config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False
) -> tuple[ml_collections.ConfigDict, Any]:
  """Every check a run can fail before it builds a model or changes a file.

  In order: the config's fields (`validate`), the batch over the devices, the dataset and
  split in the data dir (no image is read), the batch against the split's size (an image
  folder is then decoded into its cache, see `gan_jax.image_folder`), that an existing run in
  `workdir` has the same model and image shape (skipped with `overwrite`), and last that
  `workdir` is (or can be created as) a writable folder. Nothing in an existing workdir
  changes before all of them pass.

  Args:
    config: a run config.
    workdir: the run folder.
    overwrite: the caller will start a new run in `workdir`, replacing the one there.

  Returns:
    (the resolved config, the device mesh).

  Raises:
    ConfigError: (a ValueError) a bad field; the one-line message names it and a valid
      choice.
    gan_jax.data.DatasetNotFoundError: the dataset is not prepared in the data dir (the
      message lists the ones that are).
    PermissionError: the workdir cannot be created or written.
  """
  config = resolve_config(config)
  mesh = make_mesh()
  check_batch_size(config.train.batch_size, mesh)
  num_examples = data_lib.check_dataset(
    config.data.name,
    config.data.split,
    data_dir=config.data.data_dir,
    download=config.data.download,
  )
  if num_examples is not None and num_examples < config.train.batch_size:
    raise ConfigError(
      f'train.batch_size={config.train.batch_size} is invalid: data.split='
      f"{config.data.split!r} has only {num_examples} examples; use a batch of at most "
      f'{num_examples} or a larger split.'
    )
  check_dataset_labels(config)
  if image_folder.is_folder_name(config.data.name):  # decode (or reuse) its cache now, so a
    # bad image fails here, before any file is written, rather than after the model is built
    image_folder.load_cached(
      config.data.name, image_size=config.data.image_size, channels=config.data.channels
    )
  if not overwrite and _has_checkpoints(workdir):
    check_resumable(workdir, config)
  _prepare_workdir(workdir)
  return config, mesh


def check_dataset_labels(config: ml_collections.ConfigDict) -> None:
  """A conditional config (`model.num_classes = K > 0`) needs a dataset labelled 0..K-1.

  Reads the dataset's metadata only (`gan_jax.data.label_classes`); the labels themselves
  are checked batch by batch as they are read (`host_batches`).

  Raises:
    ConfigError: the dataset has no labels, or another number of classes than K.
  """
  k = config.model.get('num_classes', 0)
  if not k:
    return
  name = config.data.name
  classes = data_lib.label_classes(
    name, config.data.split, data_dir=config.data.data_dir, download=config.data.download
  )
  if classes is None:
    raise ConfigError(
      f'model.num_classes={k} is invalid: data.name={name!r} has no labels; set '
      'model.num_classes=0 (unconditional) or use a labelled dataset (e.g. mnist).'
    )
  if classes and classes != k:
    raise ConfigError(
      f'model.num_classes={k} is invalid: data.name={name!r} has {classes} classes (labels '
      f'0..{classes - 1}); set model.num_classes={classes}.'
    )


def _checked_labels(batches, num_classes: int, dataset: str):
  """Passes host batches through, raising ConfigError at a label outside [0, num_classes)."""
  for batch in batches:
    labels = batch['label']
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      if labels.min() < 0:
        raise ConfigError(
          f'model.num_classes={num_classes} is invalid: data.name={dataset!r} gives '
          'unlabelled images (label -1); set model.num_classes=0 or use a labelled dataset.'
        )
      raise ConfigError(
        f'model.num_classes={num_classes} is invalid: data.name={dataset!r} has label '
        f'{int(labels.max())}, outside [0, {num_classes}); set model.num_classes to its number '
        'of classes.'
      )
    yield batch


def host_batches(config: ml_collections.ConfigDict, start_step: int, rows=None):
  """The run's training batches from step `start_step` on, as numpy dicts on this host.

  Yields `{'image': float32 [n_critic, B_local, H, W, C] in [-1, 1], 'label': ...}`, this
  process's share of each global batch, in the order fixed by `config.seed`: its `rows`
  (`gan_jax.data.process_rows` of the batch sharding; None: block `jax.process_index()` of
  `jax.process_count()` equal blocks). The global batches do not depend on the number of
  processes. For a conditional config (`model.num_classes = K > 0`) every batch's labels
  are checked to lie in [0, K) (a ConfigError, raised by `next`, otherwise).
  """
  ds = data_lib.build_train_dataset(
    config.data.name,
    config.data.split,
    data_dir=config.data.data_dir,
    image_size=config.data.image_size,
    channels=config.data.channels,
    batch_size=config.train.batch_size,
    seed=config.seed,
    n_critic=config.train.n_critic,
    start_step=start_step,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    rows=rows,
    cache=config.data.cache,
    shuffle_buffer=config.data.shuffle_buffer,
    download=config.data.download,
  )
  k = config.model.get('num_classes', 0)
  if k:
    return _checked_labels(ds.as_numpy_iterator(), k, config.data.name)
  return ds.as_numpy_iterator()


def _scaled(gan: GAN, config: ml_collections.ConfigDict, lr_scale: float) -> GAN:
  """`gan` with both Adam learning rates multiplied by `lr_scale` (same optimizer state)."""
  if lr_scale == 1.0:
    return gan
  train_config = ml_collections.ConfigDict(config.train.to_dict())
  train_config.g_lr *= lr_scale
  train_config.d_lr *= lr_scale
  g_tx, d_tx = make_optimizers(train_config)
  return dataclasses.replace(gan, g_tx=g_tx, d_tx=d_tx)


@run_lock.holds_workdir('workdir')  # one writer per run folder: a second refuses at once
def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False
) -> GANState:
  """Trains a GAN as `config` says, writing checkpoints, samples and logs to `workdir`.

  Args:
    config: a run config (`gan_jax.config.base_config()` layout, e.g. from
      `experiments/mnist_dcgan.py`).
    workdir: the run folder; created if missing. If it holds checkpoints, training resumes
      from the latest one.
    overwrite: start a new run even if `workdir` holds one: its checkpoints, samples and logs
      (`RUN_FILES` and TensorBoard events, nothing else) are deleted once every check passed.

  Returns:
    The final `GANState` (replicated on all devices), at step `config.train.steps`, or at an
    earlier step if SIGTERM or SIGINT arrived: then the step in flight completes, a
    checkpoint of it is saved, and the function returns (rerun to resume).

  With `config.num_replicas = K > 1` this trains K GANs with seeds `seed, ..., seed + K - 1`
  in one compiled step (`gan_jax.replicas.train_replicas`), replica i in the run folder
  `<workdir>/replica_<i>/`, and returns their states stacked on a leading axis of size K.

  With `config.eval_every > 0` the configured metrics (`config.eval.metrics`) are computed on
  `config.eval_num_samples` samples of the EMA generator every `eval_every` steps and at the
  end; the first run computes and caches the real reference features (see
  `gan_jax.metrics.reference`).

  A NaN or Inf in a loss or gradient norm stops the run (`on_nonfinite='stop'`), or with
  `on_nonfinite='rollback'` reloads the last good checkpoint, multiplies both learning rates
  by `rollback_lr_factor` and goes on, at most `max_rollbacks` times. Each rollback is
  recorded in `<workdir>/rollbacks.json`; a run resumed from a checkpoint keeps the lowered
  rates, a new run (no checkpoint restored) starts at the requested ones
  (`gan_jax.rollback_state`).

  Raises:
    ValueError: (ConfigError) for an invalid config field, a batch size that does not divide
      over the devices, or a workdir whose checkpoints have another model or image shape.
    gan_jax.data.DatasetNotFoundError: if the dataset is not in the data dir.
    PermissionError: if the workdir cannot be created or written.
    gan_jax.metrics.inception.InceptionWeightsNotFoundError: evaluation needs the Inception
      weights and they are not on disk (the message says how to get them).
    NonFiniteError: if a loss or gradient norm becomes NaN or Inf (and no rollback is left);
      the last good checkpoint stays on disk.
    CheckpointWriteError: (an OSError) a checkpoint could not be written, e.g. on a full
      disk; the earlier ones stay readable.
  """
  if config.get('num_replicas', 1) > 1:
    from gan_jax import replicas  # pylint: disable=g-import-not-at-top

    config = resolve_config(config)  # fields that only matter with replicas are checked here
    return replicas.train_replicas(
      replicas.replica_configs(config),
      replicas.replica_workdirs(workdir, config.num_replicas),
      overwrite=overwrite,
    )
  config, mesh = preflight(config, workdir, overwrite=overwrite)
  if overwrite and distributed.is_writer():
    removed = _clear_run(workdir)
    if removed:
      log.warning('overwrite: removed the previous run in %s (%s)', workdir, ', '.join(removed))
  if overwrite:
    distributed.barrier('overwrite')  # no process may read the old run's files any more

  gan, state = create_state(config)
  state = replicate(state, mesh)
  ckpt = Checkpointer(workdir, keep=config.keep_checkpoints)
  start_step = 0
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
    start_step = int(state.step)
    log.info('Resuming from checkpoint at step %d in %s', start_step, ckpt.directory)
  if distributed.is_writer():
    # Atomic: the other processes of a multi-process run may be reading it (preflight).
    path = os.path.join(workdir, 'config.json')
    with open(path + '.tmp', 'w') as f:
      f.write(config.to_json(indent=2))
    os.replace(path + '.tmp', path)
    if image_folder.is_folder_name(config.data.name):  # label i is the class folder classes[i]
      image_folder.write_classes(config.data.name, workdir)

  # Rollback state belongs to the restored checkpoint's run: a new run starts clean.
  rollbacks, lr_scale = rollback_state.load(
    workdir, resumed=start_step > 0, writer=distributed.is_writer()
  )

  def compile_step(lr_scale: float):
    return jit_train_step(
      make_train_step(
        _scaled(gan, config, lr_scale),
        get_loss(config.train.loss),
        n_critic=config.train.n_critic,
        ema_decay=config.train.ema_decay,
        mesh=mesh,
        stabilizers=Stabilizers.from_config(config.train),
        aux_weight=config.train.get('aux_weight', 1.0),
        reuse_fakes=config.train.get('reuse_fakes', False),
      ),
      mesh,
    )

  sharding = data_lib.batch_sharding(mesh)
  rows = data_lib.process_rows(sharding, config.train.batch_size)

  def open_batches(start: int):
    return data_lib.device_prefetch(host_batches(config, start, rows), sharding)

  train_step = compile_step(lr_scale)
  total = config.train.steps
  batches = open_batches(start_step)
  z_fixed = _fixed_latents(gan, config)
  labels_fixed = _fixed_labels(gan, config)
  use_ema = config.train.ema_decay > 0
  raw_too = bool(config.eval.get('raw_generator', False))
  evaluator = best = None
  eval_time = 0.0
  if config.eval_every:
    from gan_jax.metrics.evaluate import Evaluator  # pylint: disable=g-import-not-at-top

    evaluator = Evaluator.from_config(config)  # loads the nets and the cached reference
    if evaluator.net is not None and 'fid' in evaluator.metrics and config.eval.keep_best:
      best = _BestCheckpoint(workdir, f'fid_{evaluator.net.label.lower()}')
  scalars = _ScalarLog(workdir, start_step)
  sample_dir = os.path.join(workdir, 'samples')

  bar = tqdm.tqdm(
    total=total,
    initial=start_step,
    disable=not config.progress_bar or not distributed.is_writer(),
    unit='step',
    dynamic_ncols=True,
  )
  t_run = time.perf_counter()
  t_window, wait_window, steps_window = time.perf_counter(), 0.0, 0
  images_per_step = config.train.batch_size * config.train.n_critic
  step = start_step
  in_flight = None
  metrics = None
  stop_vote, stopping = distributed.StopVote(mesh), False
  with StopOnSignal() as stopper:
    try:
      if (
        evaluator is not None
        and start_step
        and (start_step % config.eval_every == 0 or start_step == total)
        and start_step not in scalars.eval_steps
      ):
        # Killed between the checkpoint and its evaluation: evaluate it now, so the log
        # holds every evaluation once.
        eval_time += _evaluate(
          evaluator, gan, state, start_step, use_ema, scalars, best, bar, raw_too
        )
      while step < total:
        t0 = time.perf_counter()
        batch = next(batches)
        wait_window += time.perf_counter() - t0
        state, metrics = train_step(state, batch)
        # Keep at most one step in flight: the host prepares step k+1 while the devices run
        # step k, but never queues a backlog (which would make the progress bar run ahead of
        # the devices and delay a stop on SIGTERM by up to log_every steps).
        if in_flight is not None:
          jax.block_until_ready(in_flight)
        in_flight = metrics
        step += 1
        steps_window += 1
        scalars.add(step, metrics)
        bar.update(1)

        # With several processes, all stop together, one step after any got a signal.
        stopping = stop_vote.update(stopper.received is not None)
        is_last = step == total
        save = step % config.checkpoint_every == 0 or is_last or stopping
        if step % config.log_every == 0 or save:
          try:
            fetched = scalars.check()  # also the NaN guard before any checkpoint is written
          except NonFiniteError as err:
            if config.on_nonfinite != 'rollback' or len(rollbacks) >= config.max_rollbacks:
              if config.on_nonfinite == 'rollback':
                raise NonFiniteError(
                  f'{err} ({len(rollbacks)} rollbacks with learning rates x'
                  f'{config.rollback_lr_factor} each did not help; max_rollbacks='
                  f'{config.max_rollbacks}.)'
                ) from None
              raise
            # Roll back: the last good checkpoint (or the initial state), lower rates.
            batches.close()
            if ckpt.latest_step() is not None:
              state = ckpt.restore(state)
            else:
              state = replicate(create_state(config)[1], mesh)
            restored = int(state.step)
            lr_scale *= config.rollback_lr_factor
            rollbacks.append(
              {'error': str(err).split(';')[0], 'restored_step': restored, 'lr_scale': lr_scale}
            )
            if jax.process_index() == 0:
              with open(os.path.join(workdir, 'rollbacks.json'), 'w') as f:
                json.dump(rollbacks, f, indent=2)
            log.warning(
              '%s; rollback %d of %d: resuming from step %d with learning rates x%g '
              '(g_lr=%g, d_lr=%g).',
              str(err).split(';')[0],
              len(rollbacks),
              config.max_rollbacks,
              restored,
              lr_scale,
              config.train.g_lr * lr_scale,
              config.train.d_lr * lr_scale,
            )
            scalars.rewind(restored)
            train_step = compile_step(lr_scale)
            batches = open_batches(restored)
            step, in_flight = restored, None
            bar.reset(total)
            bar.update(restored)
            t_window, wait_window, steps_window = time.perf_counter(), 0.0, 0
            continue
          elapsed = time.perf_counter() - t_window
          perf = {
            'perf/images_per_sec': images_per_step * steps_window / elapsed,
            'perf/data_wait_fraction': wait_window / elapsed,
          }
          for s, m in fetched:
            if s % config.log_every == 0 or s == total:
              scalars.write(s, {**m, **(perf if s == step else {})})
          last = fetched[-1][1]
          bar.set_postfix(
            d_loss=f"{last['d_loss']:.3f}",
            g_loss=f"{last['g_loss']:.3f}",
            img_s=f"{perf['perf/images_per_sec']:.0f}",
            refresh=False,
          )
          t_window, wait_window, steps_window = time.perf_counter(), 0.0, 0
        if step % config.sample_every == 0 or is_last:
          _write_grid(
            gan,
            state,
            z_fixed,
            os.path.join(sample_dir, f'step_{step:07d}.png'),
            use_ema,
            labels_fixed,
          )
        if save:
          ckpt.save(state)  # before evaluating: a failing evaluation never costs a step
        if evaluator is not None and not stopping and (step % config.eval_every == 0 or is_last):
          seconds = _evaluate(evaluator, gan, state, step, use_ema, scalars, best, bar, raw_too)
          eval_time += seconds
          t_window += seconds  # images/s counts training time only
        if stopping:
          log.warning(
            'Received %s: stopped after step %d and saved a checkpoint in %s; run the same '
            'command again to resume.',
            stopper.received or 'a stop signal in another process',
            step,
            ckpt.directory,
          )
          break
    finally:
      batches.close()
      bar.close()
      scalars.close()
      ckpt.close()
      if best is not None:
        best.close()

  wall = time.perf_counter() - t_run
  if distributed.is_writer() and step > start_step and metrics is not None:
    final = {k: float(v) for k, v in jax.device_get(metrics).items()}
    summary = {
      'start_step': start_step,
      'end_step': step,
      'wall_time_s': wall,
      'images_per_sec': images_per_step * (step - start_step) / (wall - eval_time),
      'eval_time_s': eval_time,
      'eval_time_fraction': eval_time / wall,
      'devices': len(jax.devices()),
      'platform': jax.devices()[0].platform,
      'final_metrics': final,
      'stopped_by_signal': stopper.received or ('in another process' if stopping else None),
      'rollbacks': len(rollbacks),
      'lr_scale': lr_scale,
      'g_lr': config.train.g_lr * lr_scale,  # the effective rates (config.json: requested)
      'd_lr': config.train.d_lr * lr_scale,
    }
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
  return state
