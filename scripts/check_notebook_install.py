"""Checks the notebooks' install cell on a simulated Colab runtime (needs PyPI; ~10-15 minutes).

    TFDS_DATA_DIR=../shared/tfds nice -n 10 python scripts/check_notebook_install.py \\
        --out benchmarks/results/notebook_install_cpu.json

1. Makes a fresh venv in a temporary folder and pre-installs what a Colab runtime brings:
   `tensorflow` (the full package, not `tensorflow-cpu`; `--tensorflow`, default 2.20.0) and
   the jax/jaxlib versions of the Python running this script.
2. Runs the install cell of notebooks/quickstart.ipynb (the cell that sets `GAN_JAX_SOURCE`;
   tests/test_notebook.py checks the three notebooks share it) with that venv's Python, from
   notebooks/ of this checkout and `GAN_JAX_SOURCE` unset: its default, the checkout it runs
   from. Then runs it again, which must install nothing (gan_jax is importable).
3. Checks with `pip list` that tensorflow, jax and jaxlib kept their versions and that no
   `tensorflow-cpu` came in, and records `pip check`.
4. Trains `experiments/mnist_dcgan.py:tiny` with the venv's `gan-jax` on `TFDS_DATA_DIR`.

Writes a JSON summary (versions before/after, each check, wall times) to --out and exits 1
if a check failed. Not part of the pytest suite: it downloads a few hundred MB.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / 'notebooks' / 'quickstart.ipynb'
WATCHED = ('tensorflow', 'tensorflow-cpu', 'jax', 'jaxlib', 'gan-jax')


def install_cell(notebook: Path) -> str:
  """The source of the notebook's install cell (the code cell that sets GAN_JAX_SOURCE)."""
  cells = json.loads(notebook.read_text())['cells']
  found = [
    ''.join(c['source']) for c in cells
    if c['cell_type'] == 'code' and 'GAN_JAX_SOURCE =' in ''.join(c['source'])
  ]  # fmt: skip
  if len(found) != 1:
    raise SystemExit(
      f'{notebook}: expected one install cell setting GAN_JAX_SOURCE, found {len(found)}'
    )
  return found[0]


def run(cmd: list[str], log: list[str], **kwargs) -> subprocess.CompletedProcess:
  """Runs cmd, appends its command line and output to log, returns the result."""
  start = time.time()
  p = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
  log.append(
    f'$ {" ".join(cmd)}  # rc={p.returncode} {time.time() - start:.0f}s\n{p.stdout}{p.stderr}'
  )
  return p


