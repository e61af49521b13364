"""The periodic actions of a training loop, each owning one output of a run folder.

Used by the training loop (`gan_jax.training.train`), one of each per run folder (K of them for K
replicas in one program):

- `ScalarLog`: per-step metrics, checked for NaN/Inf, to TensorBoard and metrics.jsonl;
- `write_grid` with `fixed_latents` / `fixed_labels`: the sample grids of samples/;
- `evaluate_and_log`: one evaluation, logged, offered to the `BestCheckpoint` (best/, best.json).

Every process of a multi-process run calls them (they compute over all devices); process 0
alone writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from typing import Any

import jax

from gan_jax.training import distributed
from gan_jax.core import sampling
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.errors import NonFiniteError
from gan_jax.core.state import GAN, GANState
from gan_jax.core.train_step import METRIC_NAMES

log = logging.getLogger(__name__)


def summary_writer_class() -> type:
  """tensorboardX's `SummaryWriter`, imported without PyTorch.

  tensorboardX imports `torch` at import time whenever it is installed, only to accept torch
  tensors: about 1-2.5 s and 300 MB of memory on every training start on a machine that has
  PyTorch, for a writer that is only given floats and numpy arrays here. While tensorboardX
  loads, `torch` is marked absent (`sys.modules['torch'] = None`, which makes `import torch`
  raise ImportError, and tensorboardX then falls back to numpy); a torch that is already
  imported is left alone, and the mark is removed afterwards, so the user's own
  `import torch` still works.

  Returns:
    `tensorboardX.SummaryWriter`.
  """
  hide = 'torch' not in sys.modules
  if hide:
    sys.modules['torch'] = None  # type: ignore[assignment]
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    if hide:
      del sys.modules['torch']
  return SummaryWriter


def fixed_latents(gan: GAN, config: Any) -> jax.Array:
  """The sample grids' latents, the same at every step of a run (a function of its seed).

  Args:
    gan: the run's `GAN` (its latent size and conditioning).
    config: the run config (`seed`, `num_samples`).

  Returns:
    float32 `[num_samples, latent_dim]`; for a conditional GAN with K classes,
    `max(1, num_samples // K)` latents repeated for each class, `[K * per_class, latent_dim]`
    (see `fixed_labels`).
  """
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x5A3D1E)
  if gan.conditional:
    return sampling.per_class_inputs(gan, key, max(1, config.num_samples // gan.num_classes))[0]
  return gan.sample_latents(key, config.num_samples)


def fixed_labels(gan: GAN, config: Any) -> jax.Array | None:
  """The sample grids' labels: one row per class, matching `fixed_latents`.

  Returns:
    int32 `[K * per_class]` (class k repeated per_class = `max(1, num_samples // K)` times),
    or None for an unconditional GAN.
  """
  if not gan.conditional:
    return None
  per_class = max(1, config.num_samples // gan.num_classes)
  return sampling.per_class_labels(gan.num_classes, per_class)


def write_grid(
  gan: GAN,
  state: GANState,
  z: jax.Array,
  path: str,
  use_ema: bool,
  labels: jax.Array | None = None,
  *,
  ema_stats: str = 'raw',
  seed: int = 0,
) -> None:
  """Writes a PNG grid of samples of `state`'s generator.

  A failed write (e.g. a full disk) is a warning, not the end of the run: grids are a view
  of training, checkpoints are what must not be lost. Every process samples (a computation
  over all devices); process 0 alone writes the PNG.

  Args:
    gan: the run's `GAN`.
    state: one (unstacked) `GANState`.
    z: float32 `[N, latent_dim]` latents (`fixed_latents`).
    path: the PNG to write, e.g. `<workdir>/samples/step_0000500.png`.
    use_ema: sample the EMA generator (else the raw one).
    labels: int32 `[N]` class labels of a conditional GAN (`fixed_labels`), else None; with
      labels the grid has one row per class.
    ema_stats: the EMA generator's BatchNorm statistics, the run's `eval.ema_batch_stats`
      ('raw' or 'standing'; see `gan_jax.core.sampling.sampling_batch_stats`). The raw
      generator always uses its own.
    seed: seeds the standing statistics (the run's `seed`).

  Raises:
    ValueError: an unknown `ema_stats`.
  """
  stats = sampling.sampling_batch_stats(gan, state, use_ema=use_ema, ema_stats=ema_stats, seed=seed)
  images = jax.device_get(
    sampling.sample(gan, state, z, labels, use_ema=use_ema, batch_stats=stats)
  )
  if not distributed.is_writer():
    return
  ncol = len(z) // gan.num_classes if labels is not None else None
  try:
    sampling.save_grid(path, images, ncol=ncol, scale=2)
  except OSError as err:
    log.warning('Could not write the sample grid %s: %s', path, err)


def parse_log_line(line: str) -> dict[str, Any] | None:
  """One metrics.jsonl line as the dict ScalarLog wrote, or None for any other line.

  A line cut short by a crash is not JSON; a line written by hand or by another tool may be
  JSON but no object (`[1, 2]`), or an object without an integer `step`. None of these is a
  logged step, so readers skip them instead of failing on them (issue 17, item 7).

  Args:
    line: one line of the file, with or without its newline.

  Returns:
    The parsed object, whose 'step' is an int; None when the line is not such an object.
  """
  try:
    entry = json.loads(line)
  except ValueError:
    return None
  if not isinstance(entry, dict):
    return None
  step = entry.get('step')
  if not isinstance(step, int) or isinstance(step, bool):
    return None
  return entry


class ScalarLog:
  """Buffers per-step metrics on device, checks them for NaN/Inf, writes TB + JSONL.

  Every process checks the metrics (so all of them stop or roll back at the same step);
  process 0 alone writes metrics.jsonl and the TensorBoard events.

  Args:
    workdir: the run folder (metrics.jsonl and the TensorBoard events go there).
    start_step: the step the run starts or resumes from; anything logged after it is
      dropped (`rewind`).

  Attributes:
    eval_steps: the steps whose evaluations are in the log (a resumed run evaluates a
      checkpoint that was saved but not yet evaluated).
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
    log of a resumed run has every step once, and every line that is no logged step
    (`parse_log_line`); then (re)opens the TensorBoard writer."""
    self.pending: list[tuple[int, dict[str, jax.Array]]] = []
    if os.path.exists(self.path):
      kept = []
      with open(self.path) as f:
        for line in f:
          entry = parse_log_line(line)
          if entry is None:  # cut short by a crash (SIGKILL, power loss), or not ours
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
      self.writer = summary_writer_class()(self.workdir, purge_step=step + 1 if step else None)

  def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
    """Queues a step's metrics (scalars, still on device) for the next `check`."""
    self.pending.append((step, metrics))

  def check(self) -> list[tuple[int, dict[str, float]]]:
    """Fetches the queued metrics to the host and checks them.

    Returns:
      [(step, {name: float})] in the order they were added.

    Raises:
      NonFiniteError: at the first NaN or Inf (losses before gradient norms), naming it and
        its step.
    """
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
    """Writes `scalars` of `step` to TensorBoard and as one metrics.jsonl line (process 0)."""
    if any(k.startswith('eval/') for k in scalars):
      self.eval_steps.add(step)
    if not self.is_writer:
      return
    for name, value in scalars.items():
      self.writer.add_scalar(name, value, step)
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': step, **scalars}) + '\n')

  def close(self) -> None:
    """Closes the TensorBoard writer."""
    if self.writer is not None:
      self.writer.close()


class BestCheckpoint:
  """Keeps the checkpoint with the lowest FID in <workdir>/best/ (and best.json).

  Args:
    workdir: the run folder.
    fid_key: the result key to minimise, e.g. 'fid_lenet' (logged as `eval/<fid_key>`).

  Attributes:
    value: the best FID so far (inf before any); on resume it is read back from best.json,
      or from metrics.jsonl when the run was killed between the two writes.
  """

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
          entry = parse_log_line(line)
          if entry is not None and entry['step'] == step and f'eval/{self.fid_key}' in entry:
            return entry[f'eval/{self.fid_key}']
    return math.inf

  def _write(self, step: int) -> None:
    if jax.process_index() == 0:
      with open(self.path, 'w') as f:
        json.dump({'step': step, 'metric': self.fid_key, 'value': self.value}, f)

  def offer(self, state: GANState, step: int, results: dict[str, Any]) -> bool:
    """Saves `state` as the best checkpoint if `results[fid_key]` beats the best so far.

    Returns:
      Whether it was saved.

    Raises:
      CheckpointWriteError: the checkpoint could not be written.
    """
    value = results.get(self.fid_key)
    if value is None or not value < self.value:
      return False
    self.ckpt.save(state)
    self.value = value
    self._write(step)
    return True

  def close(self) -> None:
    """Waits for the checkpoint writes and closes the checkpointer."""
    self.ckpt.close()


def evaluate_and_log(
  evaluator, gan, state, step, use_ema, scalars, best, bar, raw_too=False
) -> float:
  """Runs one evaluation, logs it, offers the state to the best-FID keeper.

  With `raw_too` (eval.raw_generator) and the EMA on, the raw generator is evaluated as well
  and logged as `eval/raw_<metric>`; the best-FID checkpoint follows the EMA generator's FID.
  A failed evaluation (e.g. NaN samples from a diverging generator) is logged as a warning
  and training goes on; the NaN guard on the losses decides whether the run stops.

  Args:
    evaluator: a `gan_jax.metrics.evaluate.Evaluator`.
    gan: the run's `GAN`.
    state: one (unstacked) `GANState`.
    step: the step it is at (the log's key).
    use_ema: evaluate the EMA generator (else the raw one).
    scalars: the run's `ScalarLog` (results go there as `eval/<metric>`).
    best: the run's `BestCheckpoint`, or None.
    bar: the tqdm progress bar (process 0 prints the results through it).
    raw_too: also evaluate the raw generator.

  Returns:
    The seconds it took.
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
