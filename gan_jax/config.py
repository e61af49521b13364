"""The run configuration: every field, its meaning, and its checks.

Experiment files in `experiments/` start from `base_config()` and change what they need;
`validate(config)` checks a finished config before anything is built, so that a bad value
fails in one line that names the field and a valid choice.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import ml_collections
from ml_collections import config_dict

from gan_jax.core import penalties
from gan_jax.errors import ConfigError  # noqa: F401  (re-exported)


def base_config() -> ml_collections.ConfigDict:
  """The full config with defaults: a DCGAN-28 on MNIST with the non-saturating loss.

  Returns:
    A locked `ConfigDict` (unknown keys cannot be added by mistake; use `unlocked()`).
  """
  c = ml_collections.ConfigDict()
  c.seed = 0                       # Seeds parameter init, noise and data order (same seed = same bits).
  c.num_replicas = 1               # K > 1: K GANs in one compiled step (gan_jax/training/replicas.py), in <workdir>/replica_<i>/.
  c.replica_seeds = True           # Replica i gets seed + i; False: every replica uses seed.
  c.replica_values = ''            # Per-replica values, K each: 'train.g_lr=1e-4,2e-4;train.r1_weight=1,10' (see REPLICA_FIELDS).
  c.replica_impl = 'auto'          # How one program holds K replicas: 'vmap', 'unroll' (K copies of the step) or 'auto' (unroll for conv models on CPU; see gan_jax/training/replicas.py).
  # Mixed precision (as in Flax / big_vision): 'bfloat16' runs G's and D's layers in bfloat16,
  # while parameters, optimizer state, EMA and BatchNorm statistics stay float32, and G's images
  # and D's logits are cast to float32 before any loss, penalty or metric. It changes results
  # but not the checkpoint (float32 either way), so a float32 run may resume in bfloat16.
  c.dtype = 'float32'              # Compute dtype of G and D: 'float32' (default) or 'bfloat16'.

  c.model = ml_collections.ConfigDict()
  c.model.name = 'dcgan28'         # 'mlp', 'dcgan28' (28x28), 'dcgan' (power-of-two sizes, 32, 64, ...), 'sngan32' (32x32 ResNet) or 'r3gan' (28, 32, 64, ... px modern ResNet).
  c.model.latent_dim = 100         # Size of z ~ N(0, I).
  c.model.g_width = 64             # DCGAN generator width (channels of its last hidden layer).
  c.model.d_width = 64             # DCGAN discriminator width (channels of its first layer).
  c.model.hidden = (256, 256)      # MLP hidden layer widths (MLP only).
  c.model.spectral_norm = False    # DCGAN D: spectral norm on every layer, no BatchNorm (Miyato et al. 2018); sngan32 always.
  c.model.pack = 1                 # DCGAN D judges packs of this many images, stacked on channels (PacGAN, Lin et al. 2018: 2).
  c.model.minibatch_std = 0        # DCGAN D: minibatch-stddev group size, min(it, batch / pack) (Karras et al. 2018: 4); 0 = off.
  # Speed only, the same results to float32 rounding (dcgan28, dcgan, sngan32; issue 21, docs/performance.md):
  c.model.tconv_backward = 'autodiff'  # G's sub-pixel transposed convolutions on CPU: 'autodiff' or 'adjoint' (their gradients as the adjoint strided convolution's operations; 1.1-1.2x DCGAN-28's step on 2 CPU cores).
  c.model.g_conv_chunk = 0         # Run G's (transposed) convolutions on chunks of this many images; 0 = the whole batch at once.
  c.model.d_conv_chunk = 0         # The same for D's convolutions (64 at batch 256: with 'adjoint', 1.4x DCGAN-28's step on 2 CPU cores).
  c.model.conv_kernel_grad = 'xla'  # Kernel gradient of stride-1 convolutions of >= 32x32 px (sngan32's): 'xla' or 'im2col' (matrix products of the shifted input, layers.conv_im2col_vjp: 1.15x SNGAN-32's step at batch 64 on 2 CPU cores, more memory).
  c.model.remat = False            # sngan32: recompute G's and D's residual blocks in the backward pass (jax.checkpoint) instead of storing them: less memory, ~1 more forward pass per gradient, same results to float32 rounding.
  # Class-conditional GANs (gan_jax/models/conditional.py; dcgan28, dcgan, sngan32, r3gan): G makes
  # images of a given class, D judges (image, class) pairs; the data's labels must be 0..K-1.
  c.model.num_classes = 0          # K classes (10 for MNIST); 0 = unconditional (the models are then exactly the unconditional ones).
  c.model.g_conditioning = 'cbn'   # 'cbn': conditional BatchNorm (Miyato & Koyama 2018); 'concat': labels concatenated to z (Mirza & Osindero 2014).
  c.model.d_conditioning = 'projection'  # 'projection' (Miyato & Koyama 2018), 'concat' (label maps on the image) or 'acgan' (Odena et al. 2017).
  c.model.label_embed_dim = 0      # 'concat': 0 = one-hot labels, > 0 = a learned label embedding of this size.
  # R3GAN (model.name=r3gan, gan_jax/models/r3gan.py; Huang et al. 2024): n stages, from a
  # base x base basis (4, or 7 for 28 px) up to the image in G, the mirror image in D.
  c.model.stage_widths = ()        # R3GAN: channels per G stage, lowest resolution first (D: reversed); one value = every stage; () = model.g_width (G) and model.d_width (D) everywhere.
  c.model.stage_blocks = (1,)      # R3GAN: residual blocks per G stage, lowest resolution first (D: reversed); one value = every stage (the paper: 2).
  c.model.expansion = 2            # R3GAN: inverted-bottleneck expansion factor of each residual block (the paper: 2).
  c.model.group_size = 16          # R3GAN: channels per group of the grouped 3x3 convolutions (the paper: 16); must divide expansion x every stage width (or exceed it: one group).

  c.data = ml_collections.ConfigDict()
  c.data.name = 'mnist'            # Any TFDS image dataset name (mnist, fashion_mnist, cifar10, ...), or 'folder:/path' (a folder or .zip of images, see gan_jax/data/image_folder.py).
  # A folder's options follow '?': 'folder:/path?resize=stretch&upscale=yes&mixed=convert' (defaults:
  # resize=crop, a centre square; upscale=no, smaller images are an error; mixed=error, gray + colour
  # images with channels=3 are an error). Labels are the sorted first-level subfolder names (classes.json).
  c.data.split = 'train'           # TFDS split, slicing allowed ('train[:10%]'); a folder is one split, 'train'.
  c.data.data_dir = config_dict.placeholder(str)  # TFDS data dir; None: $TFDS_DATA_DIR, else TFDS's default.
  c.data.image_size = 28           # Images are resized to image_size x image_size if stored otherwise.
  c.data.channels = 1              # 1 (grayscale) or 3 (RGB); converted if the dataset differs.
  c.data.cache = True              # Keep decoded images in memory after the first pass.
  c.data.shuffle_buffer = config_dict.placeholder(int)  # None: the whole dataset (a full shuffle).
  c.data.download = False          # Let TFDS download a missing dataset (needs internet).

  c.train = ml_collections.ConfigDict()
  c.train.steps = 5000             # Train steps (one step = n_critic D updates + one G update).
  c.train.batch_size = 64          # Global batch size (images per D update), split over all devices.
  c.train.n_critic = 1             # D updates per G update (Arjovsky et al. 2017 use 5 for WGAN).
  c.train.loss = 'non_saturating'  # non_saturating, minimax, wasserstein, hinge, least_squares, relativistic_average.
  c.train.g_lr = 2e-4              # Generator Adam learning rate (Radford et al. 2016).
  c.train.d_lr = 2e-4              # Discriminator Adam learning rate (TTUR when != g_lr).
  c.train.b1 = 0.5                 # Adam beta1 (Radford et al. 2016).
  c.train.b2 = 0.999               # Adam beta2.
  c.train.ema_decay = 0.999        # Generator EMA decay in [0, 1); 0 disables (samples use raw G).
  c.train.ema_half_life_images = 0.0  # > 0: the EMA's half-life in images, beta = 0.5 ** (batch_size / it), replacing ema_decay (Karras et al. 2020: 10,000); 0 = off.
  c.train.ema_rampup = 0.0         # > 0: half-life min(it, images seen * ema_rampup) (Karras et al. 2020: 0.05); 0 = off.
  # Schedules (gan_jax/core/schedules.py, docs/configs.md#schedules): factors that multiply a field
  # as a function of the images seen, e.g. 'g_lr,d_lr=cosine:1->0.25@500kimg; r1_weight=linear:0->1@10kimg'.
  c.train.schedules = ''           # Fields: g_lr, d_lr, b2, gp_weight, r1_weight, r2_weight, ema_half_life_images, ada_p (times ada_p_init, augment='fixed' only); '' = none.
  # Discriminator regularizers and stabilizers (gan_jax/core/regularizers.py, gan_jax/core/augment.py); 0/'' = off.
  c.train.gp_weight = 0.0          # WGAN-GP lambda on real/fake interpolates (Gulrajani et al. 2017: 10).
  c.train.r1_weight = 0.0          # R1 gamma: + gamma/2 E||grad D(real)||^2 (Mescheder et al. 2018).
  c.train.r2_weight = 0.0          # R2 gamma: the same on generated images.
  c.train.penalty_interval = 1     # Lazy regularization: GP, R1 and R2 only every k-th step, weighted x k (Karras et al. 2020, StyleGAN2: 16); 1 = every step.
  c.train.lecam_weight = 0.0       # LeCam lambda (Tseng et al. 2021, eq. 3; they use 0.3 for BigGAN on CIFAR-10); 0 = off.
  c.train.lecam_decay = 0.99       # Decay of LeCam's EMAs of D's mean real and fake outputs.
  c.train.clip = 0.0               # WGAN weight clipping of D's parameters to [-clip, clip] (Arjovsky et al. 2017: 0.01).
  c.train.label_smoothing = 0.0    # One-sided: real target 1 - s (Salimans et al. 2016: 0.1); cross-entropy losses only.
  c.train.instance_noise = 0.0     # Sigma of Gaussian noise on every D input (pixels in [-1, 1]).
  c.train.instance_noise_steps = 0 # Linear decay of that sigma to 0 over these steps; 0 keeps it fixed.
  c.train.diffaugment = ''         # DiffAugment policy on every D input (Zhao et al. 2020), e.g. 'color,translation,cutout'.
  # Adaptive discriminator augmentation (ADA, Karras et al. 2020; gan_jax/core/ada.py): every D input, real and generated, is augmented with probability p.
  c.train.augment = ''             # 'ada' (p adapted toward ada_target, kept in the training state), 'fixed' (p = ada_p_init) or '' (off); not with diffaugment.
  c.train.ada_transforms = 'bgc'   # StyleGAN2-ADA preset ('blit', 'geom', 'color', 'noise', 'cutout', 'bg', 'bgc') or transforms, comma-separated ('bgc,cutout').
  c.train.ada_target = 0.6         # Target of r_t = E[sign(D(real))]: p rises while D is more confident on reals than this.
  c.train.ada_kimg = 500.0         # Thousands of real images for p to move by 1.
  c.train.ada_interval = 4         # Steps between p adjustments.
  c.train.ada_p_init = 0.0         # p at step 0 ('ada'), or the constant p ('fixed'; times the ada_p factor of train.schedules).
  c.train.aux_weight = 1.0         # AC-GAN (model.d_conditioning='acgan'): weight of the class cross-entropies in D's and G's losses.
  c.train.reuse_fakes = False      # The G update reuses the last D update's fakes and G forward (one G forward per step, -9% FLOPs on DCGAN-28); changes the algorithm.
  c.train.cpu_scheduler = 'concurrency'  # On CPU, XLA's scheduler of the step: 'concurrency' (XLA's default) or 'memory' (about half the temporary memory, e.g. SNGAN-32 at batch 256; same results bit for bit; speed differs by model, benchmarks/xla_options.py).

  c.log_every = 50                 # Steps between scalar logs (TensorBoard, metrics.jsonl, progress bar).
  c.sample_every = 500             # Steps between PNG sample grids (and one at the end).
  c.checkpoint_every = 1000        # Steps between Orbax checkpoints (and one at the end).
  c.keep_checkpoints = 3           # How many latest checkpoints to keep.
  c.num_samples = 64               # Images in each sample grid (from one fixed latent batch); conditional: one row per class.
  c.progress_bar = True            # Show a tqdm progress bar (step, images/s, losses).
  c.on_nonfinite = 'stop'          # NaN/Inf in a loss or gradient norm: 'stop' (error, keep checkpoints) or 'rollback'.
  c.allow_resume_changes = False   # Resume a run with another seed, data.name or data.split (else refused; the old config is kept in config_history.jsonl).
  c.rollback_lr_factor = 0.5       # 'rollback': reload the last good checkpoint, multiply both learning rates by this.
  c.max_rollbacks = 3              # 'rollback': at most this many per run, then stop as with 'stop'.

  # Evaluation during training (gan_jax/metrics/evaluate.py): every eval_every steps and at the
  # end, the EMA generator's samples are scored against cached real reference features; the
  # results go to TensorBoard and metrics.jsonl as eval/<metric>_<net>, and the checkpoint with
  # the best FID is kept in <workdir>/best/.
  c.eval_every = 1000              # Steps between evaluations (and one at the end); 0 disables.
  c.eval_num_samples = 10000       # Generated images per evaluation (for fid, kid, is, pr).
  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = 'fid,kid,is,pr' # Comma-separated, from fid, kid, is, pr, modes (Stacked MNIST), classes (class balance).
  c.eval.feature_net = 'auto'      # auto: LeNet for mnist/fashion_mnist/stacked_mnist, else inception_v3.
  c.eval.split = 'train'           # Real split the reference statistics come from.
  c.eval.batch_size = 500          # Images per generator / feature-network call.
  c.eval.kid_pr_samples = 10000    # Generated (and real) features kept for KID and precision/recall.
  c.eval.modes_num_samples = 26000 # Samples for Stacked-MNIST mode counting (Lin et al. 2018).
  c.eval.inception_weights = config_dict.placeholder(str)  # pt_inception-2015-12-05 file; None: $GAN_JAX_INCEPTION_WEIGHTS or the cache.
  c.eval.download_inception = False  # Fetch the Inception weights from pytorch-fid's URL if missing.
  c.eval.cache_dir = config_dict.placeholder(str)  # Reference-statistics cache; None: $GAN_JAX_CACHE_DIR or ~/.cache/gan_jax.
  c.eval.keep_best = True          # Keep the checkpoint with the lowest FID in <workdir>/best/.
  c.eval.raw_generator = False     # Also evaluate the raw G (EMA on), as eval/raw_<metric>: EMA off vs on from one run.
  c.eval.ema_batch_stats = 'raw'   # BatchNorm statistics of the EMA G wherever it samples (evaluations, sample grids, gan-jax sample/eval/edit/export): 'raw' (the raw G's running averages) or 'standing' (recomputed from the EMA weights, Brock et al. 2019).
  c.lock()
  return c


def apply_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config in place to seconds of CPU time (the experiments' `:tiny` variants).

  Narrow models (width 8, MLP hidden 32), 1,024 training images, batch 16, 4 steps with a
  log, a sample grid and a checkpoint every 2 steps, and no progress bar. Evaluation is off
  (set eval_every to turn it on: it then uses 256 samples against 512 real images). For tests
  and smoke runs, not for results.
  """
  c.model.g_width = 8
  c.model.d_width = 8
  c.model.hidden = (32, 32)
  c.data.split = 'train[:1024]'
  c.train.steps = 4
  c.train.batch_size = 16
  c.log_every = 2
  c.sample_every = 2
  c.checkpoint_every = 2
  c.num_samples = 16
  c.progress_bar = False
  c.eval_every = 0
  c.eval_num_samples = 256
  c.eval.split = 'train[:512]'
  c.eval.batch_size = 128
  c.eval.kid_pr_samples = 256
  return c


