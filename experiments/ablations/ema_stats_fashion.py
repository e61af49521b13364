"""The losses_fashion ablation again, with the EMA generator scored with its own BatchNorm
statistics: does the EMA generator lose to the raw one because of its weights, or because
it was evaluated with the raw generator's BatchNorm statistics?

    TFDS_DATA_DIR=../shared/tfds gan-jax sweep experiments/ablations/ema_stats_fashion.py \
        --workdir runs/ema_stats_fashion

The same 15 runs as `losses_fashion.py` (5 losses x seeds 0, 1, 2; Fashion-MNIST DCGAN-28,
3,000 steps at batch 64, EMA decay 0.999), with one field changed:
`eval.ema_batch_stats = 'standing'`. Every evaluation then scores
  * the EMA generator with standing statistics (Brock et al. 2019), recomputed from its own
    weights on 16 x 256 latents (`gan_jax.core.sampling.standing_batch_stats`), as `fid_lenet`, ...;
  * the raw generator with its own running averages, as `raw_fid_lenet`, ....
Training does not depend on how it is evaluated, so the comparison that counts is within
each run: raw generator, EMA generator with the raw generator's statistics
(`gan-jax eval --workdir RUN --step 3000 --ema-stats raw`, losses_fashion's way) and EMA
generator with its own. The raw columns do not repeat losses_fashion's: the first three runs
here (December 2026) ended at raw FID 150.7 / 113.0 / 147.0 where losses_fashion's ended at
125.2 / 112.6 / 109.2. Those ran over several stops on earlier code and machines, and float
rounding that differs anywhere sends GAN training elsewhere. Partial results:
experiments/results/ema_stats_fashion_partial.{json,csv}.

Budget: as losses_fashion, about 2.1 hours on an idle 2-core CPU; an interrupted sweep
resumes where it stopped. `:tiny` is the seconds-long variant of losses_fashion with the
same change. `:others` runs the 12 runs of the four losses other than non_saturating (whose
three runs are in the partial results), `:others_seedN` those four losses at seed N only,
into the same folder (a finished run is skipped).
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
  '_losses_fashion', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'losses_fashion.py')
)
_losses = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_losses)


OTHERS = ('others', 'others_seed0', 'others_seed1', 'others_seed2')


def get_ablation(variant: str = ''):
  """losses_fashion's ablation (or its `tiny` variant) with eval.ema_batch_stats='standing';
  'others' / 'others_seedN': its losses but non_saturating (all seeds, or seed N).

  Raises:
    ValueError: for an unknown variant.
  """
  if variant and variant != 'tiny' and variant not in OTHERS:
    raise ValueError(
      f'unknown variant {variant!r} of ema_stats_fashion; use "tiny", '
      + ', '.join(f'"{v}"' for v in OTHERS)
      + ' or none.'
    )
  ablation = _losses.get_ablation('tiny' if variant == 'tiny' else '')
  ablation['overrides'] = {**ablation['overrides'], 'eval.ema_batch_stats': 'standing'}
  if variant in OTHERS:
    losses = ablation['grid']['loss']
    ablation['grid'] = {
      **ablation['grid'],
      'loss': {k: v for k, v in losses.items() if k != 'non_saturating'},
    }
    if variant != 'others':
      ablation['seeds'] = [int(variant[-1])]
  return ablation
