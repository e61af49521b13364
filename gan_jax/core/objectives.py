"""The discriminator's and the generator's objectives of one GAN train step, as pure functions.

`gan_jax.core.train_step` composes them into the step (the updates, the EMA, the jit); here is
what each player minimises, with every setting an explicit argument:

  * `d_input`: what D sees of a batch, DiffAugment (Zhao et al. 2020) or ADA (Karras et al.
    2020, `gan_jax.core.ada`, with p from `state.extras`) then instance noise (Sonderby et al.
    2017), the same for real and generated images, in the D and G steps.
  * `d_objective`: D's loss, the adversarial loss (`gan_jax.core.losses`, label-smoothed by
    `discriminator_loss` if asked) + the active penalties (`d_penalty`: GP, R1, R2 of
    `gan_jax.core.penalties`; `lecam_term`: LeCam, whose EMAs live in `state.extras`) + the
    weighted AC-GAN class loss (Odena et al. 2017).
  * `g_adversarial` (G's loss as a function of its images) and `g_objective` (the same as a
    function of G's parameters): the adversarial loss, with D on a real batch as well when
    the loss declares `GANLoss.g_needs_real`, + the weighted AC-GAN class loss.

`Stabilizers` holds the discriminator-side settings these functions read. Class-conditional
GANs pass int32 `[B]` labels (`y_real`, `y_fake`); unconditional ones pass None.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from gan_jax.core import ada, penalties, regularizers
from gan_jax.core.augment import diff_augment
from gan_jax.core.losses import GANLoss, class_cross_entropy, smoothed_d_minimax_loss
from gan_jax.core.state import GAN

Array = jax.Array
PyTree = Any


@dataclasses.dataclass(frozen=True)
class Stabilizers:
  """The discriminator-side regularizers and stabilizers of one train step (all off = 0/'').

  Attributes:
    gp_weight: lambda of the gradient penalty on real/fake interpolates (Gulrajani et al.
      2017, eq. 3; they use 10 with the Wasserstein loss).
    r1_weight: gamma of R1 on real images: adds gamma/2 * E||grad_x D(x)||^2 (Mescheder et
      al. 2018, eq. 9).
    r2_weight: gamma of R2, the same on generated images (Mescheder et al. 2018, eq. 10).
    clip: WGAN weight clipping, every D parameter into [-clip, clip] after each D update
      (Arjovsky et al. 2017, Algorithm 1, c = 0.01); 0 disables.
    label_smoothing: one-sided label smoothing s: real target 1 - s (Salimans et al. 2016,
      section 3.4); cross-entropy losses only.
    instance_noise: sigma of Gaussian noise added to every D input, real and generated, in
      pixel units of [-1, 1] images (Sonderby et al. 2017; Arjovsky & Bottou 2017).
    instance_noise_steps: sigma decays linearly to 0 over this many steps; 0 keeps it fixed.
    diffaugment: DiffAugment policy applied to every D input, real and generated, in the D
      and the G step (Zhao et al. 2020), e.g. 'color,translation,cutout'; '' disables.
    lecam_weight: lambda of the LeCam regularizer on D's outputs (Tseng et al. 2021, eq. 3):
      adds lambda * R_LC, anchored to EMAs of D's mean real and fake outputs kept in
      `state.extras` and updated (with `lecam_decay`) from each D update's outputs first,
      as in the authors' code.
    lecam_decay: decay of those EMAs (0.99 in the paper).
    augment: ADA (Karras et al. 2020, `gan_jax.core.ada`) on every D input, real and
      generated, in the D and the G step: 'ada' (p in `state.extras['ada_p']`, adjusted from
      the signs of D's real outputs, which each D update counts), 'fixed' (p = `ada_p_init`,
      or times `train.schedules`' `ada_p` factor, the objectives' `ada_p`) or '' (off). Not
      with `diffaugment`.
    ada_transforms: ADA's transforms (`gan_jax.core.ada.parse_transforms`), e.g. 'bgc'.
    ada_target, ada_kimg, ada_interval: ADA's p update (`gan_jax.core.ada.adjust`).
    ada_p_init: p at step 0 ('ada'), or the constant p ('fixed').
  """

  gp_weight: float = 0.0
  r1_weight: float = 0.0
  r2_weight: float = 0.0
  clip: float = 0.0
  label_smoothing: float = 0.0
  instance_noise: float = 0.0
  instance_noise_steps: int = 0
  diffaugment: str = ''
  lecam_weight: float = 0.0
  lecam_decay: float = 0.99
  augment: str = ''
  ada_transforms: str = ada.DEFAULT_TRANSFORMS
  ada_target: float = 0.6
  ada_kimg: float = 500.0
  ada_interval: int = 4
  ada_p_init: float = 0.0

  @classmethod
  def from_config(cls, train_config: Any) -> Stabilizers:
    """From a config's `train` block (missing fields count as off)."""
    return cls(**{f.name: train_config.get(f.name, f.default) for f in dataclasses.fields(cls)})

  @property
  def penalised(self) -> bool:
    """Whether any penalty of `gan_jax.core.penalties.PENALTIES` is on (weight > 0)."""
    return any(getattr(self, p.field) for p in penalties.PENALTIES.values())


