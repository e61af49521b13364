"""benchmarks/memory_analysis.py: XLA's compile-time memory analysis of the train step."""

import json
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / 'benchmarks' / 'memory_analysis.py'


def _run(*args):
  return subprocess.run(
    [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
  )


def test_tiny_case_reports_every_option_and_writes_json(tmp_path):
  out = tmp_path / 'mem.json'
  proc = _run(
    '--case',
    'sngan32',
    '--tiny',
    '--batch-sizes',
    '8',
    '--options',
    'baseline,d_grad',
    '--json',
    str(out),
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads(out.read_text())
  assert report['case'] == 'sngan32' and report['tiny'] and report['batch_sizes'] == [8]
  rows = {r['option']: r for r in report['results']}
  assert set(rows) == {'baseline', 'd_grad'}
  for row in rows.values():
    m = row['mib']
    assert m['temp'] > 0 and m['argument'] > 0
    assert abs(m['total'] - (m['argument'] + m['output'] + m['temp'] - m['alias'])) < 1e-9
    stages = (row['trace_s'], row['lower_s'], row['xla_compile_s'])
    assert min(stages) > 0 and abs(sum(stages) - row['compile_s']) < 1e-6
  # The whole step donates its state (aliased), D's gradient alone does not, and it holds
  # less than the whole step (which also runs G's gradient and both optimizers).
  assert rows['baseline']['mib']['alias'] > 0 and rows['d_grad']['mib']['alias'] == 0
  assert rows['d_grad']['mib']['temp'] < rows['baseline']['mib']['temp']
  assert '| 8 | baseline |' in proc.stdout and '| 8 | d_grad |' in proc.stdout


def test_bad_case_option_or_model_is_one_line_and_exit_2():
  for args, says in (
    (('--options', 'nope'), "unknown ['nope']"),
    (('--case', 'nope'), "--case='nope' is not a case"),
    (('--case', 'dcgan32', '--tiny', '--batch-sizes', '8', '--options', 'remat'), 'model.remat'),
  ):
    proc = _run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
