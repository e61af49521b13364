"""The `gan-jax` command line: `train`, `sample`, `eval` and `sweep`.

    gan-jax train --config experiments/mnist_dcgan.py --workdir runs/mnist_dcgan \
        [--config.train.steps=200 --config.data.data_dir=../shared/tfds ...]
        [--coordinator HOST:PORT --num-processes N --process-id I | --distributed]
    gan-jax train --config experiments/pix2pix_inpaint_mnist.py --workdir runs/p2p
        (a translation config, with a `translation` block: gan_jax/translation/train.py)
    gan-jax sample --workdir runs/mnist_dcgan --num 64 --out samples.png
    gan-jax sample --workdir runs/mnist_cdcgan --label 3 | --per-class 8   (conditional runs)
    gan-jax eval --workdir runs/mnist_dcgan --num-samples 10000 [--metrics fid,kid,is,pr]
    gan-jax eval --images generated_pngs/ --dataset mnist [--split train]
    gan-jax sweep experiments/ablations/losses_fashion.py --workdir runs/losses_fashion \
        [--jobs 2] [--dry-run | --summary-only] [--config.train.steps=200 ...]   (see gan_jax/sweep/__init__.py)
    gan-jax edit --workdir runs/mnist_dcgan --image digit.png --attribute ink --out strip.png
        [--strengths -3,-1.5,0,1.5,3] [--hold class_3]   (see gan_jax/cli/edit_cli.py)
    gan-jax export --workdir runs/mnist_dcgan --out exported/ [--step N | --best] [--raw]
        (see gan_jax/export.py and docs/export.md)
    gan-jax translate --workdir RUN --input IMAGE_OR_FOLDER --out PATH [--direction a2b|b2a]
        [--batch N]   (a pix2pix / CycleGAN run; see gan_jax/translation/translate.py)

Kept short so that everything it calls can be imported in a notebook. A usage problem (a
missing or broken config file, an unknown config key, a value of the wrong type, an invalid
field, a missing dataset or workdir) prints one line, `gan-jax: error: ...`, and exits with
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import glob
import dataclasses
import gc
import logging
import os
import sys
import warnings
from typing import Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from gan_jax.cli import edit_cli  # pylint: disable=wrong-import-position

from gan_jax import export

from gan_jax.training import lifeline
from gan_jax.cache_dir import use_compilation_cache
from gan_jax.config_files import (  # noqa: F401  pylint: disable=wrong-import-position
  UsageError,  # re-exported, with the two below: the command line's config reading
  apply_overrides,
  load_config_file,
)
from gan_jax.errors import (  # pylint: disable=wrong-import-position
  CheckpointWriteError,
  ConfigError,
  NonFiniteError,
  UnreadableCheckpointError,
  WorkdirLockedError,
)


def _join_processes(args: argparse.Namespace, *, connect: bool) -> None:
  """Checks the multi-process flags of `train` (connect=False), or joins the run they
  describe (connect=True: `gan_jax.training.distributed.initialize`, before anything starts JAX).

  Raises:
    UsageError: only some of --coordinator/--num-processes/--process-id, a bad value, or
      --distributed outside a cluster it can detect.
  """
  from gan_jax.training import distributed  # pylint: disable=g-import-not-at-top

  step = distributed.initialize if connect else distributed.check_launch
  try:
    step(
      args.coordinator,
      args.num_processes,
      args.process_id,
      auto=args.distributed,
      timeout_s=args.distributed_timeout,
    )
  except distributed.LaunchError as e:
    raise UsageError(str(e)) from None


def _refuse_if_locked(workdir: str) -> None:
  """Refuses at once, before the slow imports, a workdir another process is writing (the
  lock itself is taken by `train_and_evaluate`; see `gan_jax.training.run_lock`)."""
  from gan_jax.training import run_lock  # pylint: disable=g-import-not-at-top

  busy = run_lock.busy(workdir)
  if busy is not None:
    raise WorkdirLockedError(busy)


def _train(args: argparse.Namespace, overrides: list[str]) -> None:
  _join_processes(args, connect=False)  # bad flags fail before the config is even read
  if not (args.distributed or args.num_processes):  # (the processes of one run share it)
    _refuse_if_locked(args.workdir)
  config = apply_overrides(load_config_file(args.config), overrides)
  from gan_jax.translation import run_config  # pylint: disable=g-import-not-at-top

  if run_config.is_translation(config):  # pix2pix / CycleGAN: gan_jax.translation.train
    _train_translation(args, config)
    return
  _join_processes(args, connect=True)
  import jax  # pylint: disable=g-import-not-at-top
  from gan_jax.training import train  # pylint: disable=g-import-not-at-top

  state = train.train_and_evaluate(config, args.workdir, overwrite=args.overwrite)
  if jax.process_index() != 0:  # one process speaks for a multi-process run
    return
  step = min(_step_values(state.step))  # [K] steps with num_replicas = K
  where = args.workdir
  if config.num_replicas > 1:
    where = os.path.join(args.workdir, f'replica_{{0..{config.num_replicas - 1}}}')
  _report_end(step, config.train.steps, where)


def _train_translation(args: argparse.Namespace, config) -> None:
  """`gan-jax train` of a translation config (one process)."""
  if args.distributed or args.num_processes or args.coordinator:
    raise UsageError(
      'a translation config (pix2pix, CycleGAN) trains in one process: drop --coordinator, '
      '--num-processes, --process-id and --distributed.'
    )
  from gan_jax.translation import train  # pylint: disable=g-import-not-at-top

  state = train.train_translation(config, args.workdir, overwrite=args.overwrite)
  _report_end(_step_values(state.step)[0], config.train.steps, args.workdir)


def _report_end(step: int, steps: int, where: str) -> None:
  """The last line of `gan-jax train`: done, or stopped with a checkpoint to resume from."""
  if step < steps:
    print(
      f'stopped at step {step} of {steps} with a checkpoint in {where}; '
      'run the same command again to resume.'
    )
  else:
    print(f'done: checkpoints, samples and logs in {where}')


def _step_values(step) -> list[int]:
  """The step counter(s) of a state as ints: one, or K of a replicated run's stacked state."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  return [int(s) for s in np.ravel(np.asarray(step))]