class DOutputs(NamedTuple):
  """What one evaluation of `d_objective` reports besides its value.

  Attributes:
    stats: D's BatchNorm statistics after the real and the generated pass.
    real_logits: float32 `[B]`, D's outputs on the (augmented, noised) real images.
    fake_logits: float32 `[B]`, the same on the generated images.
    penalty: float32 scalar, the weighted penalties added to the loss (0 when none is on).
    adv_loss: float32 scalar, the adversarial loss alone.
    extras: `state.extras` after this update (the LeCam EMAs, updated when LeCam is on).
    class_loss: float32 scalar, CE(real) + CE(fake) of an AC-GAN D, unweighted; 0 otherwise.
  """

  stats: PyTree
  real_logits: Array
  fake_logits: Array
  penalty: Array
  adv_loss: Array
  extras: dict[str, Array]
  class_loss: Array


class GOutputs(NamedTuple):
  """What one evaluation of `g_adversarial` reports besides its value.

  Attributes:
    adv_loss: float32 scalar, the adversarial G loss alone.
    class_loss: float32 scalar, CE(fake) of an AC-GAN D, unweighted; 0 otherwise.
  """

  adv_loss: Array
  class_loss: Array


def discriminator_loss(loss: GANLoss, stabilizers: Stabilizers) -> Callable[[Array, Array], Array]:
  """D's adversarial loss `d(real_logits, fake_logits)`: `loss.d`, or with one-sided label
  smoothing (`gan_jax.core.losses.smoothed_d_minimax_loss`) when `stabilizers.label_smoothing`.

  Raises:
    ValueError: label smoothing asked of a loss that is not a cross-entropy
      (`GANLoss.probabilistic` False), or a smoothing outside [0, 1).
  """
  s = stabilizers.label_smoothing
  if not s:
    return loss.d
  if not loss.probabilistic:
    raise ValueError(
      f'train.label_smoothing={s} needs a cross-entropy loss '
      "(train.loss='non_saturating' or 'minimax')."
    )
  return smoothed_d_minimax_loss(s)


def d_input(
  images: Array, key: Array, step: Array, stabilizers: Stabilizers, ada_p: Array | None = None
) -> Array:
  """What D sees of `images`: DiffAugment or ADA, then instance noise (all off by default).

  Args:
    images: float32 `[B, H, W, C]` in [-1, 1] (noise may take them outside).
    key: PRNG key; split into the augmentation's and the noise's.
    step: float32 scalar, the train step (for the noise's linear decay).
    stabilizers: `diffaugment`, `augment`, `ada_transforms`, `instance_noise` and
      `instance_noise_steps` are read.
    ada_p: float32 scalar, ADA's p (`gan_jax.core.ada.probability`); used when
      `stabilizers.augment` is on.

  Returns:
    float32 `[B, H, W, C]`; `images` itself when both are off.
  """
  st = stabilizers
  k_aug, k_noise = jax.random.split(key)
  if st.diffaugment:
    images = diff_augment(images, k_aug, st.diffaugment)
  if st.augment:
    images = ada.augment(images, k_aug, ada_p, st.ada_transforms)
  if st.instance_noise:
    sigma = jnp.float32(st.instance_noise)
    if st.instance_noise_steps:
      sigma = sigma * jnp.maximum(0.0, 1.0 - step / st.instance_noise_steps)
    images = images + sigma * jax.random.normal(k_noise, images.shape, images.dtype)
  return images


def judge(
  gan: GAN, d_params: PyTree, d_stats: PyTree, images: Array, labels: Array | None
) -> tuple[Array, Array | None, PyTree]:
  """D in train mode on one batch: (logits float32 `[B]`, class logits float32 `[B, K]`
  of an AC-GAN D or None, new statistics). An AC-GAN D does not read `labels`."""
  if gan.acgan:
    return gan.discriminate_with_classes(d_params, d_stats, images, train=True)
  logits, d_stats = gan.discriminate(d_params, d_stats, images, labels, train=True)
  return logits, None, d_stats


