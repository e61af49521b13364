"""Ablation variants that split a long sweep into pieces train exactly the full sweep's cells."""

import pytest

from gan_jax.config_files import UsageError
from gan_jax.sweep.ablation import load_ablation, plan
from gan_jax.training.run_setup import flatten_config

from conftest import REPO

EMA_STATS = str(REPO / 'experiments/ablations/ema_stats_fashion.py')


def _cells(spec, tmp_path):
  return {
    (r.cell.name, r.seed): flatten_config(r.config.to_dict())
    for r in plan(load_ablation(spec), tmp_path)
  }


@pytest.mark.parametrize('variant,seeds', [('others', [0, 1, 2]), ('others_seed1', [1])])
def test_ema_stats_others_are_the_full_sweeps_other_runs(variant, seeds, tmp_path):
  full = _cells(EMA_STATS, str(tmp_path / 'full'))
  part = _cells(f'{EMA_STATS}:{variant}', str(tmp_path / 'part'))
  losses = {'wgan_gp', 'hinge_sn', 'least_squares', 'non_saturating_r1'}
  assert set(part) == {(f'loss={k}', s) for k in losses for s in seeds}
  for key, config in part.items():
    differ = {k for k in set(config) | set(full[key]) if config.get(k) != full[key].get(k)}
    assert differ == {'workdir'} or not differ, (key, differ)
    assert config['eval.ema_batch_stats'] == 'standing'


def test_ema_stats_unknown_variant_names_the_choices():
  with pytest.raises(UsageError, match='others_seed2'):
    load_ablation(f'{EMA_STATS}:others_seed7')
