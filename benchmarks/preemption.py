"""Time from SIGTERM (or SIGINT) to the exit of `gan-jax train`, with the checkpoint it saved.

Starts a real run, waits until it has trained for `--after` seconds (counted from its first
logged step, so compilation and data loading are excluded), sends the signal, and reports
the seconds until the process exited, its exit status and the step of the checkpoint saved.
Repeats `--repeats` times in fresh workdirs:

    TFDS_DATA_DIR=../shared/tfds python benchmarks/preemption.py \
        --config experiments/mnist_dcgan.py --after 20 --repeats 3

Prints one line per run and a JSON summary (seconds: min, median, max).
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


def one_run(config: str, after: float, signame: str, workdir: str) -> dict:
  gan_jax = os.path.join(os.path.dirname(sys.executable), 'gan-jax')
  command = [gan_jax, 'train', '--config', config, '--workdir', workdir]
  command += ['--config.progress_bar=false', '--config.log_every=1', '--config.eval_every=0']
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
  args = parser.parse_args()
  runs = []
  for i in range(args.repeats):
    workdir = tempfile.mkdtemp(prefix='gan_jax_preempt_')
    try:
      run = one_run(args.config, args.after, args.signal, workdir)
    finally:
      shutil.rmtree(workdir, ignore_errors=True)
    runs.append(run)
    print(f'run {i + 1}: {json.dumps(run)}', flush=True)
  seconds = [r['seconds'] for r in runs]
  print(
    json.dumps(
      {
        'config': args.config,
        'signal': args.signal,
        'runs': len(runs),
        'all_exit_0': all(r['exit_status'] == 0 for r in runs),
        'all_checkpointed_the_stop_step': all(
          r['checkpoint_steps'][-1:] == [r['stopped_at_step']] for r in runs
        ),
        'seconds': {
          'min': min(seconds),
          'median': statistics.median(seconds),
          'max': max(seconds),
        },
      }
    )
  )


if __name__ == '__main__':
  main()
