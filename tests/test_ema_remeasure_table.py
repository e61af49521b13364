"""scripts/ema_remeasure_table.py: the EMA re-measurement's table from its tracked results."""

import json

import pytest

from conftest import load_script


def _load():
  return load_script('scripts/ema_remeasure_table.py')


def _partial_run(seed, raw, ema_raw, ema_standing):
  return {
    'loss': 'non_saturating',
    'seed': seed,
    'step': 3000,
    'raw_generator_fid_lenet': raw,
    'ema_raw_stats_fid_lenet': ema_raw,
    'ema_standing_stats_fid_lenet': ema_standing,
    'raw_recall_lenet': 0.2,
    'ema_standing_recall_lenet': 0.3,
  }


HEADER = (
  'cell,loss,seed,status,step,eval_step,fid_lenet,raw_fid_lenet,raw_recall_lenet,recall_lenet\n'
)


def test_rows_means_and_counts_by_hand(tmp_path):
  table = _load()
  (tmp_path / 'ema_stats_fashion').mkdir()
  runs = [_partial_run(0, 150.0, 170.0, 140.0), _partial_run(1, 110.0, 140.0, 130.0)]
  (tmp_path / 'ema_stats_fashion_partial.json').write_text(json.dumps({'runs': runs}))
  folder = tmp_path / 'ema_stats_fashion'
  (folder / 'others_seed0.csv').write_text(
    HEADER
    + 'loss=wgan_gp,wgan_gp,0,done,3000,3000,132.0,98.0,0.4,0.28\n'
    + 'loss=hinge_sn,hinge_sn,0,done,3000,3000,138.0,145.0,0.2,0.25\n'  # no raw-stats JSON
    + 'loss=least_squares,least_squares,0,running,1000,1000,200.0,190.0,0.1,0.1\n'
  )
  report = {'step': 3000, 'ema': True, 'ema_batch_stats': 'raw', 'results': {'fid_lenet': 142.0}}
  (folder / 'wgan_gp_seed_0_ema_raw_stats.json').write_text(json.dumps(report))
  rows = table.collect(tmp_path)
  assert [(r['loss'], r['seed']) for r in rows] == [
    ('non_saturating', 0),
    ('non_saturating', 1),
    ('wgan_gp', 0),
  ]
  summary = {e['loss']: e for e in table.summarise(rows)}
  ns = summary['non_saturating']
  # mean (150 + 110) / 2 = 130; sample std |150 - 110| / sqrt(2) = 28.28
  assert ns['raw'][0] == pytest.approx(130.0) and ns['raw'][1] == pytest.approx(28.2843, abs=1e-4)
  assert ns['ema_standing'][0] == pytest.approx(135.0) and ns['ema_standing_beats_raw'] == 1
  wgan = summary['wgan_gp']
  assert wgan['raw'] == [98.0, None] and wgan['ema_raw_stats'] == [142.0, None]
  assert wgan['ema_standing_beats_raw'] == 0
  # gains 170-140, 140-130, 142-132; EMA standing - raw: -10, +20, +34
  assert table.overall(rows) == {
    'runs': 3,
    'standing_gain': [10.0, 30.0],
    'standing_improves': 3,
    'ema_standing_beats_raw': 1,
    'ema_standing_minus_raw': [-10.0, 34.0],
  }
  md = table.markdown(table.summarise(rows))
  assert '| non_saturating | 0, 1 | 130.0 ± 28.3 | 155.0 ± 21.2 | 135.0 ± 7.1 | 1 of 2 |' in md
  assert '| wgan_gp | 0 | 98.0 | 142.0 | 132.0 | 0 of 1 |' in md


def test_the_tracked_results_give_the_documented_table():
  table = _load()
  rows = table.collect()
  assert len(rows) == 15  # 5 losses x seeds 0-2
  summary = {e['loss']: e for e in table.summarise(rows)}
  # docs/results.md, "All 15 runs": WGAN-GP 98.9 ± 3.4 / 144.3 ± 3.4 / 132.7 ± 4.4
  wgan = summary['wgan_gp']
  got = [round(x, 1) for score in ('raw', 'ema_raw_stats', 'ema_standing') for x in wgan[score]]
  assert got == [98.9, 3.4, 144.3, 3.4, 132.7, 4.4]
  assert table.overall(rows)['ema_standing_beats_raw'] == 3
