"""The discriminator penalties, registered once: each entry declares its own constraints.

On the model of `gan_jax.core.losses.GANLoss`: a `Penalty` names its config field (its weight in
the config's `train` block; 0 = off), the function in `gan_jax.core.regularizers` that computes
it, the factor its weight is multiplied by, whether it needs one D output per image (so it
cannot be combined with PacGAN's packs), whether its weight may differ between the replicas
of one compiled step (it then enters the step as a traced value), whether it may be applied
lazily (every `train.penalty_interval`-th step), and which entries of `GANState.extras` it
keeps. `gan_jax.config.validate`, the replica fields, the step's
hyperparameters and the state's extras all read this table instead of their own list of
names.

| name  | field          | paper                                  |
|-------|----------------|----------------------------------------|
| gp    | `gp_weight`    | WGAN-GP, Gulrajani et al. 2017, eq. 3  |
| r1    | `r1_weight`    | R1, Mescheder et al. 2018, eq. 9       |
| r2    | `r2_weight`    | R2, Mescheder et al. 2018, eq. 10      |
| lecam | `lecam_weight` | LeCam, Tseng et al. 2021, eq. 3        |

This module imports neither JAX nor TensorFlow (the config reads it), so an entry names
its `gan_jax.core.regularizers` function rather than holding it; `Penalty.fn` resolves it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from gan_jax.errors import ConfigError


class Penalty(NamedTuple):
  """A discriminator penalty: what it is called, where its weight lives, what it allows.

  Attributes:
    name: short name, e.g. 'r1' (also the key of `PENALTIES`).
    field: the weight's field in the config's `train` block, e.g. 'r1_weight'; 0 turns the
      penalty off, > 0 adds `scale * weight * value` to D's loss.
    function: the name of the function in `gan_jax.core.regularizers` that computes its value, a
      float32 scalar (see `fn`).
    scale: the factor of the weight: 0.5 for R1 and R2 (gamma / 2), else 1.
    per_image: it needs one D output per image (the gradient penalties differentiate D's
      output for each image), so `model.pack > 1` (one output per pack) refuses it.
    per_replica: its weight may differ between the replicas of one compiled step
      (`gan_jax.training.replicas`): the step takes it as a traced hyperparameter.
    lazy: it may be computed only every `train.penalty_interval`-th step with its weight
      multiplied by the interval (lazy regularization, Karras et al. 2020, "Analyzing and
      Improving the Image Quality of StyleGAN", section 4): a penalty without state whose
      expected contribution per step is then unchanged. LeCam is not lazy: its EMAs follow
      every D update.
    state: the `GANState.extras` entries it keeps while on (float32 scalars, 0 at step 0),
      e.g. LeCam's EMAs of D's mean outputs; turning it on or off changes the state's
      structure, so a run cannot resume across that.
    paper: the reference, for messages and docs.
  """

  name: str
  field: str
  function: str
  scale: float = 1.0
  per_image: bool = False
  per_replica: bool = False
  lazy: bool = False
  state: tuple[str, ...] = ()
  paper: str = ''

  @property
  def fn(self) -> Callable[..., Any]:
    """The `gan_jax.core.regularizers` function (imports JAX on first use)."""
    from gan_jax.core import regularizers  # pylint: disable=g-import-not-at-top  (JAX, lazily)

    return getattr(regularizers, self.function)


PENALTIES: dict[str, Penalty] = {
  p.name: p
  for p in (
    Penalty(
      'gp',
      'gp_weight',
      'gradient_penalty',
      per_image=True,
      per_replica=True,
      lazy=True,
      paper='Gulrajani et al. 2017, eq. 3',
    ),
    Penalty(
      'r1',
      'r1_weight',
      'r1_penalty',
      scale=0.5,
      per_image=True,
      per_replica=True,
      lazy=True,
      paper='Mescheder et al. 2018, eq. 9',
    ),
    Penalty(
      'r2',
      'r2_weight',
      'r2_penalty',
      scale=0.5,
      per_image=True,
      per_replica=True,
      lazy=True,
      paper='Mescheder et al. 2018, eq. 10',
    ),
    Penalty(
      'lecam',
      'lecam_weight',
      'lecam_penalty',
      state=('lecam_ema_real', 'lecam_ema_fake'),
      paper='Tseng et al. 2021, eq. 3',
    ),
  )
}

# The weight fields of the penalties that may differ between replicas, in registry order.
REPLICA_WEIGHT_FIELDS: tuple[str, ...] = tuple(p.field for p in PENALTIES.values() if p.per_replica)

# The weight fields of the penalties that `train.penalty_interval` applies lazily.
LAZY_WEIGHT_FIELDS: tuple[str, ...] = tuple(p.field for p in PENALTIES.values() if p.lazy)


def weight_fields() -> tuple[str, ...]:
  """Every penalty's weight field in the `train` block, in registry order ('gp_weight', ...)."""
  return tuple(p.field for p in PENALTIES.values())


def active(train_config: Any) -> list[Penalty]:
  """The penalties a config's `train` block turns on (weight > 0), in registry order; a
  field missing from an older config counts as 0."""
  return [p for p in PENALTIES.values() if (train_config.get(p.field, 0.0) or 0.0) > 0]


def check_weights(train_config: Any) -> None:
  """Each penalty's weight must be a finite number >= 0.

  Raises:
    ConfigError: naming the first bad field, e.g. "train.r1_weight=-1.0 is invalid: must
      be >= 0 (0 disables it)."
  """
  for p in PENALTIES.values():
    value = train_config.get(p.field, 0.0)
    if not (value >= 0 and math.isfinite(value)):
      raise ConfigError(f'train.{p.field}={value!r} is invalid: must be >= 0 (0 disables it).')


def check_pack(train_config: Any, pack: int) -> None:
  """A packing D (`model.pack > 1`, one output per pack) refuses the per-image penalties.

  Raises:
    ConfigError: naming `model.pack` and the first per-image penalty that is on.
  """
  if pack <= 1:
    return
  for p in active(train_config):
    if p.per_image:
      weight = train_config[p.field]
      raise ConfigError(
        f'model.pack={pack!r} is invalid: D gives one logit per pack, but train.{p.field}='
        f'{weight} needs one logit per image; set model.pack=1 or train.{p.field}=0.'
      )


def check_interval(train_config: Any) -> None:
  """`train.penalty_interval` (lazy regularization) must be an integer >= 1, and > 1 only
  with a lazy penalty on (else it would change nothing). A field missing from an older
  config counts as 1.

  Raises:
    ConfigError: naming the field, its value and what to set instead.
  """
  interval = train_config.get('penalty_interval', 1)
  if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
    raise ConfigError(
      f'train.penalty_interval={interval!r} is invalid: must be an integer >= 1 (1 computes '
      'the penalties every step; 16 is StyleGAN2\'s lazy R1).'
    )
  lazy = [p.field for p in active(train_config) if p.lazy]
  if interval > 1 and not lazy:
    fields = ', '.join(f'train.{f}' for f in LAZY_WEIGHT_FIELDS)
    raise ConfigError(
      f'train.penalty_interval={interval} has nothing to apply lazily: {fields} are all 0. '
      'Turn one of them on, or set train.penalty_interval=1.'
    )
