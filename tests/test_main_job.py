"""The README's first command trains the recipe that issue 18's study chose.

experiments/mnist_main.py must train exactly what the ablation cell
`experiments/ablations/main_job_speed.py` recipe=lr4e4_lazy16, seed 0, trained: the figures
docs/results.md quotes for the main job come from that cell's runs. Only how it is evaluated
and shown may differ (the study evaluates every 250 steps, without IS, and hides the
progress bar).
"""

import re

from gan_jax.config_files import load_config_file
from gan_jax.sweep.ablation import load_ablation, plan
from gan_jax.training.run_setup import flatten_config

from conftest import REPO

EVAL_ONLY = {'eval_every', 'eval.metrics', 'progress_bar'}


def test_main_job_trains_the_studys_chosen_cell(tmp_path):
  ablation = load_ablation(str(REPO / 'experiments/ablations/main_job_speed.py:lr4e4_lazy16'))
  cell = next(r.config for r in plan(ablation, str(tmp_path)) if r.seed == 0)
  main = load_config_file(str(REPO / 'experiments/mnist_main.py'))
  a, b = flatten_config(cell.to_dict()), flatten_config(main.to_dict())
  differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
  assert differ == EVAL_ONLY, differ
  assert (b['train.loss'], b['model.num_classes'], b['eval.ema_batch_stats']) == (
    'rpgan',
    10,
    'standing',
  )
  assert (b['train.g_lr'], b['train.penalty_interval']) == (4e-4, 16)


def test_readme_first_command_runs_the_main_job():
  readme = (REPO / 'README.md').read_text()
  blocks = re.findall(r'```bash\n(.*?)\n```', readme, flags=re.S)
  assert 'gan-jax train --config experiments/mnist_main.py' in blocks[0]
  assert 'pytest' in blocks[1]


def test_fashion_lazy16_cell_is_the_main_job_on_fashion_mnist(tmp_path):
  # fashion_main_screen.py:lazy16 asks whether Fashion-MNIST can take the main job's lazy
  # penalties: its cells must train mnist_main.py with only the data (and how it is evaluated)
  # changed.
  ablation = load_ablation(str(REPO / 'experiments/ablations/fashion_main_screen.py:lazy16'))
  runs = plan(ablation, str(tmp_path))
  assert sorted(r.seed for r in runs) == [0, 1, 2]
  main = load_config_file(str(REPO / 'experiments/mnist_main.py'))
  a, b = flatten_config(runs[0].config.to_dict()), flatten_config(main.to_dict())
  differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
  assert differ - EVAL_ONLY - {'eval.raw_generator'} == {'data.name'}, differ
  assert a['data.name'] == 'fashion_mnist' and a['train.penalty_interval'] == 16


def test_fashion_config_is_the_lazy16_cell_and_the_screen_keeps_its_cells(tmp_path):
  # experiments/fashion_mnist_main.py took the lazy penalties on December 6: the :lazy16 cells
  # (12.98 +- 0.57) must train it exactly, and the screen's earlier cells (R1 + R2 in every
  # step, 12.60 +- 0.44 for lr4e4) must still train what they were run with.
  path = str(REPO / 'experiments/ablations/fashion_main_screen.py')
  config = flatten_config(
    load_config_file(str(REPO / 'experiments/fashion_mnist_main.py')).to_dict()
  )
  lazy = plan(load_ablation(f'{path}:lazy16'), str(tmp_path))
  every = plan(load_ablation(f'{path}:all'), str(tmp_path))
  a = flatten_config(lazy[0].config.to_dict())
  differ = {k for k in set(a) | set(config) if a.get(k) != config.get(k)}
  assert differ - EVAL_ONLY - {'eval.raw_generator'} == set(), differ
  for run in every:
    b = flatten_config(run.config.to_dict())
    differ = {k for k in set(b) | set(config) if b.get(k) != config.get(k)}
    assert b['train.penalty_interval'] == 1, run.workdir
    assert differ - EVAL_ONLY - {'eval.raw_generator'} <= {
      'train.penalty_interval',
      'train.g_lr',
      'train.d_lr',
      'train.b1',
      'train.b2',
    }, differ


def test_4x_seeds_plans_the_finished_4x_run_and_two_more_seeds(tmp_path):
  # main_job_speed.py:4x_seeds must find seed 0 of :4x (finished, in the same folder) and
  # skip it, so its seed-0 config is :4x's exactly; seeds 1 and 2 differ only in the seed.
  path = str(REPO / 'experiments/ablations/main_job_speed.py')
  one = plan(load_ablation(f'{path}:4x'), str(tmp_path))
  three = plan(load_ablation(f'{path}:4x_seeds'), str(tmp_path))
  assert [r.seed for r in one] == [0] and [r.seed for r in three] == [0, 1, 2]
  assert three[0].workdir == one[0].workdir
  assert three[0].config.to_dict() == one[0].config.to_dict()
  a, b = flatten_config(three[0].config.to_dict()), flatten_config(three[2].config.to_dict())
  assert {k for k in a if a[k] != b[k]} == {'seed'} and b['train.steps'] == 20000


def test_fashion_4x_cells_train_the_fashion_config_longer(tmp_path):
  # fashion_main_screen.py:4x must train experiments/fashion_mnist_main.py (the lazy16 cell of
  # the screen, which the docs' Fashion-MNIST figures come from) for 20,000 steps: only the
  # length, the seed and how it is evaluated may differ from the config.
  path = str(REPO / 'experiments/ablations/fashion_main_screen.py')
  runs = plan(load_ablation(f'{path}:4x'), str(tmp_path))
  assert sorted(r.seed for r in runs) == [0, 1, 2]
  config = load_config_file(str(REPO / 'experiments/fashion_mnist_main.py'))
  a, b = flatten_config(runs[1].config.to_dict()), flatten_config(config.to_dict())
  differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
  assert differ - EVAL_ONLY - {'eval.raw_generator'} == {
    'train.steps',
    'seed',
  }, differ
  assert (a['train.steps'], a['eval_every'], a['seed']) == (20000, 2500, 1)
  assert (a['data.name'], a['train.g_lr'], a['train.penalty_interval']) == (
    'fashion_mnist',
    4e-4,
    16,
  )


def test_speed_seeds_variant_is_the_recipe_variants_runs(tmp_path):
  # main_job_speed.py:seeds is the table the per-recipe sweeps (`:lazy16`, `:lr4e4`,
  # `:lr4e4_lazy16`, each at seeds 0-2) are merged into: its 9 runs must be theirs exactly,
  # in the same folders, and the screen's seed-0 runs must be among them.
  path = str(REPO / 'experiments/ablations/main_job_speed.py')
  merged = {r.workdir: r for r in plan(load_ablation(f'{path}:seeds'), str(tmp_path))}
  assert len(merged) == 9
  per_recipe = [
    r
    for recipe in ('lazy16', 'lr4e4', 'lr4e4_lazy16')
    for r in plan(load_ablation(f'{path}:{recipe}'), str(tmp_path))
  ]
  assert sorted(merged) == sorted(r.workdir for r in per_recipe)
  for r in per_recipe:
    assert merged[r.workdir].config.to_dict() == r.config.to_dict()
  screen = plan(load_ablation(path), str(tmp_path))
  assert {r.workdir for r in screen} <= set(merged) and {r.seed for r in screen} == {0}