# How `num_replicas > 1` builds its one program (gan_jax.training.replicas.make_replicated_train_step).
REPLICA_IMPLS = ('auto', 'vmap', 'unroll')

# Fields whose values may differ between the replicas of one step: continuous values that
# enter the step as traced inputs (gan_jax.core.train_step.HPARAM_FIELDS): the optimizer's, and the
# weights of the penalties whose registry entry allows it (gan_jax.core.penalties).
REPLICA_FIELDS = (
  'train.g_lr',
  'train.d_lr',
  'train.b1',
  'train.b2',
  *(f'train.{field}' for field in penalties.REPLICA_WEIGHT_FIELDS),
)


def parse_replica_values(
  spec: str, num_replicas: int, fields: Sequence[str] = REPLICA_FIELDS
) -> dict[str, list[float]]:
  """Parses `replica_values`, e.g. 'train.g_lr=1e-4,2e-4;train.r1_weight=1,10'.

  `fields` are the fields that may differ (a GAN's `REPLICA_FIELDS`; a translation config's
  are `gan_jax.translation.run_config.REPLICA_FIELDS[kind]`).

  Returns:
    {field: [value of replica 0, ..., value of replica K-1]} (empty for '').

  Raises:
    ConfigError: an unknown or repeated field, a value that is not a number, or not exactly
      `num_replicas` values for a field.
  """
  out: dict[str, list[float]] = {}
  for part in (p.strip() for p in spec.split(';')):
    if not part:
      continue
    field, sep, values = part.partition('=')
    field = field.strip()
    if not sep or field not in fields:
      raise _err('replica_values', spec, f'{field!r} cannot differ between replicas; use '
                 f'FIELD=v1,...,vK;... with FIELD from {", ".join(fields)}')
    if field in out:
      raise _err('replica_values', spec, f'{field} is given twice')
    try:
      out[field] = [float(v) for v in values.split(',')]
    except ValueError:
      raise _err('replica_values', spec, f'{field} needs numbers, got {values!r}') from None
    if len(out[field]) != num_replicas:
      raise _err('replica_values', spec, f'{field} has {len(out[field])} values for '
                 f'num_replicas={num_replicas}; give one per replica')
  return out


