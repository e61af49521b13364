"""scripts/combine_cyclegan_seeds.py: single-seed CycleGAN results combined, the summary checked
against numpy, and files of other arguments or a repeated seed refused in one line."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
  'combine_cyclegan_seeds',
  Path(__file__).resolve().parents[1] / 'scripts' / 'combine_cyclegan_seeds.py',
)
combine_seeds = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(combine_seeds)


def _part(tmp_path, seed, accuracy, steps=500):
  scores = {'accuracy': accuracy, 'fid': None}
  part = {
    'task': {'task': 'sneakers_boots'},
    'method': 'CycleGAN',
    'directions': {},
    'args': {'steps': steps, 'seeds': [seed], 'tiny': None if seed == 0 else False},
    'runs': [{'seed': seed, 'scores': {'a2b': scores, 'b2a': scores}, 'history': [1, 2]}],
    'wall_s': {'total': 10.0 + seed},
  }
  path = tmp_path / f'seed{seed}.json'
  path.write_text(json.dumps(part))
  return str(path)


def test_summary_is_numpys_mean_and_sample_std(tmp_path):
  files = [_part(tmp_path, s, a) for s, a in ((0, 0.8), (1, 0.7), (2, 0.95))]
  out = tmp_path / 'all.json'
  assert combine_seeds.main(['--out', str(out), *files]) == 0
  got = json.loads(out.read_text())
  assert got['seeds'] == [0, 1, 2] and got['wall_s_total_per_seed'] == {
    '0': 10.0,
    '1': 11.0,
    '2': 12.0,
  }
  acc = got['summary']['a2b']['accuracy']
  assert acc['mean'] == pytest.approx(np.mean([0.8, 0.7, 0.95]))
  assert acc['std'] == pytest.approx(np.std([0.8, 0.7, 0.95], ddof=1))
  assert got['summary']['b2a']['fid'] is None
  assert all('history' not in r for r in got['runs'])


def test_other_arguments_or_a_repeated_seed_are_refused(tmp_path, capsys):
  out = str(tmp_path / 'all.json')
  assert (
    combine_seeds.main(['--out', out, _part(tmp_path, 0, 0.8), _part(tmp_path, 1, 0.7, steps=600)])
    == 2
  )
  assert capsys.readouterr().err.count('\n') == 1
  again = _part(tmp_path, 1, 0.7)
  assert combine_seeds.main(['--out', out, again, again]) == 2
  assert 'appears twice' in capsys.readouterr().err
