"""benchmarks/d_pass_fusion.py: the fused form is D's loss and gradient, and the script runs."""

import json

import jax
import numpy as np

from conftest import load_script


def _load():
  return load_script('benchmarks/d_pass_fusion.py')


def test_fused_and_separate_d_passes_give_the_same_loss_and_gradient():
  dpf = _load()
  (loss_a, grads_a), (loss_b, grads_b) = (dpf.d_gradient(f, 16, tiny=True)() for f in dpf.FORMS)
  np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(grads_a), jax.tree_util.tree_leaves(grads_b)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
  # Not a no-op: the loss is log 2 + log 2 at zero logits, and D's logits are not all zero.
  assert abs(float(loss_a) - 2 * np.log(2)) > 1e-6


def test_tiny_run_reports_both_forms_per_batch(tmp_path):
  dpf = _load()
  out = tmp_path / 'dpf.json'
  dpf.main(['--tiny', '--rounds', '1', '--reps', '1', '--batch-sizes', '8', '--json', str(out)])
  rows = json.loads(out.read_text())['rows']
  assert [r['batch'] for r in rows] == [8] and rows[0]['same']
  assert rows[0]['separate_ms'] > 0 and rows[0]['fused_ms'] > 0