# Bounds that keep a run within memory, checked before anything is allocated.
MAX_GRID_IMAGES = 10_000  # num_samples: images in one training sample grid
MAX_PARAMS = 2**30  # parameters of G + D (about 20 GiB of float32 training state)

# eval.ema_batch_stats: which BatchNorm statistics the EMA generator samples with, in every
# sampler (`gan_jax.core.sampling.sampling_batch_stats`, whose EMA_STATS_POLICIES these are).
EMA_BATCH_STATS = ('raw', 'standing')


def ema_batch_stats(config: ml_collections.ConfigDict) -> str:
  """A run's BatchNorm-statistics policy for its EMA generator, `eval.ema_batch_stats`.

  Args:
    config: a run config (one read back from a run folder's config.json too).

  Returns:
    'raw' or 'standing'; 'raw' for configs written before the field (or without `eval`).

  Raises:
    ConfigError: any other value (one line naming the choices).
  """
  ema_stats = config.get('eval', {}).get('ema_batch_stats', 'raw')  # missing in older configs
  if ema_stats not in EMA_BATCH_STATS:
    raise _err('eval.ema_batch_stats', ema_stats, f'choose one of {list(EMA_BATCH_STATS)}')
  return ema_stats


def _err(field: str, value: Any, need: str) -> ConfigError:
  return ConfigError(f'{field}={value!r} is invalid: {need}.')


