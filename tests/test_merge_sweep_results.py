"""scripts/merge_sweep_results.py: one table from the results.csv files of sweeps that ran
different seeds of one ablation (`gan-jax sweep --seeds`)."""

import csv
import statistics

import pytest

from conftest import REPO, load_script

merge_script = load_script('scripts/merge_sweep_results.py')

TINY = (
  str(REPO / 'experiments' / 'ablations' / 'losses_fashion.py') + ':tiny'
)  # 4 cells x seeds 0, 1
COLUMNS = ['cell', 'loss', 'ema', 'seed', 'status', 'step', 'eval_step', 'fid_lenet', 'kid_lenet',
           'wall_time_s', 'start_step', 'error', 'workdir']  # fmt: skip
NS_OFF = 'loss=non_saturating,ema=off'
LS_ON = 'loss=least_squares,ema=on'


def _csv(path, rows):
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    for cell, seed, status, fid, kid in rows:
      loss, ema = (part.split('=')[1] for part in cell.split(','))
      done = status == 'done'
      writer.writerow({
        'cell': cell, 'loss': loss, 'ema': ema, 'seed': seed, 'status': status,
        'step': 2 if done else '', 'eval_step': 2 if done else '', 'fid_lenet': fid,
        'kid_lenet': kid, 'wall_time_s': 1.5 if done else '', 'start_step': 0 if done else '',
        'error': '', 'workdir': f'runs/x/{cell}/seed_{seed}',
      })  # fmt: skip
  return str(path)


def _merge(tmp_path, *files):
  return merge_script.main([TINY, *files, '--out', str(tmp_path / 'merged')])


def test_seeds_from_two_sweeps_make_one_table(tmp_path, capsys):
  # Seed 0 ran in one sweep (which lists seed 1 as not run), seed 1 in another.
  first = _csv(tmp_path / 'a.csv', [(NS_OFF, 0, 'done', 12.5, 3.0), (NS_OFF, 1, 'not_run', '', ''),
                                    (LS_ON, 0, 'done', 20.0, 5.0)])  # fmt: skip
  second = _csv(tmp_path / 'b.csv', [(NS_OFF, 1, 'done', 14.25, 4.0)])
  assert _merge(tmp_path, first, second) == 0
  assert '3 of 8 runs done' in capsys.readouterr().out
  with open(tmp_path / 'merged.csv', newline='') as f:
    rows = {(r['cell'], int(r['seed'])): r for r in csv.DictReader(f)}
  assert len(rows) == 8  # every run of the ablation, in its order
  assert rows[NS_OFF, 1]['status'] == 'done' and float(rows[NS_OFF, 1]['fid_lenet']) == 14.25
  assert rows[LS_ON, 1]['status'] == 'not_run'
  table = (tmp_path / 'merged.md').read_text()
  line = next(l for l in table.splitlines() if l.startswith('| non_saturating | off |'))
  mean, std = statistics.fmean([12.5, 14.25]), statistics.stdev([12.5, 14.25])  # 13.375, 1.237
  assert f'| 2 | 2 | {mean:.4g} ± {std:.2g} | 3.5 ± 0.71 |' in line, line
  line = next(l for l in table.splitlines() if l.startswith('| least_squares | on |'))
  assert '| 1 | 20 | 5 | seed 1 not_run |' in line, line


def test_one_run_scored_twice_differently_is_refused(tmp_path, capsys):
  first = _csv(tmp_path / 'a.csv', [(NS_OFF, 0, 'done', 12.5, 3.0)])
  same = _csv(tmp_path / 'b.csv', [(NS_OFF, 0, 'done', 12.5, 3.0)])
  assert _merge(tmp_path, first, same) == 0  # the same run in both files: fine
  capsys.readouterr()
  other = _csv(tmp_path / 'c.csv', [(NS_OFF, 0, 'done', 12.75, 3.0)])
  assert _merge(tmp_path / 'x', first, other) == 2
  err = capsys.readouterr().err.strip()
  assert '\n' not in err and 'seed 0: fid_lenet is 12.5 in' in err and '12.75 in' in err, err
  assert not (tmp_path / 'x').exists()


@pytest.mark.parametrize(
  'rows, message',
  [
    ([('loss=hinge,ema=off',)], "cell 'loss=hinge,ema=off' is not in"),
    (None, 'is not a sweep results.csv'),
  ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, rows, message):
  if rows is None:
    path = tmp_path / 'a.csv'
    path.write_text('step,fid\n1,2\n')
    path = str(path)
  else:
    path = str(tmp_path / 'a.csv')
    with open(path, 'w', newline='') as f:  # a cell label outside the ablation's grid
      writer = csv.DictWriter(f, fieldnames=COLUMNS)
      writer.writeheader()
      writer.writerow({'cell': rows[0][0], 'loss': 'hinge', 'ema': 'off', 'seed': 0,
                       'status': 'done', 'fid_lenet': 1.0})  # fmt: skip
  assert _merge(tmp_path, path) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('merge_sweep_results: ') and '\n' not in err and message in err, err
  assert _merge(tmp_path, str(tmp_path / 'missing.csv')) == 2
  assert 'does not exist' in capsys.readouterr().err
