"""benchmarks/time_to_quality.py: one tiny end-to-end run, and its parts.

The run trains both frameworks where torch (the benchmark-only `bench` extra) is installed and
gan_jax alone where it is not (CI); every PyTorch check is skipped without torch.
"""

import argparse
import importlib.util
import json
import math

import numpy as np
import pytest

from conftest import REPO

NO_TORCH = 'torch is the benchmark-only extra (pip install -e ".[bench]"); gan_jax never needs it'


@pytest.fixture(scope='module')
def ttq():
  path = REPO / 'benchmarks' / 'time_to_quality.py'
  spec = importlib.util.spec_from_file_location('_bench_time_to_quality', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def run(ttq, tfds_dir, tmp_path_factory):
  """The tiny benchmark, both frameworks where torch is installed: (report, JSON path).

  The MLP: it builds and compiles in a third of DCGAN-28's time; the script does not depend on
  the model, and DCGAN-28's PyTorch parameter count and eval-mode sampling are tested apart.
  """
  out = tmp_path_factory.mktemp('time_to_quality') / 'ttq.json'
  frameworks = 'jax,torch' if ttq.torch_installed() else 'jax'
  argv = [
    '--tiny',
    '--model',
    'mlp',
    '--frameworks',
    frameworks,
    '--torch-threads',
    '1',
    '--data-dir',
    tfds_dir,
  ]
  return ttq.main([*argv, '--json', str(out)]), out


def _check_run(r, batch_size=16):
  assert r['steps_run'] == 4 and [e['step'] for e in r['evals']] == [2, 4]
  assert all(math.isfinite(e['fid_lenet']) and e['fid_lenet'] > 0 for e in r['evals'])
  # Cumulative training time grows; evaluations are not in it.
  assert 0 < r['evals'][0]['train_wall_s'] < r['evals'][1]['train_wall_s'] == r['train_wall_s']
  assert r['eval_s'] == pytest.approx(sum(e['eval_s'] for e in r['evals']))
  assert r['images_per_s'] == pytest.approx(batch_size * 4 / r['train_wall_s'])
  assert r['final_fid_lenet'] == r['evals'][-1]['fid_lenet']
  # FID ~900 at step 4 is far above the default target 250.
  assert not r['reached_target'] and r['stopped'] == 'max steps'
  assert r['steps_to_target'] is None and r['train_wall_s_to_target'] is None
  assert r['setup_s'] > 0 and set(r['final_metrics']) >= {'d_loss', 'g_loss'}


def test_gan_jax_side_runs_and_writes_the_json(run):
  report, path = run
  assert json.loads(path.read_text()) == json.loads(json.dumps(report))
  assert report['command'].startswith('python benchmarks/time_to_quality.py --tiny --model mlp')
  assert report['model_config']['hidden'] == [32, 32]
  assert report['jax_version'] and report['date'] and report['platform']
  assert report['target_fid_lenet'] == 250.0 and report['metric'] == 'FID (LeNet)'
  assert report['reference'].startswith('mnist-train_512-28x28x1-lenet_mnist')
  assert (report['loss'], report['ema_decay'], report['n_critic']) == ('non_saturating', 0.999, 1)
  assert report['adam'] == {'lr': 2e-4, 'b1': 0.5, 'b2': 0.999}
  jx = report['results'][0]
  assert jx['framework'] == 'jax'
  _check_run(jx)
  assert jx['compile_s'] > 0 and jx['first_batch_s'] > 0


def test_both_frameworks_use_the_same_fid(run, ttq):
  pytest.importorskip('torch', reason=NO_TORCH)
  report, _ = run
  jx, th = report['results']
  assert th['framework'] == 'torch' and report['torch_version'] and th['threads'] == 1
  _check_run(th)
  assert th['num_params_g_d'] == jx['num_params_g_d']
  # Real images through the PyTorch side's path (NHWC -> the worker's NCHW tensor -> NHWC)
  # and straight from gan_jax.data.pipeline: the same images, the same FID.
  check = th['fid_check']
  assert check['images_identical'] and check['num_images'] == 256
  assert check['fid_lenet_torch_path'] == check['fid_lenet_gan_jax_path']
  assert 0 < check['fid_lenet_torch_path'] < 50  # Real vs (a superset of) themselves.
  assert report['time_to_target_ratio_torch_to_jax'] is None  # Neither reached it.


def _args(**kw):
  base = {'eval_every': 500, 'max_steps': 1200, 'target_fid': 250.0}
  return argparse.Namespace(**{**base, **kw})


def test_tracker_stops_at_target_max_steps_or_divergence(ttq):
  t = ttq.Tracker('jax', _args())
  assert t.next_stop() == 500
  t.step, t.train_s = 500, 10.0
  assert not t.record(300.0, 2.0, print)
  assert t.next_stop() == 1000
  t.step, t.train_s = 1000, 21.0
  assert t.record(250.0, 2.0, print)  # <= target
  r = t.summary(64)
  assert r['reached_target'] and r['steps_to_target'] == 1000
  assert r['train_wall_s_to_target'] == 21.0 and r['eval_s'] == 4.0
  assert r['images_per_s'] == pytest.approx(64 * 1000 / 21.0)

  t = ttq.Tracker('torch', _args())
  t.step = 1000
  assert t.next_stop() == 1200  # The last evaluation is at max_steps.
  t.step = 1200
  assert t.record(251.0, 1.0, print) and t.stopped == 'max steps'
  t = ttq.Tracker('torch', _args())
  t.step = 500
  assert t.record(None, 1.0, print) and t.stopped.startswith('diverged')
  assert not t.summary(64)['reached_target']


def test_frameworks_without_torch(ttq, monkeypatch):
  monkeypatch.setattr(ttq, 'torch_installed', lambda: False)
  args = ttq.parse_args(['--tiny'])
  assert args.frameworks == ['jax'] and 'not installed' in args.torch_skipped
  assert (args.max_steps, args.eval_every, args.eval_samples) == (4, 2, 256)
  args = ttq.parse_args([])
  assert (args.max_steps, args.eval_every, args.eval_samples, args.batch_size) == (
    5000,
    500,
    10000,
    64,
  )
  with pytest.raises(SystemExit):
    ttq.parse_args(['--frameworks', 'torch'])
  with pytest.raises(SystemExit):
    ttq.parse_args(['--eval-samples', '128'])


def test_torch_batches_reshuffle_every_epoch(ttq):
  torch = pytest.importorskip('torch', reason=NO_TORCH)
  images = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
  stream = ttq.BatchStream(images, 4, seed=0)
  seen = torch.cat([stream.next().flatten() for _ in range(5)])  # 20 images: 2 epochs
  assert sorted(seen[:10].tolist()) == sorted(seen[10:].tolist()) == list(range(10))
  assert not torch.equal(seen[:10], seen[10:])


def test_torch_ema_generator_samples_in_eval_mode(ttq, tmp_path):
  torch = pytest.importorskip('torch', reason=NO_TORCH)
  threads = torch.get_num_threads()
  spec = {
    'name': 'dcgan28',
    'latent_dim': 4,
    'g_width': 2,
    'd_width': 2,
    'hidden': [8],
    'image_shape': [28, 28, 1],
    'loss': 'non_saturating',
    'g_lr': 2e-4,
    'd_lr': 2e-4,
    'b1': 0.5,
    'b2': 0.999,
    'ema_decay': 0.999,
  }
  real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
  np.save(tmp_path / 'data.npy', real)
  np.save(tmp_path / 'z.npy', np.ones((6, 4), np.float32))
  run = ttq.TorchRun()
  try:
    info = run.setup(
      {
        'spec': spec,
        'data': str(tmp_path / 'data.npy'),
        'latents': str(tmp_path / 'z.npy'),
        'batch_size': 4,
        'seed': 0,
        'threads': 1,
        'adam': 'fused',
      }
    )
    assert info['num_images'] == 8
    run.train(2)
    g = run.ema_generator()
    assert not g.training and run.gan.G.training
    assert all(torch.equal(p, e) for p, e in zip(g.parameters(), run.gan.ema, strict=True))
    assert any(not torch.equal(p, e) for p, e in zip(run.gan.G.parameters(), run.gan.ema))
    out = np.load(run.generate(str(tmp_path / 'fake.npy'), 4)['path'])
    assert out.shape == (6, 28, 28, 1) and out.dtype == np.float32
    # Identical latents, eval-mode BatchNorm: the same images up to float rounding (they sit
    # in batches of different sizes, and oneDNN's kernels round by batch: 6e-11 seen here).
    np.testing.assert_allclose(out[0], out[5], rtol=1e-5, atol=1e-8)
    echo = np.load(run.echo_real(str(tmp_path / 'real.npy'), 8)['path'])
    np.testing.assert_array_equal(echo, real)
  finally:
    torch.set_num_threads(threads)


def test_first_at_or_below_finds_each_frameworks_first_evaluation(ttq):
  def result(fw, label, fids):
    evals = [
      {'step': 100 * (i + 1), 'fid_lenet': f, 'train_wall_s': 10.0 * (i + 1)}
      for i, f in enumerate(fids)
    ]
    return {
      'framework': fw,
      'label': label,
      'evals': evals,
      'final_fid_lenet': fids[-1],
      'steps_run': 100 * len(fids),
    }

  results = [
    result('jax', 'gan_jax', [300.0, None, 90.0, 15.0]),
    result('torch', 'PyTorch', [400.0, 200.0, 120.0]),
  ]
  rows = ttq.first_at_or_below(results, '20, torch')
  assert [r['fid'] for r in rows] == [20.0, 120.0]
  assert rows[0]['by'] == {'gan_jax': {'step': 400, 'train_wall_s': 40.0}, 'PyTorch': None}
  assert rows[1]['name'] == "PyTorch's FID at step 300"
  assert rows[1]['by'] == {
    'gan_jax': {'step': 300, 'train_wall_s': 30.0},
    'PyTorch': {'step': 300, 'train_wall_s': 30.0},
  }
  # Without a PyTorch run, 'torch' names no FID and is left out.
  assert ttq.first_at_or_below(results[:1], 'torch') == []


def test_jax_config_trains_that_recipe(ttq, tfds_dir, tmp_path):
  """--jax-config: gan_jax trains that file's recipe (here the class-conditional DCGAN)."""
  out = tmp_path / 'ttq.json'
  report = ttq.main(
    [
      '--tiny',
      '--frameworks',
      'jax',
      '--data-dir',
      tfds_dir,
      '--jax-config',
      'experiments/mnist_cdcgan.py',
      '--jax-set',
      'train.r1_weight=0.5',
      '--jax-set',
      'train.penalty_interval=2',
      '--report-fids',
      '2000',
      '--json',
      str(out),
    ]
  )
  recipe = report['jax_recipe']
  assert recipe['num_classes'] == 10 and recipe['model'] == 'dcgan28'
  # --jax-set's fields reached the trained config (lazy R1 every 2nd step).
  assert (recipe['r1_weight'], recipe['penalty_interval']) == (0.5, 2)
  assert recipe['jax_set'] == {'train.r1_weight': 0.5, 'train.penalty_interval': 2}
  jx = report['results'][0]
  _check_run(jx)
  # FID ~900 after 4 tiny steps is below 2000 at the first evaluation.
  assert report['first_at_or_below'] == [
    {
      'fid': 2000.0,
      'name': 'FID 2000',
      'by': {'gan_jax': {'step': 2, 'train_wall_s': jx['evals'][0]['train_wall_s']}},
    }
  ]


def test_jax_set_refuses_an_unknown_field_in_one_line(ttq, tfds_dir):
  from gan_jax.config_files import UsageError  # pylint: disable=g-import-not-at-top

  argv = ['--tiny', '--frameworks', 'jax', '--data-dir', tfds_dir]
  with pytest.raises(
    UsageError,
    match=r'^--jax-set train\.penalty_intervl: .* did you mean train\.penalty_interval\?$',
  ):
    ttq.main(
      argv + ['--jax-config', 'experiments/mnist_main.py', '--jax-set', 'train.penalty_intervl=4']
    )
  with pytest.raises(SystemExit):  # argparse: --jax-set without --jax-config
    ttq.main(argv + ['--jax-set', 'train.g_lr=4e-4'])
