"""The metric math (FID, KID, IS, precision/recall, density/coverage) against closed forms,
direct numpy/scipy computations and the invariances a trustworthy metric must have."""

import numpy as np
import pytest
import scipy.linalg

from gan_jax.metrics import fid, inception_score, kid, prdc, stats


def _random_cov(rng, d, scale=1.0):
  a = rng.normal(size=(d, d)) * scale
  return a @ a.T / d + 0.1 * np.eye(d)


def _gaussian_w2_closed_form(mu1, s1, mu2, s2):
  """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1^1/2 S2 S1^1/2)^1/2), via eigendecompositions
  of symmetric matrices only (an independent route from sqrtm of the non-symmetric S1 S2)."""
  w, v = np.linalg.eigh(s1)
  r1 = (v * np.sqrt(w)) @ v.T
  inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
  return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner).sum())


# ---- streaming statistics ----


def test_streaming_stats_equal_numpy_and_do_not_depend_on_batching_or_order():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3001, 16)) * rng.uniform(0.1, 5, size=16) + rng.normal(size=16) * 100
  direct_mu, direct_cov = x.mean(0), np.cov(x, rowvar=False)
  for batch in (1, 7, 64, 3001):
    acc = stats.StreamingStats()
    order = rng.permutation(len(x)) if batch != 3001 else np.arange(len(x))
    for lo in range(0, len(x), batch):
      acc.update(x[order[lo : lo + batch]].astype(np.float32 if batch == 64 else np.float64))
    s = acc.finalize()
    tol = 1e-5 if batch == 64 else 1e-10  # the float32 input rounds once on the way in
    np.testing.assert_allclose(s.mean, direct_mu, rtol=tol, atol=tol * 100)
    np.testing.assert_allclose(s.cov, direct_cov, rtol=tol, atol=tol)
    assert s.count == 3001 and s.mean.dtype == np.float64 and s.cov.dtype == np.float64
    np.testing.assert_array_equal(s.cov, s.cov.T)


def test_streaming_stats_merge_equals_one_pass():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(500, 8))
  a, b = stats.StreamingStats(), stats.StreamingStats()
  a.update(x[:123])
  b.update(x[123:])
  a.merge(b)
  one = stats.feature_stats(x)
  np.testing.assert_allclose(a.finalize().cov, one.cov, rtol=1e-12, atol=1e-14)


def test_stats_save_load_round_trip(tmp_path):
  s = stats.feature_stats(np.random.default_rng(2).normal(size=(50, 4)))
  s.save(tmp_path / 's.npz')
  t = stats.FeatureStats.load(tmp_path / 's.npz')
  np.testing.assert_array_equal(t.mean, s.mean)
  np.testing.assert_array_equal(t.cov, s.cov)
  assert t.count == 50


@pytest.mark.parametrize(
  'bad, match',
  [
    (np.zeros((4, 3, 2)), r'2-D array \[N, D\]'),
    (np.zeros((0, 3)), 'empty'),
    (np.array([[0.0, np.nan], [1.0, 2.0]]), 'NaN or infinite.*1 of 2'),
  ],
)
def test_stats_reject_bad_features(bad, match):
  with pytest.raises(ValueError, match=match):
    stats.StreamingStats().update(bad)


def test_stats_reject_dimension_change_and_too_few():
  acc = stats.StreamingStats()
  acc.update(np.zeros((3, 4)))
  with pytest.raises(ValueError, match='5 features per vector but earlier ones had 4'):
    acc.update(np.zeros((3, 5)))
  one = stats.StreamingStats()
  one.update(np.zeros((1, 4)))
  with pytest.raises(ValueError, match='at least 2'):
    one.finalize()


# ---- FID ----


def test_fid_of_a_set_with_itself_is_zero():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2000, 64)) @ rng.normal(size=(64, 64))
  s = stats.feature_stats(x)
  assert abs(fid.fid_from_stats(s, s)) < 1e-6


@pytest.mark.parametrize('d', [1, 8, 128])
def test_fid_equals_gaussian_closed_form(d):
  rng = np.random.default_rng(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d) * 3
  s1, s2 = _random_cov(rng, d), _random_cov(rng, d, scale=2.0)
  expected = _gaussian_w2_closed_form(mu1, s1, mu2, s2)
  got = fid.frechet_distance(mu1, s1, mu2, s2)
  assert got == pytest.approx(expected, rel=1e-6)