def _sweep(args: argparse.Namespace, overrides: list[str]) -> str | None:
  """Runs `gan-jax sweep`; returns the one-line summary of failed runs, or None."""
  from gan_jax import sweep  # pylint: disable=g-import-not-at-top

  result = sweep.run_sweep(
    args.ablation,
    args.workdir,
    jobs=args.jobs,
    replicas=args.replicas,
    dry_run=args.dry_run,
    summary_only=args.summary_only,
    cli_overrides=overrides,
    seeds=args.seeds,
  )
  return result.error_line(args.workdir)


def _check_out_folder(out: str) -> None:
  """UsageError unless the folder of `--out` is a folder or can be made: the nearest part of
  its path that exists must be a folder, not a regular file (e.g. `--out a_file/x.png`)."""
  parent = os.path.dirname(os.path.abspath(out))
  while not os.path.lexists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UsageError(
      f'--out {out!r} is inside {parent!r}, which is a file, not a folder; choose an --out '
      'in a folder.'
    )


def _ema_stats(args: argparse.Namespace, config: object) -> str:
  """The EMA generator's BatchNorm-statistics policy: `--ema-stats` when given, else the
  run's `eval.ema_batch_stats` ('raw' for runs written before the field)."""
  if args.ema_stats is not None:
    return args.ema_stats
  from gan_jax.config import ema_batch_stats  # pylint: disable=g-import-not-at-top

  return ema_batch_stats(config)


def _eval_settings(args: argparse.Namespace, config: object | None) -> dict:
  """`gan-jax eval`'s evaluation settings: each command-line value given, else the run's
  (`config`, its config.json, for --workdir: the run's logged evaluation is then reproduced
  with the same latents, from its `seed`, and the same split and counts), else the library's
  defaults (`base_config()`; also for fields an older config.json lacks)."""
  from gan_jax.config import base_config  # pylint: disable=g-import-not-at-top

  defaults = base_config()
  run_eval = config.get('eval', {}) if config is not None else {}
  given = {
    'metrics': args.metrics,
    'split': args.split,
    'feature_net': args.feature_net,
    'batch_size': args.batch_size,
    'kid_pr_samples': args.kid_pr_samples,
  }
  out = {k: v if v is not None else run_eval.get(k, defaults.eval[k]) for k, v in given.items()}
  run_seed = config.get('seed', defaults.seed) if config is not None else defaults.seed
  out['seed'] = args.seed if args.seed is not None else run_seed
  # Generated images for --workdir without --num-samples (the run's counts).
  out['num_samples'] = (config or {}).get('eval_num_samples', defaults.eval_num_samples)
  out['modes_num_samples'] = run_eval.get('modes_num_samples', defaults.eval.modes_num_samples)
  return out