def versions(python: str, log: list[str]) -> dict[str, str]:
  """{normalized name: version} of the watched distributions in python's environment."""
  p = run([python, '-m', 'pip', 'list', '--format=json'], log)
  rows = json.loads(p.stdout)
  norm = {r['name'].lower().replace('_', '-'): r['version'] for r in rows}
  return {n: norm[n] for n in WATCHED if n in norm}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=str(REPO / 'benchmarks/results/notebook_install_cpu.json'))
  parser.add_argument('--tensorflow', default='2.20.0', help='tensorflow version pre-installed')
  parser.add_argument('--keep', action='store_true', help='keep the temporary venv')
  args = parser.parse_args(argv)
  tfds_dir = os.environ.get('TFDS_DATA_DIR')
  if not tfds_dir or not Path(tfds_dir, 'mnist').is_dir():
    raise SystemExit('set TFDS_DATA_DIR to a TFDS data dir holding mnist (e.g. ../shared/tfds)')
  jax_version = md.version('jax')
  jaxlib_version = md.version('jaxlib')
  cell = install_cell(NOTEBOOK)

  tmp = Path(tempfile.mkdtemp(prefix='gan_jax_colab_'))
  venv, log, wall, checks = tmp / 'venv', [], {}, {}
  python = str(venv / 'bin' / 'python')
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'GAN_JAX_SOURCE')}
  env.pop('VIRTUAL_ENV', None)
  t0 = time.time()
  run([sys.executable, '-m', 'venv', str(venv)], log, check=True)
  run([python, '-m', 'pip', 'install', '-q', '--upgrade', 'pip'], log, check=True, env=env)
  preinstall = [
    f'tensorflow=={args.tensorflow}',
    f'jax=={jax_version}',
    f'jaxlib=={jaxlib_version}',
  ]
  p = run([python, '-m', 'pip', 'install', '-q', *preinstall], log, env=env)
  wall['preinstall_s'] = round(time.time() - t0, 1)
  checks['preinstall'] = p.returncode == 0
  before = versions(python, log)

  cell_file = tmp / 'install_cell.py'
  cell_file.write_text(cell)
  t1 = time.time()
  cell_run = run([python, str(cell_file)], log, cwd=REPO / 'notebooks', env=env)
  wall['install_cell_s'] = round(time.time() - t1, 1)
  checks['install_cell'] = cell_run.returncode == 0 and 'installing' in cell_run.stdout
  after = versions(python, log)
  p = run([python, str(cell_file)], log, cwd=REPO / 'notebooks', env=env)
  checks['second_run_installs_nothing'] = p.returncode == 0 and 'installing' not in p.stdout
  for name in ('tensorflow', 'jax', 'jaxlib'):
    checks[f'{name}_unchanged'] = name in before and before.get(name) == after.get(name)
  checks['no_tensorflow_cpu'] = 'tensorflow-cpu' not in after
  pip_check = run([python, '-m', 'pip', 'check'], log, env=env)
  # gan_jax's metadata names tensorflow-cpu, which the cell skips on purpose; nothing else.
  broken = [l for l in pip_check.stdout.splitlines() if 'requires' in l]
  checks['pip_check_only_skipped_tensorflow_cpu'] = all(
    l.lower().startswith(('gan-jax', 'gan_jax')) and 'tensorflow-cpu' in l for l in broken
  )
  cell_output = cell_run.stdout + cell_run.stderr
  checks['no_conflict_warning'] = 'ERROR: pip' not in cell_output and 'warning:' not in cell_output

  t2 = time.time()
  workdir = tmp / 'run'
  config = str(REPO / 'experiments' / 'mnist_dcgan.py') + ':tiny'
  train = [str(venv / 'bin' / 'gan-jax'), 'train', '--config', config,
           '--workdir', str(workdir)]  # fmt: skip
  p = run(train, log, cwd=tmp, env={**env, 'TFDS_DATA_DIR': str(Path(tfds_dir).resolve())})
  wall['tiny_train_s'] = round(time.time() - t2, 1)
  summary = workdir / 'summary.json'
  checks['tiny_train'] = p.returncode == 0 and summary.is_file()
  wall['total_s'] = round(time.time() - t0, 1)

  result = {
    'what': 'notebook install cell on a fresh venv with tensorflow (full) and jax pre-installed',
    'command': 'TFDS_DATA_DIR=../shared/tfds nice -n 10 python scripts/check_notebook_install.py',
    'passed': all(checks.values()),
    'checks': checks,
    'preinstalled': preinstall,
    'versions_before': before,
    'versions_after': after,
    'pip_check': (pip_check.stdout + pip_check.stderr).strip().splitlines()[-5:],
    'tiny_train_summary': json.loads(summary.read_text()) if summary.is_file() else None,
    'wall_s': wall,
    'python': platform.python_version(),
    'platform': platform.platform(),
    'date': time.strftime('%Y-%m-%d'),
  }
  (tmp / 'log.txt').write_text('\n'.join(log))
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(result, indent=2) + '\n')
  print(
    json.dumps(
      {k: result[k] for k in ('passed', 'checks', 'versions_before', 'versions_after', 'wall_s')},
      indent=2,
    )
  )
  print(f'full log: {tmp / "log.txt"}')
  if not args.keep:
    subprocess.run(['rm', '-rf', str(venv)], check=False)
  return 0 if result['passed'] else 1


if __name__ == '__main__':
  sys.exit(main())