def test_fid_diagonal_gaussians_by_hand():
  # Diagonal covariances commute: FID = sum (m1-m2)^2 + sum (sqrt(a) - sqrt(b))^2.
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
  m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  expected = 1 + 0 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
  assert fid.frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fid_from_streamed_samples_equals_direct_scipy():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(4000, 32))
  y = rng.normal(size=(3000, 32)) * 1.3 + 0.2
  acc_x, acc_y = stats.StreamingStats(), stats.StreamingStats()
  for lo in range(0, 4000, 333):
    acc_x.update(x[lo : lo + 333])
  for lo in range(0, 3000, 1000):
    acc_y.update(y[lo : lo + 1000])
  got = fid.fid_from_stats(acc_x.finalize(), acc_y.finalize())
  # The textbook computation, straight from the samples.
  mx, my, cx, cy = x.mean(0), y.mean(0), np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  direct = ((mx - my) ** 2).sum() + np.trace(cx + cy - 2 * scipy.linalg.sqrtm(cx @ cy).real)
  assert got == pytest.approx(direct, rel=1e-9)
  # And sample order does not matter.
  acc = stats.StreamingStats()
  acc.update(x[::-1])
  assert fid.fid_from_stats(acc.finalize(), acc_y.finalize()) == pytest.approx(got, rel=1e-9)


def test_fid_singular_covariance_uses_the_diagonal_offset():
  # Rank-deficient covariances (a feature that never varies) still give a finite distance.
  s1 = np.diag([1.0, 2.0, 0.0])
  s2 = np.diag([2.0, 1.0, 0.0])
  got = fid.frechet_distance(np.zeros(3), s1, np.ones(3), s2)
  assert np.isfinite(got)
  expected = 3 + (1 - np.sqrt(2)) ** 2 * 2
  assert got == pytest.approx(expected, rel=1e-5)


def test_fid_errors_are_clear():
  s = stats.feature_stats(np.random.default_rng(5).normal(size=(10, 16)))
  with pytest.raises(ValueError, match='10 samples for 16 feature dimensions.*at least 17'):
    fid.fid_from_stats(s, s)
  with pytest.raises(ValueError, match='different dimensions'):
    fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
  with pytest.raises(ValueError, match=r'mean must be \[D\] and covariance \[D, D\]'):
    fid.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match='NaN'):
    fid.frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))
  # A covariance that is not PSD gives a large imaginary part: refused, not silently wrong.
  with pytest.raises(ValueError, match='imaginary component'):
    fid.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


# ---- KID ----


def test_kid_matches_a_direct_double_loop():
  rng = np.random.default_rng(6)
  x, y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.5
  k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
  xx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / 30
  yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
  xy = sum(k(x[i], y[j]) for i in range(6) for j in range(5)) / 30
  assert kid.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_of_one_distribution_is_zero_within_two_std_and_positive_when_shifted():
  rng = np.random.default_rng(7)
  a, b = rng.normal(size=(3000, 32)), rng.normal(size=(3000, 32))
  same = kid.kernel_inception_distance(a, b, seed=0)
  assert same.values.shape == (100,)
  assert abs(same.mean) < 2 * same.std
  shifted = kid.kernel_inception_distance(a, b + 0.5, num_subsets=10, seed=0)
  assert shifted.mean > 10 * shifted.std > 0
  # Reproducible for a seed, different for another.
  few = kid.kernel_inception_distance(a, b, num_subsets=10, seed=0)
  np.testing.assert_array_equal(few.values, same.values[:10])
  assert kid.kernel_inception_distance(a, b, num_subsets=10, seed=1).mean != few.mean