def d_penalty(
  gan: GAN,
  stabilizers: Stabilizers,
  d_params: PyTree,
  d_stats: PyTree,
  real: Array,
  fake: Array,
  y_real: Array | None,
  y_fake: Array | None,
  key: Array,
  hp: dict[str, Array],
) -> Array:
  """The weighted gradient penalties on D's inputs: GP (Gulrajani et al. 2017, eq. 3), R1
  and R2 (Mescheder et al. 2018, eqs. 9-10, weighted gamma/2), each only if its weight in
  `stabilizers` is non-zero; `hp['gp_weight']` etc. (traced) then replace the weight.

  D runs with `d_stats` and its new statistics are discarded (with BatchNorm in train mode
  the samples of a batch are coupled). GP interpolates are judged as the real images'
  classes, R1 with `y_real`, R2 with `y_fake`.

  Returns:
    float32 scalar >= 0 (0 when no gradient penalty is on).
  """
  st = stabilizers
  penalty = jnp.float32(0.0)
  if not st.penalised:
    return penalty

  def d_apply_as(labels):
    return lambda p, x: gan.discriminate(p, d_stats, x, labels, train=True)[0]

  d_apply = d_apply_as(y_real)
  if st.gp_weight:
    gp = regularizers.gradient_penalty(d_apply, d_params, real, fake, key)
    penalty += hp.get('gp_weight', st.gp_weight) * gp
  if st.r1_weight:
    r1 = regularizers.r1_penalty(d_apply, d_params, real)
    penalty += 0.5 * hp.get('r1_weight', st.r1_weight) * r1
  if st.r2_weight:
    r2 = regularizers.r2_penalty(d_apply_as(y_fake), d_params, fake)
    penalty += 0.5 * hp.get('r2_weight', st.r2_weight) * r2
  return penalty


def lecam_term(
  stabilizers: Stabilizers, extras: dict[str, Array], real_logits: Array, fake_logits: Array
) -> tuple[Array, dict[str, Array]]:
  """The LeCam regularizer (Tseng et al. 2021, eq. 3), unweighted, and the updated EMAs.

  The EMAs of D's mean real and fake outputs (`extras['lecam_ema_real']`,
  `extras['lecam_ema_fake']`, float32 scalars) are first updated from these logits with
  `stabilizers.lecam_decay`, then anchor the penalty, as in the authors' code.

  Returns:
    (float32 scalar >= 0, the new extras).
  """
  decay = stabilizers.lecam_decay
  extras = {
    **extras,
    'lecam_ema_real': regularizers.update_lecam_ema(extras['lecam_ema_real'], real_logits, decay),
    'lecam_ema_fake': regularizers.update_lecam_ema(extras['lecam_ema_fake'], fake_logits, decay),
  }
  lecam = regularizers.lecam_penalty(
    real_logits, fake_logits, extras['lecam_ema_real'], extras['lecam_ema_fake']
  )
  return lecam, extras


def d_objective(
  d_params: PyTree,
  d_stats: PyTree,
  real: Array,
  fake: Array,
  y_real: Array | None,
  y_fake: Array | None,
  key: Array,
  step: Array,
  hp: dict[str, Array],
  extras: dict[str, Array],
  *,
  gan: GAN,
  d_loss: Callable[[Array, Array], Array],
  stabilizers: Stabilizers,
  aux_weight: float,
  ada_p: Array | None = None,
) -> tuple[Array, DOutputs]:
  """D's loss for one update, differentiable in `d_params`.

  `adversarial + penalties + aux_weight * (CE(real) + CE(fake))` (the last with an AC-GAN
  D only): D judges `d_input` of the real and the generated batch, real first.

  Args:
    d_params, d_stats: D's parameters and BatchNorm statistics.
    real: float32 `[B, H, W, C]` in [-1, 1], a real batch.
    fake: float32 `[B, H, W, C]`, generated images (no gradient to G is needed).
    y_real, y_fake: int32 `[B]` labels of a conditional GAN, None otherwise.
    key: PRNG key, split into the real and the generated batch's `d_input` and GP's.
    step: float32 scalar, the train step.
    hp: traced hyperparameters that replace penalty weights (`d_penalty`); may be empty.
    extras: `state.extras` (the LeCam EMAs when LeCam is on, ADA's p and sign counts when
      `stabilizers.augment == 'ada'`).
    gan: G and D as pure functions.
    d_loss: the adversarial D loss (`discriminator_loss`).
    stabilizers: the penalties and input transforms.
    aux_weight: weight of the AC-GAN class loss, >= 0.
    ada_p: float32 scalar, the step's scheduled p with `stabilizers.augment == 'fixed'`
      (`gan_jax.core.schedules.Schedules.augment_probability`); None: `ada_p_init`.

  Returns:
    (float32 scalar total loss, `DOutputs`).
  """
  st = stabilizers
  k_real, k_fake, k_gp = jax.random.split(key, 3)
  p = ada.probability(st.augment, st.ada_p_init, extras, ada_p)
  real, fake = d_input(real, k_real, step, st, p), d_input(fake, k_fake, step, st, p)
  stats_in = d_stats
  real_logits, real_cls, d_stats = judge(gan, d_params, d_stats, real, y_real)
  if st.augment == 'ada':
    extras = ada.count_signs(extras, real_logits)  # ADA's r_t (adjusted in the train step)
  fake_logits, fake_cls, d_stats = judge(gan, d_params, d_stats, fake, y_fake)
  d_aux = jnp.float32(0.0)
  if gan.acgan:
    d_aux = class_cross_entropy(real_cls, y_real) + class_cross_entropy(fake_cls, y_fake)
  adv_loss = d_loss(real_logits, fake_logits)
  penalty = d_penalty(gan, st, d_params, stats_in, real, fake, y_real, y_fake, k_gp, hp)
  if st.lecam_weight:
    lecam, extras = lecam_term(st, extras, real_logits, fake_logits)
    penalty += st.lecam_weight * lecam
  total = adv_loss + penalty
  if gan.acgan:
    total = total + aux_weight * d_aux
  return total, DOutputs(d_stats, real_logits, fake_logits, penalty, adv_loss, extras, d_aux)


