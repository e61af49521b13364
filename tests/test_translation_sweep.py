"""`gan-jax sweep` over an ablation whose base is a translation config
(experiments/ablations/pix2pix_lambda_mnist.py): the runs train with their cell's lambda and
the results table holds each run's own evaluation."""

from __future__ import annotations

import csv
import json
import os

import pytest

from gan_jax import sweep
from gan_jax.config_files import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABLATION = os.path.join(ROOT, 'experiments', 'ablations', 'pix2pix_lambda_mnist.py')


def _read(path: str):
  with open(path) as f:
    return json.load(f) if path.endswith('.json') else f.read()


@pytest.mark.usefixtures('tfds_env')
def test_tiny_lambda_sweep_trains_each_cell_and_tabulates_its_evaluation(tmp_path):
  workdir = str(tmp_path / 'sweep')
  result = sweep.run_sweep(f'{ABLATION}:tiny', workdir, say=lambda line: None)
  assert result.failed == {} and result.skipped == []
  with open(os.path.join(workdir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [(r['l1'], r['status'], r['step'], r['eval_step']) for r in rows] == [
    ('10', 'done', '2', '2'),
    ('100', 'done', '2', '2'),
  ]
  for row in rows:
    run = row['workdir']
    lam = float(row['l1'])
    assert _read(os.path.join(run, 'translation_run.json'))['model']['l1_weight'] == lam
    # The step optimised adv + lambda * L1 with the cell's lambda (metrics.jsonl, by hand).
    with open(os.path.join(run, 'metrics.jsonl')) as f:
      losses = [json.loads(line) for line in f if '"g_loss"' in line]
    for e in losses:
      assert e['g_loss'] == pytest.approx(e['g_adv'] + lam * e['g_l1'], rel=1e-5)
    final = _read(os.path.join(run, 'summary.json'))['final_eval']
    for metric in ('psnr', 'ssim', 'baseline_psnr', 'baseline_ssim'):
      assert float(row[metric]) == pytest.approx(final[metric], rel=1e-12)
  md = _read(os.path.join(workdir, 'results.md'))
  assert '| l1 | step | n | psnr | ssim | baseline_psnr | baseline_ssim | not finished |' in md
  assert os.path.isfile(os.path.join(workdir, 'samples.png'))
  # Rerunning skips both finished runs.
  again = sweep.run_sweep(f'{ABLATION}:tiny', workdir, say=lambda line: None)
  assert again.skipped == ['l1=10/seed_0', 'l1=100/seed_0']


def test_translation_ablations_are_checked_before_anything_runs(tmp_path):
  workdir = str(tmp_path / 'never')
  with pytest.raises(UsageError, match=r"translation\.l1_weight=-1\.0 is invalid"):
    sweep.run_sweep(
      f'{ABLATION}:tiny', workdir, cli_overrides=['--config.translation.l1_weight=-1'],
      say=lambda line: None,
    )  # fmt: skip
  with pytest.raises(UsageError, match=r"translation\.l1_weight=-1\.0 is invalid"):
    sweep.run_sweep(
      f'{ABLATION}:tiny', workdir, replicas=True, say=lambda line: None,
      cli_overrides=['--config.translation.l1_weight=-1'],
    )  # fmt: skip
  assert not os.path.exists(workdir)
