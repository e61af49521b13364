"""benchmarks/torch_reference.py and the PyTorch side of benchmarks/throughput.py.

PyTorch is a benchmark-only extra (`bench` in setup.cfg): every test here that needs it is
skipped without it, and the last one runs the benchmark with PyTorch off.
"""

import json
import math

import jax
import pytest
from flax import nnx

from conftest import load_script
from gan_jax.models import build_models
from gan_jax.core.state import image_shape_of

CASES = ['mlp', 'dcgan28', 'dcgan32', 'sngan32']
NO_TORCH = 'torch is the benchmark-only extra (pip install -e ".[bench]"); gan_jax never needs it'


def _load(name: str):
  return load_script(f'benchmarks/{name}.py')


@pytest.fixture(scope='module')
def throughput():
  return _load('throughput')


@pytest.fixture(scope='module')
def torch_reference():
  torch = pytest.importorskip('torch', reason=NO_TORCH)
  # One thread: OpenMP threads stall on a machine busy with other tests (xdist workers).
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield _load('torch_reference')
  torch.set_num_threads(threads)


def _jax_counts(config) -> dict[str, int]:
  """gan_jax's parameter counts of G and D, from shapes only (nnx.eval_shape: no compiling)."""
  g, d = nnx.eval_shape(lambda: build_models(config.model, image_shape_of(config), 0))
  return {
    name: sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
    for name, m in (('g', g), ('d', d))
  }


@pytest.mark.parametrize('tiny', [True, False], ids=['width8', 'benchmark_width'])
@pytest.mark.parametrize('case', CASES)
def test_torch_models_have_gan_jax_parameter_counts(throughput, torch_reference, case, tiny):
  config = throughput.make_config(case, 8, 0, tiny=tiny)
  g, d = torch_reference.build_models(throughput.torch_spec(config))
  torch_counts = {'g': torch_reference.num_params(g), 'd': torch_reference.num_params(d)}
  assert torch_counts == _jax_counts(config)


@pytest.mark.parametrize('case', CASES)
def test_torch_step_runs_and_keeps_d_state_in_g_step(throughput, torch_reference, case):
  import torch  # noqa: PLC0415

  config = throughput.make_config(case, 4, 0, tiny=True)
  spec = throughput.torch_spec(config)
  gan = torch_reference.TorchGAN(spec, seed=0, adam='fused')
  real = torch_reference.fixed_batch(spec, 4, 0)
  assert real.shape == (4, spec['image_shape'][2], *spec['image_shape'][:2])
  ema_before = [e.clone() for e in gan.ema]
  # BatchNorm running averages and spectral-norm vectors; not those of SN's dense logit layer,
  # whose u is a 1-vector, so that its v moves only when the weights do.
  sd = gan.D.state_dict()
  d_state = {
    k: v.clone()
    for k, v in sd.items()
    if 'running' in k or (k.endswith(('._u', '._v')) and sd[k[:-2] + '_u'].numel() > 1)
  }
  metrics = gan.step(real)
  assert set(metrics) == {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm'}
  assert all(torch.isfinite(v) for v in metrics.values())
  assert any(not torch.equal(a, b) for a, b in zip(ema_before, gan.ema))
  # The D update's two passes move D's statistics; the G update's pass does not (gan_jax
  # discards D's statistics in the G step), so one more G-step pass must leave them alone.
  after = {k: v.clone() for k, v in gan.D.state_dict().items() if k in d_state}
  assert all(not torch.equal(d_state[k], after[k]) for k in d_state)
  with torch_reference.frozen_state(gan.D):
    gan.D(real)
  assert all(torch.equal(after[k], gan.D.state_dict()[k]) for k in d_state)


def test_benchmark_alternates_with_torch_and_reports_memory(throughput, torch_reference, tmp_path):
  out = tmp_path / 'throughput.json'
  report = throughput.main(
    [
      '--tiny',
      '--models',
      'mlp',
      '--batch-sizes',
      '8',
      '--steps',
      '20',
      '--round-steps',
      '10',
      '--warmup',
      '1',
      '--memory-steps',
      '1',
      '--torch',
      'on',
      '--torch-threads',
      '1',
      '--json',
      str(out),
    ]
  )
  assert json.loads(out.read_text()) == json.loads(json.dumps(report))
  (r,) = report['results']
  assert r['num_params'] == sum(r['torch']['num_params_g_d'].values())
  assert len(r['step_times_s_per_round']) == len(r['torch']['step_times_s_per_round']) == 2
  assert r['torch']['steps_timed'] == r['steps_timed'] == 20
  assert r['ratio_jax_to_torch'] == pytest.approx(
    r['images_per_s_median'] / r['torch']['images_per_s_median']
  )
  assert r['flops_per_step'] > 0 and r['torch']['gflops_per_s_xla_count'] > 0
  assert report['torch']['threads'] >= 1 and report['torch']['version']
  for framework in ('jax', 'torch'):
    mem = r['memory'][framework]
    assert 50 < mem['peak_rss_mib'] < 4096


def test_benchmark_without_torch(throughput, tmp_path):
  report = throughput.main(
    [
      '--tiny',
      '--models',
      'mlp',
      '--batch-sizes',
      '8',
      '--warmup',
      '1',
      '--torch',
      'off',
      '--no-memory',
      '--json',
      str(tmp_path / 'throughput.json'),
    ]
  )
  (r,) = report['results']
  assert report['torch'] is None and report['torch_skipped'] == '--torch off'
  assert 'torch' not in r and 'memory' not in r
  assert r['steps_timed'] == 20 and r['images_per_s_median'] > 0
