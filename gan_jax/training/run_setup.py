"""Before a run's loop: its resolved config, every check it can fail, its folder, its batches.

Used by the training loop (`gan_jax.training.train`, for one GAN or K replicas) and by the commands
that check a run before training:

- `resolve_config`, `preflight`: the config's fields, the batch over the devices, the
  dataset, split and labels, an existing run's model and image shape (`check_resumable`),
  and a writable run folder, all before any model is built or file written;
- `RUN_FILES`, `clear_run`: what a run writes into its folder, and `overwrite`'s removal of it;
- `host_batches`: the run's training batches from a step on, in the order its seed fixes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from typing import Any

import jax
import ml_collections

from gan_jax import config as config_lib
from gan_jax.data import pipeline as data_lib
from gan_jax.training import distributed
from gan_jax.data import sources as data_sources
from gan_jax.core import penalties
from gan_jax.models import registry
from gan_jax.training import run_lock
from gan_jax.training.checkpoint import read_run_config
from gan_jax.errors import ConfigError
from gan_jax.core.sharding import check_batch_size, make_mesh


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
  # e.g. a folder's path recorded absolute: resumable from anywhere
  config.data.name = data_sources.record_name(config.data.name)
  return config


# Fields that change the shapes in the checkpointed state: a run cannot resume across them.
SHAPE_FIELDS = ('model', 'data.image_size', 'data.channels')
# `model` fields that change only how the layers compute (speed; the same results to float32
# rounding): a run may resume with other values.
SPEED_FIELDS = tuple(f'model.{f}' for f in registry.LAYER_OPTIONS)
# Fields that change what a run is (its data and its data order): resuming across them mixes
# two runs, so it is refused unless `allow_resume_changes` (the earlier config is then kept
# in config_history.jsonl).
IDENTITY_FIELDS = ('seed', 'data.name', 'data.split')


def flatten_config(d: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  """A nested config dict (`config.to_dict()`) as {'section.field': value}, tuples as lists
  (so that it compares equal to the same config read back from config.json)."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten_config(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = list(v) if isinstance(v, tuple) else v
  return out


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to resume a run whose checkpointed config differs in a shape-changing field,
  or (unless `config.allow_resume_changes`) in its seed or data (`IDENTITY_FIELDS`).

  Other fields (steps, learning rates, logging intervals, ...) may change between runs.

  Raises:
    ConfigError: naming each differing field with its checkpointed and its new value.
    UnreadableCheckpointError: the run's config.json is garbled.
  """
  if not os.path.exists(os.path.join(workdir, 'config.json')):
    return
  old = flatten_config(read_run_config(workdir).to_dict())
  new = flatten_config(config.to_dict())
  # A field missing from an older run's config.json did not exist when it was written: that
  # run behaved as the field's default does.
  defaults = flatten_config(config_lib.base_config().to_dict())
  old = {**{k: v for k, v in defaults.items() if k not in old}, **old}
  # A penalty that keeps state (LeCam: its EMAs live in GANState.extras) changes the state's
  # structure when it is turned on or off; so does ADA's adaptive p (train.augment='ada').
  switches = {f'train.{p.name} (on)': p.field for p in penalties.PENALTIES.values() if p.state}
  for flat in (old, new):
    for key, field in switches.items():
      flat[key] = bool(flat.get(f'train.{field}') or 0)
    flat['train.augment (ada)'] = flat.get('train.augment') == 'ada'
  switches['train.augment (ada)'] = 'augment'
  changed = [
    f'{k}: {old.get(k)!r} -> {new.get(k)!r}'
    for k in sorted(set(old) | set(new))
    if (k.startswith(SHAPE_FIELDS) or k in switches)
    and k not in SPEED_FIELDS
    and old.get(k) != new.get(k)
  ]
  if changed:
    raise ConfigError(
      f'{workdir} holds checkpoints of a run with another model or image shape ('
      + '; '.join(changed)
      + '). Use a new --workdir, or set these fields back to resume.'
    )
  if config.get('allow_resume_changes', False):
    return
  changed = [
    f'{k}: {old.get(k)!r} -> {new.get(k)!r}'
    for k in IDENTITY_FIELDS
    if k in new and old.get(k) != new.get(k)
  ]
  if changed:
    raise ConfigError(
      f'{workdir} holds checkpoints of a run with another seed or data ('
      + '; '.join(changed)
      + '). Use a new --workdir, set these fields back to resume, or resume anyway with '
      '--config.allow_resume_changes=true (the earlier config is kept in config_history.jsonl).'
    )


def has_checkpoints(workdir: str) -> bool:
  """Whether `<workdir>/checkpoints/` holds a step folder."""
  folder = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(folder) and any(n.isdigit() for n in os.listdir(folder))


def prepare_workdir(workdir: str) -> None:
  """Creates `workdir` and proves it writable (a temporary file, removed at once), and so
  each of its run subfolders that already exists (checkpoints/, best/, samples/), so that a
  read-only one is found now rather than at the first save.

  A real write, not `os.access`, so read-only mounts are caught even when running as root.

  Raises:
    PermissionError: naming the folder and the reason, asking for another --workdir.
  """
  folder = workdir
  try:
    os.makedirs(workdir, exist_ok=True)
    for folder in [workdir, *(os.path.join(workdir, n) for n in _RUN_ENTRIES)]:
      if folder == workdir or os.path.isdir(folder):
        with tempfile.TemporaryFile(dir=folder):
          pass
  except OSError as err:
    what = 'workdir' if folder == workdir else 'run folder'
    raise PermissionError(
      f'{what} {folder!r} is not a writable folder ({err.strerror or err}); make it writable '
      'or choose another --workdir.'
    ) from None


# The run folder's mark: written with config.json, it says that gan-jax made this folder, so
# `overwrite` may clear it.
MANIFEST = 'gan_jax_run.json'

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
  'config_history.jsonl',
  MANIFEST,
)

# Inside the folders of RUN_FILES, the entries a run writes: Orbax step folders (with their
# temporary and set-aside forms) and sample grids. Anything else there is the user's and stays.
_RUN_ENTRIES = {
  'checkpoints': re.compile(r'\d+(\.unreadable(\.\d+)?|\.orbax-checkpoint-tmp-.*)?'),
  'best': re.compile(r'\d+(\.unreadable(\.\d+)?|\.orbax-checkpoint-tmp-.*)?'),
  'samples': re.compile(r'step_\d+\.png'),
}


def is_run_folder(workdir: str) -> bool:
  """Whether gan-jax wrote the run in `workdir`: it holds `MANIFEST`, or (a run written before
  the manifest existed) a config.json that is a gan-jax run config (a JSON object with
  'model', 'train' and 'data' blocks)."""
  if os.path.isfile(os.path.join(workdir, MANIFEST)):
    return True
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      config = json.load(f)
  except (OSError, ValueError):
    return False
  return isinstance(config, dict) and all(
    isinstance(config.get(k), dict) for k in ('model', 'train', 'data')
  )


def check_overwritable(workdir: str) -> None:
  """Refuses `overwrite` on a folder that holds files but is not a gan-jax run folder.

  Raises:
    ConfigError: naming the folder; nothing was deleted.
  """
  if not os.path.isdir(workdir):
    return
  entries = [n for n in os.listdir(workdir) if n != run_lock.LOCK_NAME]
  if entries and not is_run_folder(workdir):
    raise ConfigError(
      f'--overwrite refused: {workdir} holds files ({", ".join(sorted(entries)[:5])}'
      f'{", ..." if len(entries) > 5 else ""}) but is not a gan-jax run folder (no {MANIFEST} '
      'or gan-jax config.json), so nothing was deleted; choose a new --workdir, or empty this '
      'one yourself.'
    )


def clear_run(workdir: str) -> list[str]:
  """Removes a run from `workdir` (`overwrite`): what gan-jax wrote and nothing else.

  That is the top-level `RUN_FILES` and TensorBoard event files; inside `checkpoints/` and
  `best/` only the step folders (`<step>`, `<step>.unreadable`, Orbax's temporary ones), and
  inside `samples/` only the grids `step_<N>.png`. A folder is removed when that leaves it
  empty; any other file in it (a user's notes, another tool's checkpoint) stays.

  Returns:
    The names removed, sorted (a folder is named when something in it was removed).

  Raises:
    OSError: a file could not be removed.
  """
  removed = []
  for name in sorted(os.listdir(workdir)):
    path = os.path.join(workdir, name)
    if name in _RUN_ENTRIES and os.path.isdir(path):
      ours = [e for e in os.listdir(path) if _RUN_ENTRIES[name].fullmatch(e)]
      for entry in ours:
        child = os.path.join(path, entry)
        shutil.rmtree(child) if os.path.isdir(child) and not os.path.islink(child) else os.remove(
          child
        )
      if not os.listdir(path):
        os.rmdir(path)
      if ours:
        removed.append(name)
    elif name in RUN_FILES and os.path.isfile(path) or name.startswith('events.out.tfevents.'):
      os.remove(path)
      removed.append(name)
  return removed


def write_run_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes `<workdir>/config.json` (process 0 only), atomically: the other processes of a
  multi-process run may be reading it (`preflight`), and a crash leaves the old or the new
  file, never half of one. For an image-folder dataset also `<workdir>/classes.json`, its
  class names (`gan_jax.data.image_folder.write_classes`; `DataSource.write_run_files`).

  Args:
    config: the resolved run config (`preflight`).
    workdir: the run folder (it exists: `preflight` made it).

  Raises:
    OSError: the file could not be written.
  """
  if not distributed.is_writer():
    return
  path = os.path.join(workdir, 'config.json')
  text = config.to_json(indent=2)
  _keep_earlier_config(workdir, path, text)
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)
  manifest = os.path.join(workdir, MANIFEST)
  if not os.path.exists(manifest):
    with open(manifest + '.tmp', 'w') as f:
      json.dump({'written_by': 'gan_jax', 'files': list(RUN_FILES)}, f, indent=2)
    os.replace(manifest + '.tmp', manifest)
  source = data_sources.source_for(config.data.name)  # e.g. a folder's classes.json
  if source.write_run_files is not None:
    source.write_run_files(config.data.name, workdir)