def _refuse_translation_run(workdir: str, command: str) -> None:
  """A pix2pix / CycleGAN run folder (its `translation_run.json`, or a CycleGAN run's
  `seed_<s>/translation_run.json`) given to a command for GAN runs: one line naming
  `gan-jax translate`."""
  from gan_jax.translation import run as translation_run  # pylint: disable=g-import-not-at-top

  records = [os.path.join(workdir, translation_run.RECORD_FILE)] + glob.glob(
    os.path.join(glob.escape(workdir), 'seed_*', translation_run.RECORD_FILE)
  )
  if any(os.path.exists(r) for r in records):
    raise UsageError(
      f'{workdir!r} is an image translation run (pix2pix / CycleGAN), not a GAN run that '
      f'{command} reads: translate images with `gan-jax translate --workdir {workdir} --input '
      'IMAGE_OR_FOLDER --out OUT` (a CycleGAN run: its seed_<s> folder).'
    )


def _sample(args: argparse.Namespace) -> None:
  if not os.path.isdir(args.workdir):
    raise UsageError(
      f'workdir {args.workdir!r} does not exist; train first with '
      '`gan-jax train --config ... --workdir ...`.'
    )
  if args.num <= 0:
    raise UsageError(f'--num={args.num} must be a positive number of images.')
  if args.label is not None and args.per_class is not None:
    raise UsageError('give either --label (samples of one class) or --per-class (every class).')
  if args.per_class is not None and args.per_class <= 0:
    raise UsageError(f'--per-class={args.per_class} must be a positive number of images.')
  import jax  # pylint: disable=g-import-not-at-top
  from gan_jax.core import sampling  # pylint: disable=g-import-not-at-top
  from gan_jax.training.checkpoint import load_run  # pylint: disable=g-import-not-at-top

  _check_out_folder(args.out)
  try:
    sampling.check_image_path(args.out)
    sampling.check_scale(args.scale)
  except ValueError as e:
    raise UsageError(str(e)) from None
  _refuse_translation_run(args.workdir, 'gan-jax sample')
  config, gan, state = load_run(args.workdir, args.step)
  use_ema = config.train.ema_decay > 0 and not args.no_ema
  key = jax.random.PRNGKey(args.seed)
  flag = '--label' if args.label is not None else '--per-class'
  if not gan.conditional and (args.label is not None or args.per_class is not None):
    raise UsageError(
      f'{flag} needs a class-conditional run (model.num_classes > 0); {args.workdir!r} is '
      'unconditional: drop it.'
    )
  if args.label is not None and not 0 <= args.label < gan.num_classes:
    raise UsageError(
      f'--label={args.label} is out of range: the run has {gan.num_classes} classes, 0 to '
      f'{gan.num_classes - 1}.'
    )
  labels, ncol, what = None, None, ''
  if gan.conditional and args.label is None:
    ncol = args.per_class or max(1, args.num // gan.num_classes)
  num = gan.num_classes * ncol if ncol else args.num
  try:  # before drawing latents or generating: the grid's size in memory
    sampling.check_grid(num, gan.image_shape, ncol, args.scale)
  except ValueError as e:
    raise UsageError(str(e)) from None
  if args.label is not None:
    z = gan.sample_latents(key, args.num)
    labels = sampling.per_class_labels(gan.num_classes, args.num, [args.label])
    what = f' of class {args.label}'
  elif gan.conditional:  # one row per class; --num / K per row unless --per-class
    z, labels = sampling.per_class_inputs(gan, key, ncol)
    what = f' ({gan.num_classes} classes x {ncol}, one row per class)'
  else:
    z = gan.sample_latents(key, args.num)
  stats = sampling.sampling_batch_stats(
    gan, state, use_ema=use_ema, ema_stats=_ema_stats(args, config), seed=config.seed
  )
  images = sampling.sample_in_chunks(gan, state, z, labels, use_ema=use_ema, batch_stats=stats)
  sampling.save_grid(args.out, images, ncol=ncol, scale=args.scale)
  print(f'wrote {len(images)} samples{what} from step {int(state.step)} to {args.out}')


def _read_png_folder(folder: str, batch_size: int, channels: int | None):
  """(image count, (H, W, C), iterator of float32 [B, H, W, C] batches in [-1, 1]) of the
  PNG/JPEG files in `folder`, sorted by name, read batch by batch."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if not os.path.isdir(folder):
    raise UsageError(f'--images {folder!r} is not a folder of PNG images.')
  files = sorted(
    os.path.join(folder, f)
    for f in os.listdir(folder)
    if f.lower().endswith(('.png', '.jpg', '.jpeg')) and os.path.isfile(os.path.join(folder, f))
  )
  if not files:
    raise UsageError(f'--images {folder!r} holds no .png/.jpg files.')

  def unreadable(path: str, e: Exception) -> UsageError:
    return UsageError(
      f'--images: {path} cannot be read as an image ({type(e).__name__}: {e}); remove or '
      'replace it.'
    )

  # Pillow's errors for a truncated, corrupt or decompression-bomb file (the last is no
  # OSError); each is reported naming the file.
  bad_image = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
  try:
    with Image.open(files[0]) as first:
      c = channels or (1 if first.mode in ('L', 'I', 'I;16', '1') else 3)
      shape = (first.height, first.width, c)
  except bad_image as e:
    raise unreadable(files[0], e) from None
  mode = 'L' if c == 1 else 'RGB'

  def batches():
    for lo in range(0, len(files), batch_size):
      out = []
      for path in files[lo : lo + batch_size]:
        try:
          with Image.open(path) as img:
            x = np.asarray(img.convert(mode), np.float32)
        except bad_image as e:
          raise unreadable(path, e) from None
        x = x[..., None] if x.ndim == 2 else x
        if x.shape != shape:
          raise UsageError(
            f'{path} is {x.shape[1]}x{x.shape[0]} but {files[0]} is {shape[1]}x{shape[0]}; all '
            'images in the folder must have one size.'
          )
        out.append(x / 127.5 - 1.0)
      yield np.stack(out)

  return len(files), shape, batches()


def _eval(args: argparse.Namespace) -> None:
  import json  # pylint: disable=g-import-not-at-top

  from gan_jax.metrics import evaluate  # pylint: disable=g-import-not-at-top

  if sum(x is not None for x in (args.workdir, args.images, args.real_split)) != 1:
    raise UsageError(
      'give exactly one of --workdir (a training run), --images (a PNG folder) or '
      '--real-split (a real split, for the real-vs-real floor).'
    )
  if args.num_samples is not None and args.num_samples <= 0:
    raise UsageError(f'--num-samples={args.num_samples} must be a positive number of images.')
  if args.out is not None:
    _check_out_folder(args.out)
  config = None
  if args.workdir is not None:
    if not os.path.isdir(args.workdir):
      raise UsageError(f'workdir {args.workdir!r} does not exist; train first.')
    from gan_jax.training.checkpoint import load_run  # pylint: disable=g-import-not-at-top

    _refuse_translation_run(args.workdir, 'gan-jax eval')
    config, gan, state = load_run(args.workdir, args.step, best=args.best)
  # Settings not given: a run's own evaluation settings (so that its logged figures are
  # reproduced: the same latents, split and sample counts), else the library's defaults.
  settings = _eval_settings(args, config)
  metrics = evaluate.parse_metrics(settings['metrics'])
  common = dict(
    split=settings['split'],
    feature_net=settings['feature_net'],
    batch_size=settings['batch_size'],
    kid_pr_samples=settings['kid_pr_samples'],
    inception_weights=args.inception_weights,
    download_inception=args.download_inception,
    cache_dir=args.cache_dir,
    metrics=metrics,
    seed=settings['seed'],
  )
  meta = {'metrics': list(metrics), 'split': settings['split'], 'seed': settings['seed']}
  if config is not None:
    data_dir = args.data_dir or config.data.get('data_dir')
    ev = evaluate.Evaluator.create(
      dataset=args.dataset or config.data.name,
      data_dir=data_dir,
      image_size=config.data.image_size,
      channels=config.data.channels,
      num_samples=args.num_samples or settings['num_samples'],
      modes_num_samples=args.num_samples or settings['modes_num_samples'],
      **common,
    )
    use_ema = config.train.ema_decay > 0 and not args.no_ema
    ema_stats = _ema_stats(args, config)
    ev = dataclasses.replace(ev, ema_batch_stats=ema_stats)
    results = ev.evaluate_state(gan, state, use_ema=use_ema)
    step = int(state.step)
    meta.update(
      workdir=args.workdir,
      step=step,
      ema=use_ema,
      ema_batch_stats=ema_stats if use_ema else None,
      dataset=args.dataset or config.data.name,
    )
    out = args.out or os.path.join(
      args.workdir, f'eval_step{step}{"_best" if args.best else ""}.json'
    )
  elif args.real_split is not None:
    if args.dataset is None:
      raise UsageError('--real-split needs --dataset (e.g. --dataset mnist --real-split test).')
    from gan_jax.config import base_config as _base  # pylint: disable=g-import-not-at-top
    from gan_jax.data import pipeline as data_lib  # pylint: disable=g-import-not-at-top

    shape = {'mnist': (28, 1), 'fashion_mnist': (28, 1), 'stacked_mnist': (28, 3)}
    size, channels = shape.get(args.dataset, (_base().data.image_size, args.channels or 3))
    ds = data_lib.build_eval_dataset(
      args.dataset, args.real_split, data_dir=args.data_dir, image_size=size,
      channels=args.channels or channels, batch_size=settings['batch_size'],
    )  # fmt: skip
    examples = data_lib.load_images(
      args.dataset, args.real_split, data_dir=args.data_dir, image_size=size,
      channels=args.channels or channels,
    )  # fmt: skip
    count = int(examples.cardinality().numpy())
    if count < 0:  # unknown cardinality: count once
      count = sum(1 for _ in examples)
    num = min(args.num_samples or count, count)
    ev = evaluate.Evaluator.create(
      dataset=args.dataset,
      data_dir=args.data_dir,
      image_size=size,
      channels=args.channels or channels,
      num_samples=num,
      modes_num_samples=num,
      **common,
    )
    results = ev.evaluate_batches(b['image'] for b in ds.as_numpy_iterator())
    meta.update(real_split=args.real_split, dataset=args.dataset)
    out = args.out or 'eval_results.json'
  else:
    if args.dataset is None:
      raise UsageError('--images needs --dataset (the real data to compare with, e.g. mnist).')
    count, (h, w, c), batches = _read_png_folder(args.images, settings['batch_size'], args.channels)
    if h != w:
      raise UsageError(f'images must be square, got {w}x{h}.')
    num = min(args.num_samples or count, count)
    if args.num_samples and args.num_samples > count:
      raise UsageError(
        f'--num-samples={args.num_samples} but {args.images!r} holds {count} images.'
      )
    ev = evaluate.Evaluator.create(
      dataset=args.dataset,
      data_dir=args.data_dir,
      image_size=h,
      channels=c,
      num_samples=num,
      modes_num_samples=num,
      **common,
    )
    results = ev.evaluate_batches(batches)
    meta.update(images=args.images, dataset=args.dataset)
    out = args.out or 'eval_results.json'
  if ev.net is not None:
    meta.update(
      feature_net=ev.net.name,
      feature_net_sha256=ev.net.weights_sha256,
      reference=ev.reference.key,
      reference_count=ev.reference.stats.count,
    )
  meta['num_samples'] = ev.num_samples
  print(evaluate.format_table(results))
  with open(out, 'w') as f:
    json.dump({**meta, 'results': results}, f, indent=2)
  print(f'wrote {out}')


def _translate(args: argparse.Namespace) -> None:
  """Runs `gan-jax translate` (`gan_jax.translation.translate`, imported only here: it loads
  JAX)."""
  from gan_jax.translation import translate  # pylint: disable=g-import-not-at-top

  try:
    done = translate.translate(
      args.workdir, args.input, args.out, direction=args.direction, batch_size=args.batch
    )
  except translate.TranslateUsageError as e:
    raise UsageError(str(e)) from e
  what = {'image': 'image', 'folder': 'image(s), one PNG each,', 'grid': 'image(s) as a grid'}
  print(
    f'translated {done["count"]} {what[done["mode"]]} ({done["direction"]}, step '
    f'{done["step"]}) to {done["out"]}'
  )


def _add_translate_parser(sub) -> None:
  r = sub.add_parser(
    'translate',
    help='translate images with a pix2pix or CycleGAN run (scripts/pix2pix_task.py, '
    'scripts/cyclegan_task.py)',
    description='Applies a translation run\'s generator, in inference mode, to one image or to '
    'every .png/.jpg/.jpeg of a folder (sorted). Inputs are prepared as the run\'s task '
    'prepared its training inputs (colorize: colour is reduced to greyscale; superres: an 8x8 '
    'image is upsampled bicubically; inpaint: transparent pixels are the hole); images of '
    'another size are refused, not resized. See docs/translation.md.',
  )
  r.add_argument('--workdir', required=True, help='translation run folder (CycleGAN: seed_<s>)')
  r.add_argument('--input', required=True, help='an image, or a folder of images')
  r.add_argument(
    '--out',
    required=True,
    help='an image file (one input); a new or empty folder (one PNG per input, same names); '
    'or, for a folder of inputs, a .png grid of input | output rows',
  )
  r.add_argument(
    '--direction',
    choices=('a2b', 'b2a'),
    default='a2b',
    help='a2b (default; pix2pix: input -> output, CycleGAN: G) or b2a (CycleGAN\'s F)',
  )
  r.add_argument('--batch', type=int, default=64, help='images per generator call (default 64)')


def _seed_list(text: str) -> list[int]:
  """'1,2' -> [1, 2] for `gan-jax sweep --seeds` (argparse turns the error into exit 2)."""
  try:
    return [int(part) for part in text.split(',')]
  except ValueError:
    raise argparse.ArgumentTypeError(
      f'{text!r} is not a comma-separated list of integer seeds (e.g. 1,2)'
    ) from None


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
  t.add_argument(
    '--overwrite',
    action='store_true',
    help='start a new run even if workdir holds one (deletes its checkpoints, samples and '
    'logs once the config has passed every check); without it, a run resumes',
  )
  m = t.add_argument_group(
    'several processes (multi-host)',
    'Start the same command once per process (per host of a TPU pod slice, per node or GPU '
    'of a cluster); they train one run together, on a --workdir they all see. Give all of '
    '--coordinator, --num-processes and --process-id, or --distributed to detect them.',
  )
  m.add_argument(
    '--coordinator',
    metavar='HOST:PORT',
    help='address of process 0 and a free port there, reachable from every process '
    '(e.g. 10.0.0.1:12345; localhost:12345 on one machine)',
  )
  m.add_argument('--num-processes', type=int, metavar='N', help='number of processes')
  m.add_argument('--process-id', type=int, metavar='I', help='this process, 0 to N-1')
  m.add_argument(
    '--distributed',
    action='store_true',
    help='detect the processes from the environment (Cloud TPU VM, SLURM srun, Open MPI '
    'mpirun, Kubernetes); flags given above take precedence',
  )
  m.add_argument(
    '--distributed-timeout',
    type=float,
    default=300.0,
    metavar='SECONDS',
    help='give up (exit status 1) when not all processes have connected after this long '
    '(default 300)',
  )
  s = sub.add_parser('sample', help='write a grid of samples from a run\'s latest checkpoint')
  s.add_argument('--workdir', required=True, help='run folder written by `gan-jax train`')
  s.add_argument('--num', type=int, default=64, help='number of images (default 64)')
  s.add_argument('--out', default='samples.png', help='PNG file to write (default samples.png)')
  s.add_argument('--seed', type=int, default=0, help='seed of the latent vectors (default 0)')
  s.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  s.add_argument('--scale', type=int, default=2, help='pixel upscaling of the grid (default 2)')
  s.add_argument('--no-ema', action='store_true', help='sample from the raw, not the EMA, G')
  s.add_argument(
    '--ema-stats',
    choices=('raw', 'standing'),
    default=None,
    help="BatchNorm statistics of the EMA G: 'raw' (the raw G's running averages) or "
    "'standing' (recomputed from the EMA weights on 16 x 256 latents seeded with the run's "
    "seed, Brock et al. 2019); default: the run's eval.ema_batch_stats",
  )
  s.add_argument(
    '--label',
    type=int,
    default=None,
    help='class-conditional runs: all --num images of this class (0 to num_classes - 1)',
  )
  s.add_argument(
    '--per-class',
    type=int,
    default=None,
    metavar='N',
    help='class-conditional runs: N images of every class, one row per class, the same '
    'latents in each column (default for a conditional run: --num / num_classes per row)',
  )
  e = sub.add_parser(
    'eval',
    help='evaluate a run (or a folder of PNG images) with FID, KID, IS, precision/recall',
    description='Prints a table and writes JSON. FID on a LeNet domain classifier is labelled '
    '"FID (LeNet)", never Inception FID.',
  )
  e.add_argument('--workdir', help='run folder written by `gan-jax train`')
  e.add_argument('--images', help='a folder of PNG/JPEG images to evaluate instead of a run')
  e.add_argument(
    '--real-split',
    help='evaluate this real split of --dataset instead (e.g. '
    'test against --split train: the real-vs-real floor of each metric)',
  )
  e.add_argument('--dataset', help='real dataset to compare with (default: the run\'s)')
  e.add_argument('--split', help="real split (default: the run's eval.split, else train)")
  e.add_argument('--data-dir', help='TFDS data dir (default: the run\'s or $TFDS_DATA_DIR)')
  e.add_argument(
    '--num-samples',
    type=int,
    help="generated images (default: the run's eval_num_samples, or eval.modes_num_samples "
    'for modes; else 10000; folder: all)',
  )
  e.add_argument(
    '--metrics',
    help="comma-separated: fid,kid,is,pr,classes,modes (default: the run's eval.metrics, "
    'else fid,kid,is,pr)',
  )
  e.add_argument(
    '--feature-net',
    help='auto, lenet_mnist, lenet_fashion_mnist or inception_v3 (auto: LeNet for MNIST-like '
    "data, else Inception; default: the run's eval.feature_net, else auto)",
  )
  e.add_argument('--step', type=int, help='checkpoint step (default: latest)')
  e.add_argument('--best', action='store_true', help='evaluate the best-FID checkpoint')
  e.add_argument('--no-ema', action='store_true', help='evaluate the raw, not the EMA, G')
  e.add_argument(
    '--ema-stats',
    choices=('raw', 'standing'),
    default=None,
    help="BatchNorm statistics of the EMA G: 'raw' (the raw G's running averages) or "
    "'standing' (recomputed from the EMA weights on 16 x 256 latents seeded with --seed, "
    "Brock et al. 2019); default: the run's eval.ema_batch_stats",
  )
  e.add_argument('--channels', type=int, choices=(1, 3), help='folder images: read as 1 or 3')
  e.add_argument(
    '--batch-size', type=int, help="images per call (default: the run's eval.batch_size, else 500)"
  )
  e.add_argument(
    '--kid-pr-samples',
    type=int,
    help="features kept for KID/PR (default: the run's eval.kid_pr_samples, else 10000)",
  )
  e.add_argument(
    '--seed',
    type=int,
    help="seed of the latents, standing statistics and KID subsets (default: the run's seed, "
    'as in its training evaluations; else 0)',
  )
  e.add_argument('--inception-weights', help='pt_inception-2015-12-05 weights file')
  e.add_argument(
    '--download-inception',
    action='store_true',
    help='download the Inception weights from pytorch-fid\'s URL if missing',
  )
  e.add_argument('--cache-dir', help='reference-statistics cache (default ~/.cache/gan_jax)')
  e.add_argument('--out', help='JSON file (default <workdir>/eval_step<N>.json)')
  w = sub.add_parser(
    'sweep',
    help='run an ablation: a grid of config overrides x seeds, then results.csv/.md and plots',
    description='Runs every cell x seed of an ablation file (see gan_jax/sweep/__init__.py for its '
    'format) into WORKDIR/<axis=label,...>/seed_<s>, skipping finished runs and resuming the '
    'others, then writes results.csv, results.md, <metric>_vs_step.png and samples.png.',
    epilog='Override any config field of every run with --config.FIELD=VALUE, e.g. '
    '--config.train.steps=200.',
  )
  w.add_argument(
    'ablation',
    help='ablation file, e.g. experiments/ablations/losses_fashion.py (optionally :variant)',
  )
  w.add_argument('--workdir', required=True, help='sweep folder (one run folder per cell x seed)')
  w.add_argument(
    '--jobs',
    type=int,
    default=1,
    help='1: runs one after another in this process (default); N: up to N `gan-jax train` '
    'subprocesses at a time',
  )
  w.add_argument(
    '--dry-run', action='store_true', help='list the runs and their overrides; run nothing'
  )
  w.add_argument(
    '--replicas',
    action='store_true',
    help='train the seeds of each cell together as replicas of one compiled program '
    '(config.num_replicas; in process)',
  )
  w.add_argument(
    '--seeds',
    type=_seed_list,
    help="only these of the ablation's seeds, comma-separated (e.g. 1,2: the seeds a study "
    'still needs); the summaries then cover these seeds',
  )
  w.add_argument(
    '--summary-only',
    action='store_true',
    help='train nothing: rewrite results.csv/.md and the plots from the run folders as they are',
  )
  edit_cli.add_parser(sub)
  export.add_parser(sub)
  _add_translate_parser(sub)
  return parser


class _DropOrphanedWriteErrors(logging.Filter):
  """Drops asyncio's 'Task exception was never retrieved' records for Orbax's writes."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ('exception was never retrieved' in message and 'orbax' in message)


def _collect_orphaned_writes() -> None:
  """Garbage-collects, quietly, the write tasks Orbax abandoned when a checkpoint failed.

  When one write of a checkpoint fails (e.g. a full disk) Orbax raises that error and drops
  the sibling writes, which failed for the same reason or never started. asyncio reports
  each with a traceback, and Python each never-awaited coroutine with a warning, whenever
  they are collected: at exit, after our one-line error that already names the cause, unless
  they are collected here first (call it once nothing references the failed run's frames).
  A write still running now is collected later, at exit, so the filters stay installed for
  the rest of the process (it is about to exit with the error).
  """
  logging.getLogger('asyncio').addFilter(_DropOrphanedWriteErrors())
  warnings.filterwarnings('ignore', r"coroutine '.*' was never awaited", RuntimeWarning)
  gc.collect()


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the `gan-jax` console script; returns the exit status."""
  lifeline.die_with_parent()  # a sweep's child stops (cleanly, on SIGTERM) when the sweep dies
  parser = build_parser()
  args, rest = parser.parse_known_args(argv)
  # Compiled programs persist across runs (~/.cache/gan_jax/xla): later runs with the same
  # shapes start sooner and skip the compiler's memory. Off with GAN_JAX_XLA_CACHE=0.
  use_compilation_cache()

  try:
    if args.command == 'train':
      _train(args, rest)
    elif args.command == 'sweep':
      failure = _sweep(args, rest)
      if failure:
        print(f'gan-jax: error: {failure}', file=sys.stderr)
        return 1
    else:
      if rest:
        raise UsageError(f'unrecognized arguments: {" ".join(rest)}')
      if args.command == 'eval':
        try:
          _eval(args)
        except ValueError as e:  # bad images, too few samples, ...: a usage problem
          raise UsageError(str(e)) from e
      elif args.command == 'edit':
        try:
          edit_cli.run(args)
        except edit_cli.EditUsageError as e:
          raise UsageError(str(e)) from e
      elif args.command == 'export':
        try:
          export.run(args)
        except export.ExportUsageError as e:
          raise UsageError(str(e)) from e
      elif args.command == 'translate':
        _translate(args)
      else:
        _sample(args)
  except (
    UsageError,
    ConfigError,
    FileNotFoundError,
    PermissionError,
    UnreadableCheckpointError,
    WorkdirLockedError,
  ) as e:
    error, status = str(e), 2
  except (NonFiniteError, CheckpointWriteError) as e:
    error, status = str(e), 1
  except OSError as e:  # e.g. a full disk while writing logs
    if args.command in ('train', 'sweep'):
      error = (
        f'{e}. Checkpoints already written are kept: fix the cause, then run the same command '
        'again to resume.'
      )
    else:  # sample, eval, edit, export, translate: nothing to resume
      error = f'{e}. Fix the cause and run the command again.'
    status = 1
  else:
    return 0
  # Out of the except blocks nothing references the failed run's frames any more: collect
  # what a failed training run left behind now, so that our error stays the last line
  # printed. Only after training started (status 1): usage errors (status 2) leave nothing.
  if status == 1:
    _collect_orphaned_writes()
  print(f'gan-jax: error: {error}', file=sys.stderr)
  return status


def cli() -> None:
  """The `gan-jax` console script (and `python -m gan_jax.cli.main`): `main`, then exit.

  After a failed run (status 1) the process exits at once when the error is printed:
  TensorStore's threads may still be finishing the writes of the failed checkpoint, and
  their callbacks, finding Orbax's event loop closed, would print tracebacks after our
  one-line error. Nothing of gan_jax's is lost: training has closed its checkpoint manager
  (waiting for every save) and its log writers before `main` returns.
  """
  status = main()
  if status == 1:
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(1)
  sys.exit(status)


if __name__ == '__main__':
  cli()
