"""The main job: a class-conditional DCGAN-28 on MNIST with an EMA generator done right.

Run it (from the repository root; the README's first command):

    TFDS_DATA_DIR=../shared/tfds gan-jax train --config experiments/mnist_main.py --workdir runs/mnist_main

Chosen by issue 18's quality-at-budget study (experiments/ablations/main_job_mnist.py, the
unconditional recipes, experiments/ablations/main_job_cmnist.py, the conditional ones, and
experiments/ablations/main_job_speed.py, the learning rates and lazy penalties; results in
docs/results.md). Against `experiments/mnist_dcgan.py` (the 2016 recipe, the main job until
December 2026, FID (LeNet) ~100 at this budget with one digit in ~20% of samples) it changes
six things:

  * class-conditional G and D (`experiments/mnist_cdcgan.py`: conditional BatchNorm in G,
    projection D; Miyato & Koyama 2018): G draws its classes uniformly, so the ten digits
    are balanced by construction, and each sample grid row is one digit;
  * the R3GAN objective (Huang et al. 2024): the relativistic pairing loss RpGAN
    (Jolicoeur-Martineau 2019) with R1 and R2 gradient penalties, gamma 0.1 (each weighted
    gamma / 2 on the squared gradient norm of D at real, resp. generated, images);
  * the EMA generator's horizon as a half-life of 10,000 images with a ramp-up of 0.05
    (StyleGAN2-ADA's `ema_kimg=10`, `ema_rampup=0.05`; Karras et al. 2020) instead of a
    fixed decay 0.999, which lags a 5,000-step run by ~1,000 steps;
  * the EMA generator is evaluated with standing BatchNorm statistics of its own weights
    (Brock et al. 2019), not the raw generator's running averages;
  * learning rates 4e-4 for G and D (Adam's betas stay 0.5 / 0.999), as
    experiments/fashion_mnist_main.py: FID 3.25 against 5.32 at step 5,000 (seed 0), and
    PyTorch's 5,000-step FID at step 700 instead of ~1,150;
  * R1 and R2 lazily, every 16th step at 16x gamma (`train.penalty_interval=16`; Karras et al.
    2020, StyleGAN2 section 4): the other 15 steps skip the penalties' double backward pass:
    1.42x the images/s (benchmarks/time_to_quality.py), at nearly the same FID by step.

Everything else is the DCGAN recipe: Adam beta1 0.5, 5,000 steps of batch 64 (8 min 14 s of
an idle 2-core CPU with the evaluations, December 5: experiments/results/mnist_main.json). Evaluation every 1,000
steps on 10,000 samples: FID (LeNet), KID, IS, precision/recall and the class balance
(`classes`). `:tiny` is seconds long, for tests.
"""

from gan_jax.config import apply_tiny, base_config


def get_config(variant: str = ''):
  """Returns the config; `variant='tiny'` shrinks it to seconds of CPU time."""
  c = base_config()
  c.model.name = 'dcgan28'                 # 28x28 DCGAN (see experiments/mnist_dcgan.py).
  c.model.latent_dim = 100                 # z ~ N(0, I), 100-d.
  c.model.g_width = 64                     # G: 7x7x128 -> 14x14x64 -> 28x28x1.
  c.model.d_width = 64                     # D: Conv 64 s2 -> Conv 128 s2 -> Dense 1 (+ projection).
  c.model.num_classes = 10                 # Digits 0..9 (TFDS mnist labels).
  c.model.g_conditioning = 'cbn'           # Conditional BatchNorm in G (Miyato & Koyama 2018).
  c.model.d_conditioning = 'projection'    # logit = psi(phi(x)) + <V[y], phi(x)> (eq. 3).
  c.data.name = 'mnist'                    # TFDS mnist 3.0.1, train split (60,000 images).
  c.data.image_size = 28
  c.data.channels = 1
  c.train.steps = 5000                     # ~5.3 epochs at batch 64.
  c.train.batch_size = 64
  c.train.loss = 'rpgan'                   # D: mean softplus(D(fake) - D(real)), pair by pair; G: reversed.
  c.train.r1_weight = 0.1                  # R1: gamma / 2 * E||grad_x D(x)||^2 on real images.
  c.train.r2_weight = 0.1                  # R2: the same on generated images.
  c.train.penalty_interval = 16            # R1 and R2 every 16th step at 16x gamma (lazy, StyleGAN2).
  c.train.g_lr = 4e-4                      # Adam; 2x Radford et al. 2016's 2e-4 (main_job_speed.py).
  c.train.d_lr = 4e-4
  c.train.b1 = 0.5
  c.train.ema_half_life_images = 10000.0   # EMA half-life 10k images (Karras et al. 2020) ...
  c.train.ema_rampup = 0.05                # ... ramped up as 5% of the images seen.
  c.eval.ema_batch_stats = 'standing'      # The EMA G's own BatchNorm statistics (Brock et al. 2019).
  c.eval.metrics = 'fid,kid,is,pr,classes' # + the class balance as the pinned LeNet reads it.
  c.num_samples = 100                      # Sample grids: 10 rows (digits) x 10 latents.
  c.sample_every = 500
  c.checkpoint_every = 1000
  if variant == 'tiny':
    apply_tiny(c)
    c.num_samples = 20                     # 10 rows x 2
  elif variant:
    raise ValueError(f'unknown variant {variant!r} of mnist_main; use "tiny" or none.')
  return c