def _validate_conditioning(config: ml_collections.ConfigDict) -> None:
  """The class-conditioning fields (missing ones, in configs written before them, are off)."""
  from gan_jax.models import D_CONDITIONINGS, G_CONDITIONINGS  # pylint: disable=g-import-not-at-top
  from gan_jax.models import registry as models  # pylint: disable=g-import-not-at-top

  m, t = config.model, config.train
  k = m.get('num_classes', 0)
  if isinstance(k, bool) or not isinstance(k, int) or k < 0:
    raise _err('model.num_classes', k, 'must be an integer >= 0 (0: unconditional; 10 for MNIST)')
  g_cond = m.get('g_conditioning', 'cbn')
  if g_cond not in G_CONDITIONINGS:
    raise _err('model.g_conditioning', g_cond, f'choose one of {", ".join(G_CONDITIONINGS)}')
  d_cond = m.get('d_conditioning', 'projection')
  if d_cond not in D_CONDITIONINGS:
    raise _err('model.d_conditioning', d_cond, f'choose one of {", ".join(D_CONDITIONINGS)}')
  embed_dim = m.get('label_embed_dim', 0)
  if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 0:
    raise _err('model.label_embed_dim', embed_dim, 'must be an integer >= 0 (0: one-hot labels)')
  aux_weight = t.get('aux_weight', 1.0)
  if not (aux_weight >= 0 and math.isfinite(aux_weight)):
    raise _err('train.aux_weight', aux_weight, 'must be >= 0, e.g. 1 (AC-GAN, Odena et al. 2017)')
  models.get(m.name).check_conditioning(config)  # the model's entry: has it conditioning?
  if k and m.pack > 1:
    raise _err('model.pack', m.pack, f'a pack would mix classes, so it cannot be combined with '
               f'model.num_classes={k}; set model.pack=1 or model.num_classes=0')


