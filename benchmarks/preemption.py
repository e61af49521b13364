"""Time from SIGTERM (or SIGINT) to the exit of `gan-jax train`, with the checkpoint it saved.

Starts a real run, waits until it has trained for `--after` seconds (counted from its first
logged step, so compilation and data loading are excluded), sends the signal, and reports
the seconds until the process exited, its exit status and the step of the checkpoint saved.
Repeats `--repeats` times in fresh workdirs:

    TFDS_DATA_DIR=../shared/tfds python benchmarks/preemption.py \
        --config experiments/mnist_dcgan.py --after 20 --repeats 3

Config overrides after the options go to every run, e.g. a tiny run long enough to be
stopped: `--config experiments/mnist_dcgan.py:tiny --config.train.steps=100000`.
Prints one line per run and a JSON summary (seconds: min, median, max); `--out FILE` also
writes that summary, with every run, to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def one_run(
  config: str, after: float, signame: str, workdir: str, overrides: list[str] = ()
) -> dict:
  # `python -m gan_jax.cli.main` rather than the `gan-jax` script: the same code, and the
  # gan_jax on PYTHONPATH (e.g. a worktree) is the one measured.
  command = [sys.executable, '-m', 'gan_jax.cli.main', 'train', '--config', config]
  command += ['--workdir', workdir, '--config.progress_bar=false', '--config.log_every=1']
  command += ['--config.eval_every=0', *overrides]
  proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  while not (os.path.exists(metrics) and os.path.getsize(metrics)):
    if proc.poll() is not None:
      raise SystemExit(f'the run ended before training: {proc.stderr.read()[-2000:]}')
    time.sleep(0.05)
  time.sleep(after)
  sent = time.perf_counter()
  proc.send_signal(getattr(signal, signame))
  out, err = proc.communicate(timeout=600)
  seconds = time.perf_counter() - sent
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit())
  return {
    'seconds': seconds,
    'exit_status': proc.returncode,
    'stopped_at_step': summary['end_step'],
    'checkpoint_steps': steps,
    'signal_recorded': summary['stopped_by_signal'],
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='experiments/mnist_dcgan.py')
  parser.add_argument('--after', type=float, default=20.0, help='seconds of training first')
  parser.add_argument('--signal', default='SIGTERM', choices=('SIGTERM', 'SIGINT'))
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', help='also write the JSON summary to this file')
  args, overrides = parser.parse_known_args()
  bad = [o for o in overrides if not o.startswith('--config.')]
  if bad:
    parser.error(f'unknown arguments {bad}: only --config.<field>=<value> overrides follow')
  runs = []
  for i in range(args.repeats):
    workdir = tempfile.mkdtemp(prefix='gan_jax_preempt_')
    try:
      run = one_run(args.config, args.after, args.signal, workdir, overrides)
    finally:
      shutil.rmtree(workdir, ignore_errors=True)
    runs.append(run)
    print(f'run {i + 1}: {json.dumps(run)}', flush=True)
  seconds = [r['seconds'] for r in runs]
  summary = {
    'command': ' '.join(['python', 'benchmarks/preemption.py', *sys.argv[1:]]),
    'config': args.config,
    'overrides': overrides,
    'after_seconds': args.after,
    'signal': args.signal,
    'runs': len(runs),
    'all_exit_0': all(r['exit_status'] == 0 for r in runs),
    'all_checkpointed_the_stop_step': all(
      r['checkpoint_steps'][-1:] == [r['stopped_at_step']] for r in runs
    ),
    'seconds': {'min': min(seconds), 'median': statistics.median(seconds), 'max': max(seconds)},
  }
  print(json.dumps(summary))
  if args.out:
    with open(args.out, 'w', encoding='utf-8') as f:
      json.dump({**summary, 'each_run': runs}, f, indent=2)
      f.write('\n')


if __name__ == '__main__':
  main()