def _keep_earlier_config(workdir: str, path: str, text: str) -> None:
  """Appends the config.json about to be replaced by a different one (a resume with more
  steps, another learning rate, or allowed seed/data changes) to config_history.jsonl, with
  the time it was replaced, so the record of the earlier steps is never lost."""
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8', errors='replace') as f:
    earlier = f.read()
  if earlier == text:
    return
  try:
    record = json.loads(earlier)
  except ValueError:
    record = {'unparsable_config_json': earlier}
  entry = {'replaced_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'config': record}
  with open(os.path.join(workdir, 'config_history.jsonl'), 'a') as f:
    f.write(json.dumps(entry) + '\n')


def preflight(
  config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False
) -> tuple[ml_collections.ConfigDict, Any]:
  """Every check a run can fail before it builds a model or changes a file.

  In order: the config's fields (`validate`), the batch over the devices, the dataset and
  split in the data dir (no image is read), the batch against the split's size, that an
  existing run in `workdir` has the same model and image shape (skipped with `overwrite`),
  and last that `workdir` is (or can be created as) a writable folder. Nothing in an existing
  workdir changes before all of them pass.

  Args:
    config: a run config.
    workdir: the run folder.
    overwrite: the caller will start a new run in `workdir`, replacing the one there.

  Returns:
    (the resolved config, the device mesh).

  Raises:
    ConfigError: (a ValueError) a bad field; the one-line message names it and a valid
      choice.
    gan_jax.data.pipeline.DatasetNotFoundError: the dataset is not prepared in the data dir (the
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
  source = data_sources.source_for(config.data.name)  # e.g. decode a folder's cache now, so
  if source.prepare is not None:  # a bad image fails before any file is written
    source.prepare(config)
  if overwrite:
    check_overwritable(workdir)
  elif has_checkpoints(workdir):
    check_resumable(workdir, config)
  prepare_workdir(workdir)
  return config, mesh


def check_dataset_labels(config: ml_collections.ConfigDict) -> None:
  """A conditional config (`model.num_classes = K > 0`) needs a dataset labelled 0..K-1.

  Reads the dataset's metadata only (`gan_jax.data.pipeline.label_classes`); the labels themselves
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


def checked_labels(batches, num_classes: int, dataset: str):
  """Passes host batches through, checking their labels.

  Args:
    batches: an iterator of host batches, `{'label': int32 [...], ...}` each.
    num_classes: K, the config's `model.num_classes`.
    dataset: the dataset's name, for the messages.

  Yields:
    The batches, unchanged.

  Raises:
    ConfigError: (raised by `next`) at a label outside [0, K): -1 (an unlabelled dataset) or
      one >= K.
  """
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
  (`gan_jax.data.pipeline.process_rows` of the batch sharding; None: block `jax.process_index()` of
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
    return checked_labels(ds.as_numpy_iterator(), k, config.data.name)
  return ds.as_numpy_iterator()
