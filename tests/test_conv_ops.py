"""benchmarks/conv_ops.py: the timed computations are the layer's function, and the script runs."""

import json

import jax
import numpy as np
import pytest

from conftest import load_script


def _load():
  return load_script('benchmarks/conv_ops.py')


@pytest.mark.parametrize(
  'kind,h,cin,cout',
  [('down', 14, 8, 16), ('up', 7, 16, 8), ('up', 14, 8, 1), ('same', 8, 16, 16)],
)
def test_variants_compute_the_layer_and_its_gradients(kind, h, cin, cout):
  conv_ops = _load()
  ref_apply, w, x, g = conv_ops.jax_layer('jax', kind, 128, h, cin, cout)
  y = ref_apply(w, x)
  assert y.shape == g.shape
  _, vjp = jax.vjp(ref_apply, w, x)
  dw, dx = vjp(g)
  for impl in ('jax_nchw', 'jax_chunk64', 'jax_adjoint', 'jax_im2col'):
    apply, w2, x2, g2 = conv_ops.jax_layer(impl, kind, 128, h, cin, cout)
    y2 = apply(w2, x2)
    _, vjp2 = jax.vjp(apply, w2, x2)
    dw2, dx2 = vjp2(g2)
    if impl == 'jax_nchw':  # back to NHWC; the kernel is the layer's HWIO kernel
      y2, dx2 = y2.transpose(0, 2, 3, 1), dx2.transpose(0, 2, 3, 1)
      dw2 = {'kernel': dw2}
      dw = {'kernel': dw['kernel'][...]}
    else:
      dw2 = {'kernel': dw2['kernel'][...]}
      dw = {'kernel': dw['kernel'][...]}
    np.testing.assert_allclose(y2, y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx2, dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw2['kernel'], dw['kernel'], rtol=1e-4, atol=1e-3)


def _tiny_report(conv_ops, tmp_path, *args) -> dict:
  """The JSON of a one-round, one-repetition `--tiny` run of benchmarks/conv_ops.py."""
  out = tmp_path / 'ops.json'
  conv_ops.main(['--tiny', '--rounds', '1', '--reps', '1', *args, '--json', str(out)])
  return json.loads(out.read_text())


def test_tiny_run_writes_every_layer_and_pass(tmp_path):
  conv_ops = _load()
  report = _tiny_report(conv_ops, tmp_path, '--batch-sizes', '64', '--impls', 'jax,jax_chunk64')
  assert len(report['rows']) == 2 * len(conv_ops.CASES['dcgan28'])
  assert all(r['ms']['jax'] > 0 and r['ms']['jax_chunk64'] > 0 for r in report['rows'])


def test_same_kind_is_a_3x3_stride_1_convolution():
  # SNGAN-32's layers: the timed function equals lax's 3x3 SAME convolution (independent of
  # gan_jax's layer), and the FLOP count is 2 x B x H x W x 9 x C_in x C_out.
  conv_ops = _load()
  apply, w, x, _ = conv_ops.jax_layer('jax', 'same', 4, 8, 16, 24)
  kernel = w['kernel'][...]
  assert kernel.shape == (3, 3, 16, 24)
  ref = jax.lax.conv_general_dilated(
    x, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )
  np.testing.assert_allclose(apply(w, x), ref, rtol=1e-5, atol=1e-5)
  assert conv_ops.flops('same', 4, 8, 16, 24) == 2 * 4 * 64 * 9 * 16 * 24


def test_sngan32_totals_weight_each_layer_by_its_count(tmp_path):
  conv_ops = _load()
  report = _tiny_report(
    conv_ops, tmp_path, '--case', 'sngan32', '--batch-sizes', '8', '--impls', 'jax'
  )
  counts = {'G.conv8': 2, 'G.conv16': 2, 'G.conv32': 2, 'D.conv16': 2, 'D.conv8': 4}
  expected = sum(counts.get(r['layer'], 1) * r['ms']['jax'] for r in report['rows'])
  assert len(report['rows']) == 2 * 8
  assert report['totals_ms']['8']['jax'] == pytest.approx(expected, rel=1e-9)


def test_bad_batch_sizes_exit_2_with_one_line(capsys):
  conv_ops = _load()
  with pytest.raises(SystemExit) as e:
    conv_ops.parse_args(['--batch-sizes', '64,x'])
  assert e.value.code == 2
  assert 'comma-separated positive integers' in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    conv_ops.parse_args(['--batch-sizes', '64,0'])
  assert e.value.code == 2 and "--batch-sizes '64,0'" in capsys.readouterr().err