def g_adversarial(
  fake: Array,
  y_fake: Array | None,
  d_params: PyTree,
  d_stats: PyTree,
  real: Array,
  y_real: Array | None,
  key: Array,
  step: Array,
  extras: dict[str, Array] | None = None,
  *,
  gan: GAN,
  loss: GANLoss,
  stabilizers: Stabilizers,
  aux_weight: float,
  ada_p: Array | None = None,
) -> tuple[Array, GOutputs]:
  """G's loss as a function of its images, differentiable in `fake`.

  `loss.g(D(fake), D(real)) + aux_weight * CE(fake)` (the last with an AC-GAN D only). D
  judges `d_input` of the images; it judges the real batch too only when the loss declares
  `GANLoss.g_needs_real` (no gradient reaches G through it). D's statistics from these
  passes are discarded: the G step does not change D.

  Args:
    fake: float32 `[B, H, W, C]`, G's images.
    y_fake: int32 `[B]`, the classes they were made for (conditional GANs), else None.
    d_params, d_stats: D after this step's D updates.
    real: float32 `[B, H, W, C]`, the last D update's real batch; y_real its labels or None.
    key: PRNG key, split into the generated and the real batch's `d_input`.
    step: float32 scalar, the train step.
    extras: `state.extras` after this step's D updates (ADA's p); None when ADA is not
      'ada'.
    gan, loss, stabilizers, aux_weight, ada_p: as in `d_objective`; `loss.g` is G's loss.

  Returns:
    (float32 scalar total loss, `GOutputs`).
  """
  k_fake, k_real = jax.random.split(key)
  p = ada.probability(stabilizers.augment, stabilizers.ada_p_init, extras or {}, ada_p)
  fake = d_input(fake, k_fake, step, stabilizers, p)
  g_aux = jnp.float32(0.0)
  if gan.acgan:
    fake_logits, fake_cls, _ = gan.discriminate_with_classes(d_params, d_stats, fake, train=True)
    g_aux = class_cross_entropy(fake_cls, y_fake)
  else:
    fake_logits, _ = gan.discriminate(d_params, d_stats, fake, y_fake, train=True)
  real_logits = None
  if loss.g_needs_real:
    real_in = d_input(real, k_real, step, stabilizers, p)
    real_logits, _ = gan.discriminate(d_params, d_stats, real_in, y_real, train=True)
  g_loss = loss.g(fake_logits, real_logits)
  total = g_loss + aux_weight * g_aux if gan.acgan else g_loss
  return total, GOutputs(g_loss, g_aux)


def g_objective(
  g_params: PyTree,
  g_stats: PyTree,
  z: Array,
  y_fake: Array | None,
  d_params: PyTree,
  d_stats: PyTree,
  real: Array,
  y_real: Array | None,
  key: Array,
  step: Array,
  extras: dict[str, Array] | None = None,
  *,
  gan: GAN,
  loss: GANLoss,
  stabilizers: Stabilizers,
  aux_weight: float,
  ada_p: Array | None = None,
) -> tuple[Array, tuple[PyTree, GOutputs]]:
  """G's loss as a function of its parameters: G (with BatchNorm statistics `g_stats`)
  makes images from `z` (float32 `[B, latent_dim]`) and `y_fake`, then `g_adversarial`
  judges them; the other arguments are `g_adversarial`'s.

  Returns:
    (float32 scalar total loss, (G's new BatchNorm statistics, `GOutputs`)).
  """
  fake, g_stats = gan.generate(g_params, g_stats, z, y_fake, train=True)
  total, out = g_adversarial(
    fake,
    y_fake,
    d_params,
    d_stats,
    real,
    y_real,
    key,
    step,
    extras,
    gan=gan,
    loss=loss,
    stabilizers=stabilizers,
    aux_weight=aux_weight,
    ada_p=ada_p,
  )
  return total, (g_stats, out)
