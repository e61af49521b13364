"""Time to quality: wall time to reach a fixed FID (LeNet) on MNIST, gan_jax against the PyTorch
reference, same model and hyperparameters.

What is trained (both frameworks): the model of `experiments/mnist_dcgan.py` (`--model
dcgan28`, default) or `experiments/mnist_mlp.py` (`--model mlp`), non-saturating loss, Adam
(lr 2e-4, betas 0.5 / 0.999), batch 64, n_critic 1, generator EMA 0.999, on the real MNIST
train split of TFDS (`--data-dir`, default $TFDS_DATA_DIR, else ../shared/tfds):

  * gan_jax (in this process): `gan_jax.core.state.create_state`, the jitted train step of
    `make_train_step` / `jit_train_step` (compiled ahead of the clock) and gan_jax's own input
    pipeline, `gan_jax.training.train.host_batches` (tf.data: decode, cache, full shuffle per epoch
    with the run's seed) behind `gan_jax.data.pipeline.device_prefetch`, with at most one step in
    flight, as `gan_jax.training.train` runs it: the same batches and states as `gan-jax train` with
    the same config and seed (its train metrics at step 50 equal the main job's
    metrics.jsonl to the bit);
  * PyTorch (`TorchGAN` of `benchmarks/torch_reference.py`, eager, fused Adam) in a worker
    process (this file with `--torch-worker`; it imports torch, never JAX) with
    `torch.set_num_threads(--torch-threads)`, default the cores this process may use. This
    process reads the same TFDS split with `gan_jax.data.pipeline` into one float32 array in [-1, 1]
    before the PyTorch clock starts; the worker holds it as one NCHW tensor and each step
    indexes a batch out of it (`index_select`) from a fresh `torch.randperm` per epoch
    (seeded with --seed + 2), so its data feeding costs next to nothing.

`--jax-config FILE.py[:variant]` makes gan_jax train that config's recipe instead (its model,
loss, penalties, schedules, EMA, conditioning and `eval.ema_batch_stats`, with this
benchmark's seed, data, batch, steps and evaluation), while PyTorch still trains the DCGAN of
`--model`: issue 18 compares the main job's recipe with the PyTorch DCGAN this way.
`--report-fids 20,torch` adds, for each FID listed ('torch': PyTorch's last one), each
framework's first evaluation at or below it (`first_at_or_below` in the JSON).

The frameworks run one after the other (`--frameworks`, default jax,torch; torch only when
installed, the `bench` extra), never at the same time.

Evaluation, the same for both: every `--eval-every` steps (default 500) and at `--max-steps`,
the EMA generator makes `--eval-samples` images (default 10,000) from the fixed latents of
`gan_jax.metrics.evaluate.latents(--seed, i)` in inference mode (BatchNorm running averages),
and gan_jax's `Evaluator.evaluate_batches` scores them: FID (LeNet) against the cached
reference statistics of `--eval-split` (default the train split). gan_jax samples with
`Evaluator.evaluate_state`; the PyTorch worker runs a copy of G with the EMA weights and G's
running statistics in `eval()` mode on the same latents, transposes NCHW -> NHWC and hands the
float32 array to this process (a .npy file), which feeds it to the same evaluator. A framework
stops at the first evaluation with FID (LeNet) <= `--target-fid`, or at `--max-steps`.

`--fid-check` (on by default, with PyTorch): before training, the first `--eval-samples` real
images of the split go through the PyTorch side's path (NHWC array -> the worker's NCHW
tensor -> the NHWC array generated images take) and, straight from gan_jax.data.pipeline, through
the gan_jax path; both FIDs are in the JSON (`fid_check`) and must be equal.

Default target FID (LeNet) 250: in the README's main job (`gan-jax train --config
experiments/mnist_dcgan.py`, seed 0, the same EMA generator, 10,000 samples against the train
split) FID (LeNet) was 684 at step 1,000, 278 at 2,000, 160 at 3,000, 135 at 3,709 and 108 at
5,000 (runs/mnist_dcgan: metrics.jsonl and `gan-jax eval --step N`). 250 is crossed between
steps 2,000 and 3,000 (about 2,200 by linear interpolation), where FID still falls ~100 per
1,000 steps, so the step it is reached at is well defined at an evaluation every 500 steps and
leaves room to max-steps 5,000. (The real-vs-real floor, test split vs train, is 0.68.)

Reported per framework (a markdown table on stdout and JSON):

  * steps to target (an evaluation step; "not reached" when `--max-steps` came first) and the
    training wall time to it: every step including its data feeding, from the first step to
    the step evaluated, evaluations excluded. gan_jax's clock includes its first batch, i.e.
    tf.data decoding the whole split into its shuffle buffer (`first_batch_s` in the JSON);
  * images/s while training (steps x batch / training wall time), over all steps run;
  * setup s, not in the training time: gan_jax builds the state and compiles the step
    (`compile_s`); PyTorch starts the worker, builds the models and loads the array, plus this
    process reading the split into it (`data_prep_s`);
  * eval s: all evaluations (sampling and FID; for PyTorch also the file hand-over);
  * the final FID (LeNet) and the trajectory (step: FID at every evaluation).

Output: the table and `benchmarks/results/time_to_quality_<platform>.json` (`--json`): every
evaluation (step, FID, cumulative training wall time, eval seconds), the last train metrics,
the JAX, jaxlib and PyTorch versions, threads, OMP_WAIT_POLICY, device, load average, the date
and the command.

Run from the repository root (venv active). At the default target each framework trains
about 2,500 steps (160,000 images) and evaluates every 500 (~12 s each on 2 CPU cores), so the
run takes 2,500 x 64 images at each framework's images/s (benchmarks/throughput.py's dcgan28
row) plus a few minutes: 10-20 minutes on an idle 2-core CPU, much longer on a busy one:

    TFDS_DATA_DIR=../shared/tfds python benchmarks/time_to_quality.py
    python benchmarks/time_to_quality.py --model mlp --target-fid F --max-steps 10000
    python benchmarks/time_to_quality.py --max-steps 50 --eval-every 50 --eval-samples 1000
    python benchmarks/time_to_quality.py --tiny          # smoke test: seconds

`--tiny`: width-8 models (MLP hidden 32), batch 16, 4 steps on train[:1024], an evaluation every
2 steps on 256 samples against train[:512] (any of these given explicitly wins).

Caveats:
  * One seed per framework, and the frameworks draw different random numbers (initial
    weights, latents, data order), so their FID trajectories differ by more than speed; the
    step counts to target are a noisy sample. Compare the images/s too, and repeat with other
    `--seed`s for a distribution.
  * The step to target is only known to `--eval-every` steps; the time to it is the time
    to that evaluation, not to the first step under the target.
  * PyTorch is the CPU build: on a GPU/TPU JAX backend this compares gan_jax there with
    PyTorch on the host CPU.
  * On a machine shared with other work PyTorch's OpenMP threads may wait on each other (see
    benchmarks/throughput.py); `--torch-threads 1` or OMP_WAIT_POLICY=PASSIVE (recorded)
    help there. The frameworks run one after the other, so load changes hit them unequally
    (the 1-minute load average at each framework's start and end is in the JSON).
  * The default target comes from DCGAN-28's trajectory; for `--model mlp` choose one from
    an MLP run's (`gan-jax train --config experiments/mnist_mlp.py`, eval/fid_lenet in its
    metrics.jsonl).
  * PyTorch's BatchNorm keeps an unbiased running variance, Flax a biased one: n / (n - 1),
    1.6% more variance (0.8% less scale after normalising) in DCGAN-28 G's BatchNorm1d at
    batch 64, next to nothing in its BatchNorm2d (n = 64 x 14 x 14); small against the FIDs
    compared.
  * During an evaluation gan_jax's input pipeline goes on filling its small prefetch
    buffers (two batches on the devices and tf.data's), off the clock.
  * FID (LeNet) is comparable only with FIDs computed by the same pinned LeNet
    (`gan_jax/metrics/lenet.py`), never with Inception FID.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import difflib
import importlib.util
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # bench_util is a sibling file, not a package module.
  sys.path.insert(0, str(BENCH))

from bench_util import (  # noqa: E402
  JsonLinesWorker,
  default_threads,
  loadavg,
  package_version,
  parse_set,
)

FRAMEWORKS = ('jax', 'torch')
LABELS = {'jax': 'gan_jax', 'torch': 'PyTorch'}
# --model -> the experiment whose config is trained.
EXPERIMENTS = {'dcgan28': 'mnist_dcgan', 'mlp': 'mnist_mlp'}
DEFAULT_TARGET_FID = 250.0
# Option defaults, full size and --tiny (an option given explicitly wins over both).
DEFAULTS = {
  'max_steps': 5000,
  'eval_every': 500,
  'eval_samples': 10000,
  'batch_size': 64,
  'train_split': 'train',
  'eval_split': 'train',
}
TINY_DEFAULTS = {
  'max_steps': 4,
  'eval_every': 2,
  'eval_samples': 256,
  'batch_size': 16,
  'train_split': 'train[:1024]',
  'eval_split': 'train[:512]',
}
TINY_MODEL = {'g_width': 8, 'd_width': 8, 'hidden': (32, 32)}
EVAL_BATCH = 500  # Images per generator / LeNet call (gan_jax's eval.batch_size).
NO_TORCH = "torch is not installed (pip install -e '.[bench]')"


def torch_installed() -> bool:
  return importlib.util.find_spec('torch') is not None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description=__doc__.splitlines()[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog='\n'.join(__doc__.splitlines()[2:]),
  )
  parser.add_argument(
    '--model', choices=sorted(EXPERIMENTS), default='dcgan28', help='Model (default dcgan28).'
  )
  parser.add_argument(
    '--target-fid',
    type=float,
    default=DEFAULT_TARGET_FID,
    help=f'Stop a framework at FID (LeNet) <= this (default {DEFAULT_TARGET_FID:g}).',
  )
  parser.add_argument(
    '--max-steps',
    type=int,
    default=None,
    help='Stop here if the target was not reached '
    f'(default {DEFAULTS["max_steps"]}; --tiny {TINY_DEFAULTS["max_steps"]}).',
  )
  parser.add_argument(
    '--eval-every',
    type=int,
    default=None,
    help='Steps between evaluations '
    f'(default {DEFAULTS["eval_every"]}; --tiny {TINY_DEFAULTS["eval_every"]}).',
  )
  parser.add_argument(
    '--eval-samples',
    type=int,
    default=None,
    help='Generated images per FID '
    f'(default {DEFAULTS["eval_samples"]}; --tiny {TINY_DEFAULTS["eval_samples"]}; > 128).',
  )
  parser.add_argument(
    '--batch-size',
    type=int,
    default=None,
    help='Training batch '
    f'(default {DEFAULTS["batch_size"]}; --tiny {TINY_DEFAULTS["batch_size"]}).',
  )
  parser.add_argument(
    '--train-split',
    default=None,
    help='TFDS split trained on '
    f'(default {DEFAULTS["train_split"]}; --tiny {TINY_DEFAULTS["train_split"]}).',
  )
  parser.add_argument(
    '--eval-split',
    default=None,
    help='TFDS split of the FID reference statistics '
    f'(default {DEFAULTS["eval_split"]}; --tiny {TINY_DEFAULTS["eval_split"]}).',
  )
  parser.add_argument(
    '--frameworks',
    default=None,
    help='Comma-separated, run in this order, from jax,torch (default jax,torch; jax alone '
    'when torch is not installed).',
  )
  parser.add_argument(
    '--torch-threads',
    type=int,
    default=default_threads(),
    help=f'torch.set_num_threads in the PyTorch worker (default {default_threads()}: the '
    'cores here).',
  )
  parser.add_argument(
    '--torch-adam',
    choices=('fused', 'foreach', 'for-loop'),
    default='fused',
    help="PyTorch's Adam implementation (default fused).",
  )
  parser.add_argument(
    '--fid-check',
    action=argparse.BooleanOptionalAction,
    default=True,
    help='With PyTorch: FID of real images through the PyTorch path and the gan_jax path, '
    'which must be equal (default on).',
  )
  parser.add_argument(
    '--tiny', action='store_true', help='Width-8 models and a few steps: a smoke test.'
  )
  parser.add_argument(
    '--data-dir',
    default=None,
    help='TFDS data dir (default: $TFDS_DATA_DIR, else ../shared/tfds beside the repository).',
  )
  parser.add_argument('--seed', type=int, default=0, help='Seed of both runs and the latents.')
  parser.add_argument(
    '--jax-config',
    default=None,
    help='gan_jax trains this config file (FILE.py[:variant], e.g. the main job '
    'experiments/mnist_main.py) instead of --model\'s experiment: its own model, loss, '
    'penalties, schedules, EMA and conditioning; PyTorch still trains --model.',
  )
  parser.add_argument(
    '--jax-set',
    action='append',
    default=[],
    metavar='FIELD=VALUE',
    help='A field of the gan_jax config, after --jax-config\'s (repeatable), e.g. --jax-set '
    'train.penalty_interval=16 --jax-set train.g_lr=4e-4. VALUE is a Python literal, else a '
    'string.',
  )
  parser.add_argument(
    '--report-fids',
    default='',
    help="Comma-separated FIDs (LeNet), or 'torch' for PyTorch's last FID: for each, the "
    'first evaluation of each framework at or below it (step, training wall s).',
  )
  parser.add_argument(
    '--json',
    default=None,
    help='Output JSON (default benchmarks/results/time_to_quality_<platform>.json).',
  )
  # Internal: this file as the PyTorch worker (JSON commands on stdin).
  parser.add_argument('--torch-worker', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.torch_worker:
    return args
  for name, value in (TINY_DEFAULTS if args.tiny else DEFAULTS).items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  for name in ('max_steps', 'eval_every', 'batch_size', 'torch_threads'):
    if getattr(args, name) < 1:
      parser.error(f'--{name.replace("_", "-")} must be >= 1.')
  if args.eval_samples <= 128:
    parser.error('--eval-samples must be > 128 (the LeNet has 128 features).')
  if not args.target_fid >= 0:
    parser.error('--target-fid must be >= 0.')
  args.jax_overrides = parse_set(args.jax_set, parser.error)
  if args.jax_overrides and not args.jax_config:
    parser.error('--jax-set needs --jax-config (the config file whose fields it sets).')
  args.torch_skipped = None
  if args.frameworks is None:
    args.frameworks = list(FRAMEWORKS)
    if not torch_installed():
      args.frameworks, args.torch_skipped = ['jax'], NO_TORCH
  else:
    args.frameworks = list(dict.fromkeys(x.strip() for x in args.frameworks.split(',') if x))
    bad = [x for x in args.frameworks if x not in FRAMEWORKS]
    if bad or not args.frameworks:
      parser.error(f'--frameworks: unknown {bad}; choose from {",".join(FRAMEWORKS)}.')
    if 'torch' in args.frameworks and not torch_installed():
      parser.error(f'--frameworks torch: {NO_TORCH}.')
    if 'torch' not in args.frameworks:
      args.torch_skipped = '--frameworks ' + ','.join(args.frameworks)
  return args


# --- the PyTorch worker (imports torch and numpy, never JAX) -----------------------------------


def to_nhwc(images) -> np.ndarray:
  """float32 NHWC numpy of a torch NCHW image batch: how PyTorch's images reach the evaluator."""
  return np.ascontiguousarray(images.detach().permute(0, 2, 3, 1).float().cpu().numpy())


