"""The opt-in compile log of tests/conftest.py (GAN_JAX_TEST_COMPILE_LOG) and
scripts/compile_seconds.py, which sums it per test module."""

import json
import os
import subprocess
import sys

from conftest import REPO, load_script

compile_seconds = load_script('scripts/compile_seconds.py')

TEST = 'tests/test_losses.py::test_rpgan_gradients_against_closed_form'


def test_a_logged_pytest_run_records_each_tests_compile_seconds(tmp_path, capsys):
  log = tmp_path / 'log'
  env = {**os.environ, 'GAN_JAX_TEST_COMPILE_LOG': str(log)}
  # A fresh compilation cache, so this test's programs are compiled, not loaded.
  env['JAX_COMPILATION_CACHE_DIR'] = str(tmp_path / 'xla')
  done = subprocess.run(
    [sys.executable, '-m', 'pytest', '-q', TEST],
    cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  (path,) = log.glob('*.jsonl')
  (line,) = [json.loads(text) for text in path.read_text().splitlines()]
  assert line['test'] == TEST
  assert 0 < line['compile_s'] < line['wall_s'] and line['lower_s'] > 0
  assert line.get('cache_hits', 0) == 0  # an empty cache: nothing loaded
  assert compile_seconds.main([str(log), '--json', str(tmp_path / 'totals.json')]) == 0
  totals = json.loads((tmp_path / 'totals.json').read_text())
  assert totals['modules']['tests/test_losses.py']['compile_s'] == line['compile_s']
  assert '| tests/test_losses.py |' in capsys.readouterr().out


def test_sums_per_module_and_refuses_an_empty_folder(tmp_path, capsys):
  lines = [
    {'test': 'tests/a.py::t1', 'wall_s': 2.0, 'compile_s': 1.5, 'cache_load_s': 0.5,
     'cache_hits': 2, 'trace_s': 0.25},
    {'test': 'tests/a.py::t2', 'wall_s': 1.0, 'compile_s': 0.5},
    {'test': 'tests/b.py::t1', 'wall_s': 4.0, 'compile_s': 0.25},
  ]  # fmt: skip
  (tmp_path / '1.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines[:2]))
  (tmp_path / '2.jsonl').write_text(json.dumps(lines[2]) + '\n')
  totals = compile_seconds.per_module(str(tmp_path))
  assert totals['tests/a.py'] == {'wall_s': 3.0, 'trace_s': 0.25, 'lower_s': 0.0,
                                  'compile_s': 2.0, 'cache_load_s': 0.5, 'cache_hits': 2}  # fmt: skip
  assert compile_seconds.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[2] == '| tests/a.py | 3.0 | 0.2 | 0.0 | 1.5 | 2 (0.5) |'  # compiled 2.0 - 0.5 loaded
  assert out[3].startswith('| tests/b.py | 4.0 |')
  assert compile_seconds.main([str(tmp_path / 'none')]) == 2
  assert 'holds no compile log' in capsys.readouterr().err
