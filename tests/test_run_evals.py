"""scripts/run_evals.py: each run's evaluations by step from metrics.jsonl, and their mean and
sample standard deviation over runs (numpy is the reference); a bad folder exits 2 in one line."""

import json

import numpy as np

from conftest import load_script


def _script():
  return load_script('scripts/run_evals.py')


def _run(folder, lines):
  folder.mkdir()
  (folder / 'metrics.jsonl').write_text('\n'.join(lines) + '\n')
  return str(folder)


def test_curves_and_their_mean_and_std_over_runs(tmp_path, capsys):
  a = _run(tmp_path / 'a', [
    json.dumps({'step': 1, 'd_loss': 0.5}),
    json.dumps({'step': 2, 'eval/fid_lenet': 40.0, 'eval/kid_lenet': 1.0}),
    json.dumps({'step': 4, 'eval/fid_lenet': 12.0}),
    '{"step": 5, "eval/fid_lenet": 9',  # cut short by a crash: skipped
  ])  # fmt: skip
  b = _run(tmp_path / 'b', [
    json.dumps({'step': 2, 'eval/fid_lenet': 44.0, 'eval/kid_lenet': 3.0}),
    json.dumps({'step': 4, 'eval/fid_lenet': 15.0}),
  ])  # fmt: skip
  out = tmp_path / 'out.json'
  assert _script().main(['--out', str(out), a, b]) == 0
  report = json.loads(out.read_text())
  assert report['runs'][a] == {'2': {'fid_lenet': 40.0, 'kid_lenet': 1.0}, '4': {'fid_lenet': 12.0}}
  mean = report['mean_over_runs']
  assert sorted(mean) == ['2', '4']
  for step, values in (('2', [40.0, 44.0]), ('4', [12.0, 15.0])):
    assert mean[step]['fid_lenet']['n'] == 2
    assert np.isclose(mean[step]['fid_lenet']['mean'], np.mean(values))
    assert np.isclose(mean[step]['fid_lenet']['std'], np.std(values, ddof=1))
  assert np.isclose(mean['2']['kid_lenet']['std'], np.std([1.0, 3.0], ddof=1))
  assert 'scripts/run_evals.py' in report['command']


def test_a_folder_without_evaluations_exits_2_in_one_line(tmp_path, capsys):
  empty = _run(tmp_path / 'empty', [json.dumps({'step': 1, 'd_loss': 0.5})])
  out = tmp_path / 'out.json'
  for folder in (empty, str(tmp_path)):
    assert _script().main(['--out', str(out), folder]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('run_evals: error: ') and '\n' not in err
  assert not out.exists()