class BatchStream:
  """Batches of a preloaded NCHW tensor in a fresh random order every epoch, as one
  infinite stream (a batch may span two epochs, like gan_jax's shuffle -> repeat -> batch)."""

  def __init__(self, images, batch_size: int, seed: int):
    import torch  # noqa: PLC0415 - worker only.

    self.torch, self.images, self.batch_size = torch, images, batch_size
    self.rng = torch.Generator().manual_seed(seed)
    self.order = torch.empty(0, dtype=torch.long)
    self.pos = 0

  def next(self):
    torch = self.torch
    if self.order.numel() - self.pos < self.batch_size:
      fresh = torch.randperm(self.images.shape[0], generator=self.rng)
      self.order, self.pos = torch.cat([self.order[self.pos :], fresh]), 0
    idx = self.order[self.pos : self.pos + self.batch_size]
    self.pos += self.batch_size
    return self.images.index_select(0, idx)


class TorchRun:
  """The worker's state: one TorchGAN, its data stream and the evaluation latents."""

  def setup(self, msg: dict[str, Any]) -> dict[str, Any]:
    import torch  # noqa: PLC0415 - worker only.

    import torch_reference  # noqa: PLC0415

    self.torch, self.ref = torch, torch_reference
    torch.set_num_threads(int(msg['threads']))
    t0 = time.perf_counter()
    self.images = torch.from_numpy(np.load(msg['data'])).permute(0, 3, 1, 2).contiguous()
    self.latents = torch.from_numpy(np.load(msg['latents']))
    self.gan = torch_reference.TorchGAN(msg['spec'], seed=msg['seed'], adam=msg['adam'])
    self.stream = BatchStream(self.images, int(msg['batch_size']), msg['seed'] + 2)
    return {
      'setup_s': time.perf_counter() - t0,
      'num_params': self.gan.num_params,
      'num_images': int(self.images.shape[0]),
      'threads': torch.get_num_threads(),
      'interop_threads': torch.get_num_interop_threads(),
      'torch_version': torch.__version__,
      'jax_imported': 'jax' in sys.modules,
    }

  def train(self, n: int) -> dict[str, Any]:
    """n steps, each on the next batch of the stream; the time includes the data feeding."""
    t0 = time.perf_counter()
    for _ in range(n):
      self.gan.step(self.stream.next())  # Eager CPU: done when it returns.
    train_s = time.perf_counter() - t0
    return {'train_s': train_s, 'metrics': {k: float(v) for k, v in self.gan.metrics.items()}}

  def ema_generator(self):
    """A copy of G with the EMA weights and G's BatchNorm running statistics, in eval mode."""
    g = copy.deepcopy(self.gan.G)
    with self.torch.no_grad():
      for p, e in zip(g.parameters(), self.gan.ema, strict=True):
        p.copy_(e)
    return g.eval()

  def generate(self, path: str, batch_size: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    g = self.ema_generator()
    with self.torch.inference_mode():
      out = [
        g(self.latents[lo : lo + batch_size]) for lo in range(0, len(self.latents), batch_size)
      ]
      images = to_nhwc(self.torch.cat(out))
    np.save(path, images)
    return {'generate_s': time.perf_counter() - t0, 'path': path}

  def echo_real(self, path: str, n: int) -> dict[str, Any]:
    """The first n training images, through the path the generated images take."""
    np.save(path, to_nhwc(self.images[:n]))
    return {'path': path}

  def finish(self) -> dict[str, Any]:
    return {'peak_rss_mib': self.ref.peak_rss_mib() if hasattr(self, 'ref') else None}


def serve_torch(stdin=None, stdout=None) -> None:
  """--torch-worker: one JSON command per line in, one JSON reply per line out.

    {"cmd": "setup", "spec": ..., "data": npy, "latents": npy, "batch_size", "seed",
     "threads", "adam"}                              -> {"setup_s", "num_params", ...}
    {"cmd": "train", "n": 500}                       -> {"train_s", "metrics"}
    {"cmd": "generate", "path": npy, "batch_size"}   -> {"generate_s", "path"}
    {"cmd": "echo_real", "path": npy, "n": 10000}    -> {"path"}
    {"cmd": "exit"}                                  -> {"peak_rss_mib"}

  Replies go to the original stdout; anything else printed there goes to stderr.
  """
  stdin = stdin or sys.stdin
  if stdout is None:
    sys.stdout.flush()
    stdout = os.fdopen(os.dup(1), 'w')
    os.dup2(2, 1)
  run = TorchRun()
  for line in stdin:
    msg = json.loads(line)
    cmd = msg['cmd']
    try:
      if cmd == 'setup':
        reply = run.setup(msg)
      elif cmd == 'train':
        reply = run.train(int(msg['n']))
      elif cmd == 'generate':
        reply = run.generate(msg['path'], int(msg['batch_size']))
      elif cmd == 'echo_real':
        reply = run.echo_real(msg['path'], int(msg['n']))
      elif cmd == 'exit':
        reply = run.finish()
      else:
        raise ValueError(f'unknown command {cmd!r}')
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises.
      reply = {'error': f'{type(err).__name__}: {err}'}
    stdout.write(json.dumps(reply) + '\n')
    stdout.flush()
    if cmd == 'exit':
      return


class TorchClient(JsonLinesWorker):
  """This file as a `--torch-worker` subprocess."""

  def __init__(self) -> None:
    super().__init__(Path(__file__).resolve(), '--torch-worker')


# --- this process: config, evaluation, the two runs ----------------------------------------------


def default_data_dir(arg: str | None) -> str:
  return arg or os.environ.get('TFDS_DATA_DIR') or str(REPO.parent / 'shared' / 'tfds')


def make_config(args: argparse.Namespace):
  """The experiment's config with this benchmark's seed, data, batch and (--tiny) widths."""
  from gan_jax.training.train import resolve_config  # noqa: PLC0415

  path = REPO / 'experiments' / f'{EXPERIMENTS[args.model]}.py'
  spec = importlib.util.spec_from_file_location(f'_ttq_{EXPERIMENTS[args.model]}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.seed = args.seed
  c.data.data_dir = default_data_dir(args.data_dir)
  c.data.split = args.train_split
  c.train.batch_size = args.batch_size
  c.train.n_critic = 1
  c.train.steps = args.max_steps
  if args.tiny:
    for key, value in TINY_MODEL.items():
      c.model[key] = value
  c.eval_every = args.eval_every
  c.eval_num_samples = args.eval_samples
  c.eval.split = args.eval_split
  c.eval.metrics = 'fid'
  config = resolve_config(c)
  t = config.train
  expected = ('non_saturating', 2e-4, 2e-4, 0.5, 0.999, 0.999)
  if (t.loss, t.g_lr, t.d_lr, t.b1, t.b2, t.ema_decay) != expected:
    raise ValueError(f'{path.name} no longer trains with the benchmark\'s settings {expected}.')
  return config


def make_jax_config(args: argparse.Namespace):
  """--jax-config's config with this benchmark's seed, data, batch, steps and evaluation.

  Raises:
    gan_jax.config_files.UsageError: an unreadable config file or unknown variant, or a
      `--jax-set` field the config does not have (or a value of the wrong type).
  """
  from gan_jax.config_files import UsageError, load_config_file  # noqa: PLC0415
  from gan_jax.training.train import resolve_config  # noqa: PLC0415

  c = load_config_file(args.jax_config)
  for key, value in getattr(args, 'jax_overrides', {}).items():
    *blocks, name = key.split('.')
    node = c
    try:
      for block in blocks:
        node = node[block]
      known = name in node
    except (KeyError, AttributeError, TypeError):
      known = False
    if not known:
      fields = [
        k for k, v in c.items() for k in ([f'{k}.{f}' for f in v] if hasattr(v, 'keys') else [k])
      ]
      close = difflib.get_close_matches(key, fields, n=1)
      hint = f'; did you mean {close[0]}?' if close else '.'
      raise UsageError(f'--jax-set {key}: {args.jax_config} has no such field{hint}')
    try:
      node[name] = value
    except (TypeError, ValueError) as e:
      raise UsageError(f'--jax-set {key}={value!r}: {e}') from None
  c.seed = args.seed
  c.data.data_dir = default_data_dir(args.data_dir)
  c.data.split = args.train_split
  c.train.batch_size = args.batch_size
  c.train.steps = args.max_steps
  if args.tiny:
    for key in ('g_width', 'd_width'):
      c.model[key] = TINY_MODEL[key]
  c.eval_every = args.eval_every
  c.eval_num_samples = args.eval_samples
  c.eval.split = args.eval_split
  c.eval.metrics = 'fid'
  return resolve_config(c)


def first_at_or_below(results: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
  """For each FID of `spec` ('20,torch': 'torch' is PyTorch's last FID), each framework's
  first evaluation at or below it: [{'fid': x, 'name': ..., 'by': {label: {step,
  train_wall_s} or None}}]."""
  by = {r['framework']: r for r in results}
  out = []
  for item in (x.strip() for x in spec.split(',') if x.strip()):
    if item == 'torch':
      fid = by.get('torch', {}).get('final_fid_lenet')
      if fid is None:
        continue
      name = f"PyTorch's FID at step {by['torch']['steps_run']}"
    else:
      fid, name = float(item), f'FID {item}'
    reached = {}
    for r in results:
      hit = next(
        (e for e in r['evals'] if e['fid_lenet'] is not None and e['fid_lenet'] <= fid), None
      )
      reached[r['label']] = hit and {'step': hit['step'], 'train_wall_s': hit['train_wall_s']}
    out.append({'fid': fid, 'name': name, 'by': reached})
  return out


def make_evaluator(config):
  """gan_jax's FID (LeNet) evaluator against the reference statistics of eval.split."""
  from gan_jax.metrics.evaluate import Evaluator  # noqa: PLC0415

  evaluator = Evaluator.from_config(config, metrics='fid')
  if evaluator.net is None or evaluator.net.label.lower() != 'lenet':
    raise ValueError(f'expected the LeNet feature network, got {evaluator.net}.')
  return evaluator


def fid_of_array(evaluator, images: np.ndarray) -> float:
  """FID (LeNet) of float32 NHWC images in [-1, 1] with gan_jax's evaluator."""
  step = evaluator.batch_size
  batches = (images[lo : lo + step] for lo in range(0, len(images), step))
  return float(evaluator.evaluate_batches(batches)['fid_lenet'])


class Tracker:
  """Per-framework bookkeeping: training time, evaluations, the stop rule."""

  def __init__(self, name: str, args: argparse.Namespace):
    self.name, self.args = name, args
    self.step, self.train_s, self.eval_s = 0, 0.0, 0.0
    self.evals: list[dict[str, Any]] = []
    self.reached: dict[str, Any] | None = None
    self.stopped = ''
    self.loadavg = [loadavg()]

  def next_stop(self) -> int:
    """The step of the next evaluation."""
    return min((self.step // self.args.eval_every + 1) * self.args.eval_every, self.args.max_steps)

  def record(self, fid: float | None, eval_s: float, log) -> bool:
    """Records an evaluation at self.step; True when the framework should stop."""
    self.eval_s += eval_s
    entry = {
      'step': self.step,
      'fid_lenet': fid,
      'train_wall_s': self.train_s,
      'eval_s': eval_s,
    }
    self.evals.append(entry)
    shown = 'non-finite images' if fid is None else f'{fid:.2f}'
    log(
      f'{LABELS[self.name]} step {self.step}: FID (LeNet) {shown} '
      f'[train {self.train_s:.1f} s, eval {eval_s:.1f} s]'
    )
    if fid is None:
      self.stopped = 'diverged (non-finite images)'
      return True
    if fid <= self.args.target_fid:
      self.reached, self.stopped = entry, 'target reached'
      return True
    if self.step >= self.args.max_steps:
      self.stopped = 'max steps'
      return True
    return False

  def summary(self, batch_size: int, **extra: Any) -> dict[str, Any]:
    self.loadavg.append(loadavg())
    last = self.evals[-1] if self.evals else {}
    return {
      'framework': self.name,
      'label': LABELS[self.name],
      'reached_target': self.reached is not None,
      'steps_to_target': self.reached['step'] if self.reached else None,
      'train_wall_s_to_target': self.reached['train_wall_s'] if self.reached else None,
      'stopped': self.stopped,
      'steps_run': self.step,
      'train_wall_s': self.train_s,
      'images_per_s': batch_size * self.step / self.train_s if self.train_s else None,
      'eval_s': self.eval_s,
      'num_evals': len(self.evals),
      'final_fid_lenet': last.get('fid_lenet'),
      'evals': self.evals,
      'loadavg_1min_start_end': self.loadavg,
      **extra,
    }


def run_jax(config, evaluator, args: argparse.Namespace, log) -> dict[str, Any]:
  """gan_jax: its jitted step and input pipeline, timed between evaluations."""
  import jax  # noqa: PLC0415

  from gan_jax.data import pipeline as data_lib  # noqa: PLC0415
  from gan_jax.core.sharding import check_batch_size, make_mesh, replicate  # noqa: PLC0415
  from gan_jax.core.state import create_state  # noqa: PLC0415
  from gan_jax.training.train import host_batches  # noqa: PLC0415
  from gan_jax.core.train_step import jit_train_step, make_train_step_from_config  # noqa: PLC0415

  t0 = time.perf_counter()
  mesh = make_mesh()
  b = config.train.batch_size
  check_batch_size(b, mesh)
  gan, state = create_state(config)
  state = replicate(state, mesh)
  num_params = {
    'g': sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.g_params)),
    'd': sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.d_params)),
  }
  step_fn = make_train_step_from_config(gan, config, mesh=mesh)
  sharding = data_lib.batch_sharding(mesh)
  batch_spec = {
    'image': jax.ShapeDtypeStruct((1, b, *gan.image_shape), np.float32, sharding=sharding),
    'label': jax.ShapeDtypeStruct((1, b), np.int32, sharding=sharding),
  }
  t1 = time.perf_counter()
  compiled = jit_train_step(step_fn, mesh).lower(state, batch_spec).compile()
  compile_s = time.perf_counter() - t1
  setup_s = time.perf_counter() - t0
  log(f'gan_jax: set up in {setup_s:.1f} s (compile {compile_s:.1f} s)')

  tracker = Tracker('jax', args)
  rows = data_lib.process_rows(sharding, b)
  batches = data_lib.device_prefetch(host_batches(config, 0, rows), sharding)
  first_batch_s, metrics = None, None
  try:
    while True:
      stop = tracker.next_stop()
      t0 = time.perf_counter()
      in_flight = None
      while tracker.step < stop:
        if first_batch_s is None:
          batch = next(batches)
          first_batch_s = time.perf_counter() - t0
        else:
          batch = next(batches)
        state, metrics = compiled(state, batch)
        if in_flight is not None:  # At most one step in flight, as gan_jax.training.train.
          jax.block_until_ready(in_flight)
        in_flight = metrics
        tracker.step += 1
      jax.block_until_ready((state, metrics))
      tracker.train_s += time.perf_counter() - t0
      t0 = time.perf_counter()
      try:
        fid = float(evaluator.evaluate_state(gan, state, use_ema=True)['fid_lenet'])
      except ValueError as err:  # NaN images: the run diverged.
        log(f'gan_jax: evaluation failed at step {tracker.step}: {err}')
        fid = None
      if tracker.record(fid, time.perf_counter() - t0, log):
        break
  finally:
    batches.close()
  return tracker.summary(
    b,
    setup_s=setup_s,
    compile_s=compile_s,
    first_batch_s=first_batch_s,
    num_params_g_d=num_params,
    final_metrics={k: float(v) for k, v in jax.device_get(metrics).items()},
  )


def load_split(config) -> np.ndarray:
  """The training split as float32 NHWC in [-1, 1], in stored order (gan_jax.data.pipeline)."""
  from gan_jax.data import pipeline as data_lib  # noqa: PLC0415

  ds = data_lib.build_eval_dataset(
    config.data.name,
    config.data.split,
    data_dir=config.data.data_dir,
    image_size=config.data.image_size,
    channels=config.data.channels,
    batch_size=1000,
  )
  return np.concatenate([x['image'] for x in ds.as_numpy_iterator()]).astype(np.float32)


def run_torch(config, evaluator, args: argparse.Namespace, tmp: str, log) -> dict[str, Any]:
  """The PyTorch reference in a worker; evaluated here with the same evaluator."""
  from gan_jax.metrics.evaluate import latents  # noqa: PLC0415
  from throughput import torch_spec  # noqa: PLC0415

  t0 = time.perf_counter()
  real = load_split(config)
  data_path = os.path.join(tmp, 'train.npy')
  np.save(data_path, real)
  data_prep_s = time.perf_counter() - t0
  z = np.asarray(latents(evaluator.seed, 0, evaluator.num_samples, config.model.latent_dim))
  latents_path = os.path.join(tmp, 'latents.npy')
  np.save(latents_path, z.astype(np.float32))
  t1 = time.perf_counter()
  worker = TorchClient()
  try:
    info = worker.call(
      cmd='setup',
      spec=torch_spec(config),
      data=data_path,
      latents=latents_path,
      batch_size=config.train.batch_size,
      seed=args.seed,
      threads=args.torch_threads,
      adam=args.torch_adam,
    )
    if info['jax_imported']:
      raise RuntimeError('the PyTorch worker imported JAX.')
    setup_s = data_prep_s + time.perf_counter() - t1
    log(f'PyTorch: set up in {setup_s:.1f} s (data {data_prep_s:.1f} s), {info["threads"]} thr')
    fid_check = None
    if args.fid_check:
      n = min(evaluator.num_samples, len(real))
      if n == evaluator.num_samples:
        path = worker.call(cmd='echo_real', path=os.path.join(tmp, 'real.npy'), n=n)['path']
        via_torch = np.load(path)
        fid_check = {
          'num_images': n,
          'fid_lenet_torch_path': fid_of_array(evaluator, via_torch),
          'fid_lenet_gan_jax_path': fid_of_array(evaluator, real[:n]),
          'images_identical': bool(np.array_equal(via_torch, real[:n])),
        }
        os.remove(path)
        log(f'FID (LeNet) check on {n} real images: {fid_check}')
      else:
        log(f'FID check skipped: the split has {len(real)} images < {evaluator.num_samples}.')
    del real
    tracker = Tracker('torch', args)
    metrics: dict[str, float] = {}
    while True:
      stop = tracker.next_stop()
      reply = worker.call(cmd='train', n=stop - tracker.step)
      tracker.step = stop
      tracker.train_s += reply['train_s']
      metrics = reply['metrics']
      t0 = time.perf_counter()
      path = worker.call(cmd='generate', path=os.path.join(tmp, 'fake.npy'), batch_size=EVAL_BATCH)
      images = np.load(path['path'])
      os.remove(path['path'])
      try:
        fid = fid_of_array(evaluator, images)
      except ValueError as err:  # NaN images: the run diverged.
        log(f'PyTorch: evaluation failed at step {tracker.step}: {err}')
        fid = None
      if tracker.record(fid, time.perf_counter() - t0, log):
        break
  finally:
    final = worker.close()
  return tracker.summary(
    config.train.batch_size,
    setup_s=setup_s,
    data_prep_s=data_prep_s,
    worker_setup_s=info['setup_s'],
    num_params_g_d=info['num_params'],
    threads=info['threads'],
    interop_threads=info['interop_threads'],
    adam=args.torch_adam,
    fid_check=fid_check,
    final_metrics=metrics,
    worker_peak_rss_mib=final.get('peak_rss_mib'),
  )


def _fmt(x: float | None, spec: str, none: str = 'n/a') -> str:
  return none if x is None else format(x, spec)


def _fid(x: float | None) -> str:
  if x is None or not math.isfinite(x):
    return 'NaN'
  return f'{x:.1f}' if x >= 10 else f'{x:.3g}'


def table(results: list[dict[str, Any]]) -> str:
  head = [
    'framework',
    'steps to target',
    'train wall s to target',
    'img/s training',
    'setup s',
    'eval s (evals)',
    'final FID (LeNet)',
    'FID trajectory (step: FID)',
  ]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in results:
    row = [
      r['label'],
      str(r['steps_to_target']) if r['reached_target'] else f'not reached ({r["stopped"]})',
      _fmt(r['train_wall_s_to_target'], ',.1f', '-'),
      _fmt(r['images_per_s'], ',.0f'),
      f'{r["setup_s"]:.1f}',
      f'{r["eval_s"]:.1f} ({r["num_evals"]})',
      _fid(r['final_fid_lenet']),
      ', '.join(f'{e["step"]}: {_fid(e["fid_lenet"])}' for e in r['evals']),
    ]
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
  args = parse_args(argv)
  if args.torch_worker:
    serve_torch()
    return None
  try:
    import gan_jax  # noqa: F401, PLC0415
  except ImportError:  # Run from a checkout without `pip install -e .`.
    sys.path.insert(0, str(REPO))
  import jax  # noqa: PLC0415

  def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

  if args.torch_skipped:
    log(f'PyTorch not run: {args.torch_skipped}.')
  config = make_config(args)
  t0 = time.perf_counter()
  evaluator = make_evaluator(config)
  log(f'evaluator ready in {time.perf_counter() - t0:.1f} s ({evaluator.reference.key})')
  jax_config, jax_evaluator = config, evaluator
  if args.jax_config:
    jax_config = make_jax_config(args)
    jax_evaluator = make_evaluator(jax_config)
  results = []
  with tempfile.TemporaryDirectory(prefix='time_to_quality_') as tmp:
    for framework in args.frameworks:
      if framework == 'jax':
        results.append(run_jax(jax_config, jax_evaluator, args, log))
      else:
        results.append(run_torch(config, evaluator, args, tmp, log))
  by = {r['framework']: r for r in results}
  ratio = None
  if all(by.get(f, {}).get('reached_target') for f in FRAMEWORKS):
    ratio = by['torch']['train_wall_s_to_target'] / by['jax']['train_wall_s_to_target']
  devices = jax.devices()
  plat = devices[0].platform
  argv_list = sys.argv[1:] if argv is None else list(argv)
  m = config.model
  report = {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'command': shlex.join(['python', 'benchmarks/time_to_quality.py', *argv_list]),
    'jax_version': jax.__version__,
    'jaxlib_version': package_version('jaxlib'),
    'torch_version': package_version('torch') if 'torch' in args.frameworks else None,
    'torch_skipped': args.torch_skipped,
    'torch_threads': args.torch_threads if 'torch' in args.frameworks else None,
    'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
    'platform': plat,
    'device_kind': devices[0].device_kind,
    'device_count': len(devices),
    'host_cpu_count': os.cpu_count(),
    'python': platform.python_version(),
    'model': args.model,
    'experiment': f'experiments/{EXPERIMENTS[args.model]}.py',
    'model_config': {
      'name': m.name,
      'latent_dim': m.latent_dim,
      'g_width': m.g_width,
      'd_width': m.d_width,
      'hidden': list(m.hidden),
    },
    'loss': config.train.loss,
    'adam': {'lr': config.train.g_lr, 'b1': config.train.b1, 'b2': config.train.b2},
    'ema_decay': config.train.ema_decay,
    'n_critic': 1,
    'batch_size': args.batch_size,
    'dataset': config.data.name,
    'train_split': args.train_split,
    'eval_split': args.eval_split,
    'reference': evaluator.reference.key,
    'metric': 'FID (LeNet)',
    'target_fid_lenet': args.target_fid,
    'max_steps': args.max_steps,
    'eval_every': args.eval_every,
    'eval_samples': args.eval_samples,
    'seed': args.seed,
    'tiny': args.tiny,
    'frameworks': args.frameworks,
    'time_to_target_ratio_torch_to_jax': ratio,
    'jax_config': args.jax_config,
    'jax_recipe': None
    if not args.jax_config
    else {
      'model': jax_config.model.name,
      'num_classes': jax_config.model.get('num_classes', 0),
      'loss': jax_config.train.loss,
      'r1_weight': jax_config.train.get('r1_weight', 0.0),
      'r2_weight': jax_config.train.get('r2_weight', 0.0),
      'ema_half_life_images': jax_config.train.get('ema_half_life_images', 0.0),
      'ema_batch_stats': jax_config.eval.get('ema_batch_stats', None),
      'g_lr': jax_config.train.g_lr,
      'd_lr': jax_config.train.d_lr,
      'penalty_interval': jax_config.train.get('penalty_interval', 1),
      'jax_set': args.jax_overrides,
    },
    'first_at_or_below': first_at_or_below(results, args.report_fids),
    'argv': argv_list,
    'results': results,
  }
  print(
    f'\nTime to FID (LeNet) <= {args.target_fid:g} on {config.data.name} {args.train_split}: '
    f'{args.model}, batch {args.batch_size}, eval every {args.eval_every} steps on '
    f'{args.eval_samples} samples vs {args.eval_split}; JAX {jax.__version__} on '
    f'{len(devices)} x {devices[0].device_kind}'
    + (
      f', PyTorch {report["torch_version"]} ({args.torch_threads} threads)'
      if 'torch' in args.frameworks
      else ''
    )
    + '\n'
  )
  print(table(results))
  if ratio is not None:
    print(f'\nPyTorch / gan_jax training wall time to target: {ratio:.2f}')
  for row in report['first_at_or_below']:
    print(f"\nFirst evaluation at or below {row['name']} ({row['fid']:.1f}):")
    for label, hit in row['by'].items():
      print(
        f'  {label}: '
        + (
          'not reached'
          if hit is None
          else f"step {hit['step']}, {hit['train_wall_s']:.1f} s of training"
        )
      )
  path = (
    Path(args.json)
    if args.json
    else REPO / 'benchmarks' / 'results' / f'time_to_quality_{plat}.json'
  )
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=2) + '\n')
  print(f'\nwrote {path}')
  return report


if __name__ == '__main__':
  from gan_jax.config_files import UsageError  # noqa: E402
  from gan_jax.errors import ConfigError  # noqa: E402

  try:
    main()
  except (UsageError, ConfigError) as err:  # a bad --jax-config / --jax-set: one line, exit 2
    print(f'time_to_quality.py: error: {err}', file=sys.stderr)
    sys.exit(2)