def _validate_augment(t: ml_collections.ConfigDict) -> None:
  """ADA's fields (missing ones, in configs written before them, are off / the defaults)."""
  from gan_jax.core import ada  # pylint: disable=g-import-not-at-top  (JAX, lazily)

  mode = t.get('augment', '')
  if mode not in ada.MODES:
    raise _err('train.augment', mode, "choose 'ada' (adaptive p, Karras et al. 2020), 'fixed' "
               "(p = train.ada_p_init) or '' (off)")
  if not mode:
    return
  if t.diffaugment:
    raise _err('train.augment', mode, f'ADA cannot be combined with train.diffaugment='
               f"{t.diffaugment!r} (both augment D's input); set train.diffaugment='' or "
               "train.augment=''")
  try:
    ada.parse_transforms(t.get('ada_transforms', ada.DEFAULT_TRANSFORMS))
  except ValueError as e:
    raise _err('train.ada_transforms', t.ada_transforms, str(e).rstrip('.')) from None
  target, kimg = t.get('ada_target', 0.6), t.get('ada_kimg', 500.0)
  interval, p_init = t.get('ada_interval', 4), t.get('ada_p_init', 0.0)
  if not 0 <= target < 1:
    raise _err('train.ada_target', target, 'must be in [0, 1), e.g. 0.6 (Karras et al. 2020)')
  if not (kimg > 0 and math.isfinite(kimg)):
    raise _err('train.ada_kimg', kimg, 'must be a positive number of thousands of images, e.g. 500')
  if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
    raise _err('train.ada_interval', interval, 'must be a positive integer of steps, e.g. 4')
  if not 0 <= p_init <= 1:
    raise _err('train.ada_p_init', p_init, 'must be a probability in [0, 1]')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks a full config; raises a one-line ValueError naming the field and a valid choice.

  Args:
    config: a config with the `base_config()` layout.

  Raises:
    ConfigError: (a ValueError) for the first invalid field found.
  """
  from gan_jax.core.losses import LOSSES  # pylint: disable=g-import-not-at-top
  from gan_jax.models import DTYPES  # pylint: disable=g-import-not-at-top
  from gan_jax.models import registry as models  # pylint: disable=g-import-not-at-top

  t, d, m = config.train, config.data, config.model
  seed, k = config.get('seed', 0), config.get('num_replicas', 1)
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise _err('seed', seed, 'must be an integer')
  if isinstance(k, int) and not -(2**63) <= seed <= 2**63 - max(k, 1):
    raise _err('seed', seed, f'must fit in 64 bits, from -2**63 to 2**63 - {max(k, 1)}')
  model = models.get(m.name)  # the registry entry (gan_jax.models.registry)
  dtype = config.get('dtype', 'float32')  # missing in configs written before the field
  if not isinstance(dtype, str) or dtype not in DTYPES:
    raise _err('dtype', dtype, "choose 'float32' or 'bfloat16' (mixed precision)")
  if t.loss not in LOSSES:
    raise _err('train.loss', t.loss, f'choose one of {sorted(LOSSES)}')
  for field, value in (('model.latent_dim', m.latent_dim), ('model.g_width', m.g_width),
                       ('model.d_width', m.d_width), ('train.steps', t.steps),
                       ('train.batch_size', t.batch_size), ('train.n_critic', t.n_critic),
                       ('data.image_size', d.image_size), ('log_every', config.log_every),
                       ('sample_every', config.sample_every),
                       ('checkpoint_every', config.checkpoint_every),
                       ('keep_checkpoints', config.keep_checkpoints),
                       ('num_samples', config.num_samples),
                       ('eval_num_samples', config.eval_num_samples),
                       ('eval.batch_size', config.eval.batch_size),
                       ('eval.kid_pr_samples', config.eval.kid_pr_samples),
                       ('eval.modes_num_samples', config.eval.modes_num_samples)):
    if value <= 0:
      raise _err(field, value, 'must be a positive integer')
  for field, value in (('train.g_lr', t.g_lr), ('train.d_lr', t.d_lr)):
    if not (value > 0 and math.isfinite(value)):
      raise _err(field, value, 'must be a positive finite learning rate, e.g. 2e-4')
  for field, value in (('train.b1', t.b1), ('train.b2', t.b2)):
    if not 0 <= value < 1:
      raise _err(field, value, 'must be in [0, 1)')
  if not 0 <= t.ema_decay < 1:
    raise _err('train.ema_decay', t.ema_decay, 'must be in [0, 1), e.g. 0.999; 0 disables the EMA')
  from gan_jax.core import schedules  # pylint: disable=g-import-not-at-top  (JAX, lazily)

  schedules.check(t)  # train.schedules, ema_half_life_images, ema_rampup
  if not 0 <= t.lecam_decay < 1:
    raise _err('train.lecam_decay', t.lecam_decay, 'must be in [0, 1), e.g. 0.99')
  penalties.check_weights(t)
  penalties.check_interval(t)
  for field in ('clip', 'instance_noise'):
    value = t[field]
    if not (value >= 0 and math.isfinite(value)):
      raise _err(f'train.{field}', value, 'must be >= 0 (0 disables it)')
  if t.instance_noise_steps < 0:
    raise _err('train.instance_noise_steps', t.instance_noise_steps, 'must be >= 0 (0: fixed)')
  if not 0 <= t.label_smoothing < 1:
    raise _err('train.label_smoothing', t.label_smoothing, 'must be in [0, 1), e.g. 0.1')
  if t.label_smoothing and t.loss not in ('non_saturating', 'minimax'):
    raise _err('train.label_smoothing', t.label_smoothing, 'needs train.loss=non_saturating or '
               'minimax (a cross-entropy loss); set it to 0 for other losses')
  if t.diffaugment:
    from gan_jax.core.augment import parse_policy  # pylint: disable=g-import-not-at-top

    try:
      parse_policy(t.diffaugment)
    except ValueError as e:
      raise _err('train.diffaugment', t.diffaugment, str(e).rstrip('.')) from None
  _validate_augment(t)
  if config.on_nonfinite not in ('stop', 'rollback'):
    raise _err('on_nonfinite', config.on_nonfinite, "choose 'stop' or 'rollback'")
  if not 0 < config.rollback_lr_factor < 1:
    raise _err('rollback_lr_factor', config.rollback_lr_factor, 'must be in (0, 1), e.g. 0.5')
  if config.num_replicas < 1:
    raise _err('num_replicas', config.num_replicas, 'must be a positive integer (1: one GAN)')
  if config.replica_values:
    if config.num_replicas < 2:
      raise _err('replica_values', config.replica_values, 'needs num_replicas > 1')
    parse_replica_values(config.replica_values, config.num_replicas)
  if config.get('replica_impl', 'auto') not in REPLICA_IMPLS:
    raise _err('replica_impl', config.replica_impl, f"choose one of {', '.join(REPLICA_IMPLS)}")
  if config.max_rollbacks < 0:
    raise _err('max_rollbacks', config.max_rollbacks, 'must be >= 0, e.g. 3')
  if d.channels not in (1, 3):
    raise _err('data.channels', d.channels, 'must be 1 (grayscale) or 3 (RGB)')
  # What the model's entry declares: image size and channels, its D options (pack,
  # minibatch_std); its class conditioning is checked with the conditioning fields below.
  model.check_shape(config)
  if t.batch_size % m.pack:
    raise _err('train.batch_size', t.batch_size, f'must be a multiple of model.pack={m.pack} '
               f'(D judges packs of {m.pack} images); e.g. train.batch_size='
               f'{max(m.pack, t.batch_size // m.pack * m.pack)}')
  penalties.check_pack(t, m.pack)  # the penalties that need one logit per image
  if m.minibatch_std:
    packs = t.batch_size // m.pack  # D's batch; the groups hold min(minibatch_std, packs).
    group = min(m.minibatch_std, packs)
    if packs % group:
      raise _err('model.minibatch_std', m.minibatch_std, f'its group size must divide the '
                 f'batch D sees, train.batch_size / model.pack = {packs}; use a divisor of '
                 f'{packs}, e.g. {math.gcd(packs, m.minibatch_std)}, or change train.batch_size')
  if not isinstance(config.train.get('reuse_fakes', False), bool):
    raise _err('train.reuse_fakes', config.train.reuse_fakes, 'must be true or false')
  if config.train.get('cpu_scheduler', 'concurrency') not in ('concurrency', 'memory'):
    raise _err('train.cpu_scheduler', config.train.cpu_scheduler, "use 'concurrency' or 'memory'")
  _validate_conditioning(config)
  ema_batch_stats(config)
  if config.eval_every < 0:
    raise _err('eval_every', config.eval_every, 'must be >= 0 (0 disables evaluation)')
  if config.eval_every:
    from gan_jax.metrics import evaluate, registry  # pylint: disable=g-import-not-at-top

    try:
      registry.parse(config.eval.metrics)  # each metric is a registry entry
      evaluate.resolve_feature_net_name(config.eval.feature_net, d.name)
    except ConfigError as e:
      raise ConfigError(f'eval.{e}') from None
  from gan_jax.data import sources as data_sources  # pylint: disable=g-import-not-at-top

  data_sources.check(config)  # the data source's own checks, e.g. a folder's options and path
  if d.data_dir is not None and not os.path.isdir(os.path.expanduser(d.data_dir)):
    raise _err('data.data_dir', d.data_dir, 'no such folder; point it at a TFDS data dir '
               '(e.g. ../shared/tfds) or leave it unset to use $TFDS_DATA_DIR')
  if config.num_samples > MAX_GRID_IMAGES:
    raise _err('num_samples', config.num_samples, f'a sample grid holds at most '
               f'{MAX_GRID_IMAGES:,} images (they are generated in one batch); use fewer, and '
               '`gan-jax sample` for more')
  _check_model_size(config)


def _check_model_size(config: ml_collections.ConfigDict) -> None:
  """Refuses G + D over MAX_PARAMS parameters, counted from shapes alone (nothing is
  allocated): a huge model.latent_dim or width otherwise dies in XLA's allocator."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from gan_jax.models import MODELS, build_models  # pylint: disable=g-import-not-at-top

  d, m = config.data, config.model
  shape = (d.image_size, d.image_size, d.channels)
  try:
    g, dis = nnx.eval_shape(lambda: build_models(m, shape, 0))
  except (ValueError, TypeError, KeyError, AttributeError):
    return  # an invalid model: building it reports that in its own words
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state((g, dis), nnx.Param)))
  if n > MAX_PARAMS:
    fields = ', '.join(f'model.{f}' for f in MODELS[m.name].size_fields)
    raise ConfigError(
      f'the model would have {n:,} parameters (G + D), over the {MAX_PARAMS:,} gan-jax trains '
      f'(about {5 * 4 * n / 2**30:,.0f} GiB of training state in float32): use smaller '
      f'{fields} (model.latent_dim={m.latent_dim}).'
    )