def test_kid_uses_smaller_subsets_for_small_sets_and_rejects_bad_input():
  rng = np.random.default_rng(8)
  r = kid.kernel_inception_distance(rng.normal(size=(50, 4)), rng.normal(size=(40, 4)))
  assert np.isfinite(r.mean)
  with pytest.raises(ValueError, match='at least 2 vectors'):
    kid.kernel_inception_distance(np.zeros((1, 4)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match='3 features per vector but earlier ones had 4'):
    kid.kernel_inception_distance(np.zeros((5, 4)), np.zeros((5, 3)))


# ---- Inception Score ----


def test_inception_score_bounds():
  n, k = 1000, 10
  constant = np.tile(np.random.default_rng(9).dirichlet(np.ones(k)), (n, 1))
  assert inception_score.inception_score(probs=constant) == pytest.approx((1.0, 0.0), abs=1e-12)
  balanced_one_hot = np.eye(k)[np.arange(n) % k]
  mean, std = inception_score.inception_score(probs=balanced_one_hot)
  assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0, abs=1e-12)
  # Logits input: confident logits approach K.
  mean, _ = inception_score.inception_score(logits=balanced_one_hot * 50.0)
  assert mean == pytest.approx(k, rel=1e-6)


def test_inception_score_matches_a_direct_formula_and_the_streaming_version():
  rng = np.random.default_rng(10)
  logits = rng.normal(size=(1003, 7)) * 3
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  scores = []
  for i in range(10):  # Salimans et al.'s split bounds: [i*N//10, (i+1)*N//10)
    part = p[i * 1003 // 10 : (i + 1) * 1003 // 10]
    py = part.mean(0)
    scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), axis=1))))
  got = inception_score.inception_score(logits)
  assert got == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-10)
  stream = inception_score.StreamingInceptionScore(1003, 7)
  for lo in range(0, 1003, 64):
    stream.update(logits[lo : lo + 64])
  assert stream.result() == pytest.approx(got, rel=1e-10)


def test_inception_score_errors():
  with pytest.raises(ValueError, match=r'\[N, K\]'):
    inception_score.inception_score(np.zeros(5))
  with pytest.raises(ValueError, match='splits=20'):
    inception_score.inception_score(np.zeros((10, 3)), splits=20)
  with pytest.raises(ValueError, match='sum to 1'):
    inception_score.inception_score(probs=np.full((10, 3), 0.5))
  with pytest.raises(ValueError, match='NaN'):
    inception_score.inception_score(np.full((10, 3), np.nan))
  stream = inception_score.StreamingInceptionScore(10, 3)
  stream.update(np.zeros((4, 3)))
  with pytest.raises(ValueError, match='fed 4 samples of the announced 10'):
    stream.result()


# ---- precision / recall / density / coverage ----


def test_prdc_identical_sets():
  x = np.random.default_rng(11).normal(size=(500, 8))
  r = prdc.precision_recall_density_coverage(x, x.copy(), block_size=128)
  assert r['precision'] == 1.0 and r['recall'] == 1.0 and r['coverage'] == 1.0
  assert r['density'] == pytest.approx(1.0)


def test_prdc_fall_on_shifted_sets_and_match_brute_force():
  rng = np.random.default_rng(12)
  real = rng.normal(size=(400, 5))
  fakes = [rng.normal(size=(300, 5)) + s for s in (0.0, 1.0, 3.0)]
  results = [prdc.precision_recall_density_coverage(real, f, block_size=64) for f in fakes]
  for key in ('precision', 'recall', 'density', 'coverage'):
    assert results[0][key] > results[1][key] > results[2][key], key
  assert results[2]['precision'] < 0.05 and results[2]['recall'] < 0.05
  # Brute force on the middle case, with the full distance matrices.
  fake = fakes[1]
  d_rr = np.linalg.norm(real[:, None] - real[None], axis=-1)
  d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=-1)
  d_rf = np.linalg.norm(real[:, None] - fake[None], axis=-1)
  rr, rf = np.sort(d_rr, 1)[:, 3], np.sort(d_ff, 1)[:, 3]
  expected = {
    'precision': (d_rf <= rr[:, None]).any(0).mean(),
    'recall': (d_rf <= rf[None, :]).any(1).mean(),
    'density': (d_rf < rr[:, None]).sum(0).mean() / 3,
    'coverage': (d_rf.min(1) < rr).mean(),
  }
  assert results[1] == pytest.approx(expected, abs=1e-12)


def test_prdc_errors():
  with pytest.raises(ValueError, match='1 <= k < N'):
    prdc.precision_recall_density_coverage(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
  with pytest.raises(ValueError, match='NaN'):
    prdc.precision_recall_density_coverage(np.full((10, 2), np.nan), np.zeros((10, 2)))
