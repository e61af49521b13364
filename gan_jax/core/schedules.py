"""Schedules of continuous hyperparameters, and the EMA horizon as a half-life in images.

`train.schedules` makes a hyperparameter a function of the train step: each entry names one
or more fields and a curve of *factors* that multiply the field's value, e.g.

    train.g_lr = 2e-4
    train.schedules = 'g_lr,d_lr=cosine:1->0.25@500kimg; r1_weight=linear:0->1@10kimg'

runs both learning rates from 2e-4 to 5e-5 along a half cosine over the first 500,000
images (then 5e-5), and ramps the R1 weight up from 0 to `train.r1_weight` over 10,000
images. A curve is one or more segments, joined one after the other
(`optax.join_schedules`); after the last one its final value holds:

  `linear:A->B@N`   A to B linearly over N (`optax.linear_schedule`): a warm-up (0->1) or a
                    linear decay (1->0)
  `cosine:A->B@N`   A to B along a half cosine, B + (A - B) (1 + cos(pi t / N)) / 2
                    (`optax.cosine_decay_schedule`): the R3GAN form (Huang et al. 2024,
                    a base value going to a final value over N images) and cosine decay
  `constant:A@N`    A for N (`optax.constant_schedule`); the last segment may omit `@N`

N is a number with a unit: `img`, `kimg` (1,000 images), `Mimg` (10^6 images) or `step`
(`steps`). Images count one batch per train step: at step s the run has seen
`s * train.batch_size` images, whatever `train.n_critic` (the n_critic D updates of a step
share the step's values; D's optimizer counts its updates, and its schedule reads
`count // n_critic`, the step). A warm-up then cosine decay is two segments,
`linear:0->1@5kimg,cosine:1->0@500kimg` (`optax.warmup_cosine_decay_schedule`'s curve).

Factors rather than values, as big_vision's `lr` times its `schedule`: the field stays the
base value, so what scales or varies the field still works on a scheduled one: a rollback's
learning-rate factor (`on_nonfinite='rollback'`) and per-replica values
(`replica_values='train.r1_weight=1,10'`: replica i runs `r1_weight_i * factor(step)`).

Every schedule is a pure function of the step, which the training state holds, so a
resumed run continues bit for bit; the schedules are not state. The fields (`FIELDS`):
  g_lr, d_lr       Adam's learning rate as an optax schedule (`optax.adam(learning_rate=fn)`;
                   it adds a step count to that optimizer's state)
  b2               Adam's beta2, through `optax.inject_hyperparams` (the optimizer state then
                   has another structure: such a run resumes only from its own checkpoints)
  gp_weight, r1_weight, r2_weight
                   the penalty weights, multiplied inside the step (the penalty must be on)
  ema_half_life_images
                   the EMA half-life (below)
  ada_p            ADA's augmentation probability with `train.augment = 'fixed'`:
                   p(s) = train.ada_p_init * factor(s) (e.g. `ada_p=linear:0->1@100kimg`
                   with ada_p_init = 0.6 ramps p from 0 to 0.6), logged as the metric
                   `ada_p`. Refused, in one line, with `train.augment = 'ada'` (p is then
                   adapted from D's outputs) and without ADA (DiffAugment has no
                   probability); the schedule may not take p above 1 (no clipping)

The EMA horizon as a half-life in images (Karras et al. 2020, StyleGAN2-ADA, training_loop.py):
with `train.ema_half_life_images = H > 0` the generator EMA's decay at step s is

    beta(s) = 0.5 ** (B / max(h(s), 1e-8)),  h(s) = H * factor(s), and with
    `train.ema_rampup = r > 0`: h(s) = min(h(s), s * B * r)

(B = `train.batch_size`, s * B the images seen before this step), replacing the constant
`train.ema_decay`; the ramp-up makes the EMA follow G closely early in training (beta(0) = 0).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gan_jax.core import penalties
from gan_jax.errors import ConfigError

# The fields a schedule may multiply (train block), in the order the docs list them.
FIELDS: tuple[str, ...] = (
  'g_lr',
  'd_lr',
  'b2',
  *penalties.REPLICA_WEIGHT_FIELDS,
  'ema_half_life_images',
  'ada_p',
)
# A field whose base value has another name in the train block: {field: train.<name>}.
_BASES = {'ada_p': 'ada_p_init'}
KINDS = ('constant', 'linear', 'cosine')
# Images per unit of a segment's length; 'step' is train.batch_size images.
UNITS = {'img': 1.0, 'kimg': 1e3, 'Mimg': 1e6, 'step': None, 'steps': None}
# StyleGAN2-ADA's floor of the half-life in images (beta = 0 at a ramped-up step 0).
_MIN_HALF_LIFE = 1e-8

_LENGTH = re.compile(r'^(?P<n>[0-9.]+(?:[eE][+-]?[0-9]+)?)(?P<unit>[A-Za-z]+)$')


class Segment(NamedTuple):
  """One piece of a schedule: factors from `start` to `end` over `length` units.

  Attributes:
    kind: 'constant', 'linear' or 'cosine'.
    start: the factor at the segment's start (>= 0).
    end: the factor at its end (`start` for 'constant').
    length: how long it lasts, in `unit`s (> 0); inf for a final constant without `@N`.
    unit: 'img', 'kimg', 'Mimg', 'step' or 'steps'.
  """

  kind: str
  start: float
  end: float
  length: float
  unit: str

  def images(self, batch_size: int) -> float:
    """The segment's length in images (steps count `batch_size` images each)."""
    per = UNITS[self.unit]
    return self.length * (batch_size if per is None else per)


def _error(spec: str, need: str) -> ConfigError:
  return ConfigError(f'train.schedules={spec!r} is invalid: {need}.')


def _number(spec: str, text: str, what: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise _error(spec, f'{what} {text.strip()!r} is not a number') from None
  if not math.isfinite(value):
    raise _error(spec, f'{what} {text.strip()!r} must be finite')
  return value


def _parse_segment(spec: str, text: str, last: bool) -> Segment:
  text = text.replace(' ', '')
  kind, colon, rest = text.partition(':')
  if not colon:
    raise _error(spec, f'{text!r} is not KIND:A->B@N (e.g. cosine:1->0.25@500kimg)')
  if kind not in KINDS:
    raise _error(spec, f'unknown schedule {kind!r} in {text!r}; choose {", ".join(KINDS)}')
  values, at, length_text = rest.partition('@')
  start_text, arrow, end_text = values.partition('->')
  start = _number(spec, start_text, 'factor')
  if kind == 'constant':
    if arrow:
      raise _error(spec, f'{text!r}: a constant has one value, constant:A@N')
    end = start
  elif not arrow:
    raise _error(spec, f'{text!r}: {kind} needs a start and an end, {kind}:A->B@N')
  else:
    end = _number(spec, end_text, 'factor')
  if start < 0 or end < 0:
    raise _error(spec, f'{text!r}: factors must be >= 0')
  if not at:
    if kind == 'constant' and last:
      return Segment(kind, start, end, math.inf, 'step')
    raise _error(spec, f'{text!r} needs a length, @N with a unit (e.g. @500kimg)')
  m = _LENGTH.match(length_text)
  if not m or m['unit'] not in UNITS:
    raise _error(
      spec,
      f'{text!r}: the length {length_text!r} is not N with a unit from '
      f'{", ".join(UNITS)} (e.g. 500kimg)',
    )
  length = _number(spec, m['n'], 'length')
  if length <= 0:
    raise _error(spec, f'{text!r}: the length must be > 0')
  return Segment(kind, start, end, length, m['unit'])


def parse(spec: str) -> dict[str, tuple[Segment, ...]]:
  """Parses `train.schedules`, e.g. 'g_lr,d_lr=cosine:1->0.25@500kimg; r1_weight=linear:0->1@10kimg'.

  Args:
    spec: entries `FIELD[,FIELD...]=SEGMENT[,SEGMENT...]` separated by ';' (see the module
      docstring); '' has none.

  Returns:
    {field: its segments}, fields from `FIELDS`.

  Raises:
    ConfigError: one line naming what is wrong: an unknown or repeated field, an unknown
      kind or unit, a missing length, a factor that is not a finite number >= 0.
  """
  if not isinstance(spec, str):
    raise _error(spec, "must be a string such as 'g_lr=cosine:1->0.25@500kimg'")
  out: dict[str, tuple[Segment, ...]] = {}
  for entry in (e.strip() for e in spec.split(';')):
    if not entry:
      continue
    names, sep, curve = entry.partition('=')
    if not sep or not curve.strip():
      raise _error(spec, f'{entry!r} is not FIELD=KIND:A->B@N (e.g. g_lr=cosine:1->0.25@500kimg)')
    parts = curve.split(',')
    segments = tuple(_parse_segment(spec, p, i == len(parts) - 1) for i, p in enumerate(parts))
    for name in (n.strip() for n in names.split(',')):
      if name not in FIELDS:
        raise _error(spec, f'{name!r} cannot be scheduled; choose from {", ".join(FIELDS)}')
      if name in out:
        raise _error(spec, f'{name} is scheduled twice')
      out[name] = segments
  return out


def base_field(field: str) -> str:
  """The `train` field a schedule of `field` multiplies: `field` itself, 'ada_p_init' for
  'ada_p'."""
  return _BASES.get(field, field)


def _get(train_config: Any, name: str, default: Any) -> Any:
  value = getattr(train_config, name, default)  # a ConfigDict, or a SimpleNamespace of hparams
  return default if value is None else value


def check(train_config: Any) -> None:
  """Validates `train.schedules`, `train.ema_half_life_images` and `train.ema_rampup`.

  Raises:
    ConfigError: (one line) a malformed schedule (`parse`); a schedule on a penalty, an EMA
      half-life or an augmentation probability that is off (0); Adam's beta2 reaching 1; an
      `ada_p` schedule without `train.augment = 'fixed'` or taking p above 1; a half-life
      or ramp-up that is
      not a finite number >= 0; a ramp-up without a half-life; a half-life with
      `train.ema_decay = 0` (which marks a run without an EMA generator).
  """
  half_life = _get(train_config, 'ema_half_life_images', 0.0)
  rampup = _get(train_config, 'ema_rampup', 0.0)
  for field, value in (('ema_half_life_images', half_life), ('ema_rampup', rampup)):
    if (
      isinstance(value, bool)
      or not isinstance(value, (int, float))
      or not (value >= 0 and math.isfinite(value))
    ):
      raise ConfigError(
        f'train.{field}={value!r} is invalid: must be a finite number >= 0 (0 = off).'
      )
  if rampup and not half_life:
    raise ConfigError(
      f'train.ema_rampup={rampup!r} is invalid: it ramps up the EMA half-life; '
      'set train.ema_half_life_images > 0 (e.g. 10000) or ema_rampup=0.'
    )
  if half_life and not _get(train_config, 'ema_decay', 0.0) > 0:
    raise ConfigError(
      f'train.ema_half_life_images={half_life!r} is invalid with '
      'train.ema_decay=0 (no EMA generator): set train.ema_decay > 0, e.g. 0.999 '
      '(the half-life then replaces its value).'
    )
  spec = _get(train_config, 'schedules', '')
  for field, segments in parse(spec).items():
    name = base_field(field)
    base = _get(train_config, name, 0.0)
    if field == 'ada_p':
      _check_augment(train_config, spec)
    if field in penalties.REPLICA_WEIGHT_FIELDS + ('ema_half_life_images', 'ada_p') and not (
      base > 0
    ):
      raise _error(
        spec,
        f'it schedules {field}, but train.{name}={base!r} is off; set '
        f'train.{name} > 0 (the schedule multiplies it)',
      )
    top = max(max(s.start, s.end) for s in segments)
    if field == 'b2' and not base * top < 1:
      raise _error(
        spec, f'b2 would reach train.b2 * {top:g} = {base * top:g}; Adam needs beta2 < 1'
      )
    if field == 'ada_p' and not base * top <= 1:
      raise _error(
        spec,
        f'ada_p would reach train.ada_p_init * {top:g} = {base * top:g}; a probability is '
        f'<= 1 (lower the factors or train.ada_p_init)',
      )


def _check_augment(train_config: Any, spec: str) -> None:
  """An `ada_p` schedule needs `train.augment = 'fixed'` (one-line ConfigError otherwise)."""
  mode = _get(train_config, 'augment', '')
  if mode == 'ada':
    raise _error(
      spec,
      "ada_p cannot be scheduled with train.augment='ada' (ADA adapts p itself); set "
      "train.augment='fixed' for p = train.ada_p_init * the schedule, or drop the ada_p entry",
    )
  if mode != 'fixed':
    diffaugment = _get(train_config, 'diffaugment', '')
    what = 'DiffAugment has no probability' if diffaugment else 'augmentation is off'
    raise _error(
      spec,
      f"ada_p schedules ADA's probability, but train.augment={mode!r} ({what}); set "
      "train.augment='fixed' (p = train.ada_p_init * the schedule) or drop the ada_p entry",
    )


def curve(segments: tuple[Segment, ...], batch_size: int) -> Callable[[Any], jax.Array]:
  """The factor as a function of the train step: an optax schedule of the images seen.

  Args:
    segments: from `parse`.
    batch_size: images per train step (`train.batch_size`).

  Returns:
    `factor(step)`: step an integer (or int32 array) >= 0; float32 scalar, the segments'
    curve at `step * batch_size` images, computed in float32.
  """
  pieces, boundaries, at = [], [], 0.0
  for seg in segments:
    n = seg.images(batch_size)
    if seg.kind == 'linear':
      piece = optax.linear_schedule(seg.start, seg.end, n)
    elif seg.kind == 'cosine':
      # end + (start - end) * (1 + cos(pi t / n)) / 2: optax's cosine decay of start - end
      # (alpha = 0) lifted by end, so that a start of 0 (a cosine ramp-up) works too.
      decay = optax.cosine_decay_schedule(seg.start - seg.end, n)
      piece = lambda count, decay=decay, end=seg.end: end + decay(count)  # noqa: E731
    else:
      piece = optax.constant_schedule(seg.start)
    if pieces:
      boundaries.append(at)
    pieces.append(piece)
    at += n
  joined = optax.join_schedules(pieces, boundaries) if len(pieces) > 1 else pieces[0]

  def factor(step: Any) -> jax.Array:
    images = jnp.asarray(step).astype(jnp.float32) * jnp.float32(batch_size)
    return jnp.asarray(joined(images), jnp.float32)

  return factor


@dataclasses.dataclass(frozen=True)
class Schedules:
  """A run's schedules and EMA half-life, as functions of the train step.

  Attributes:
    segments: (field, its segments) pairs from `parse(train.schedules)`; () = none.
    batch_size: `train.batch_size`, images per step.
    n_critic: `train.n_critic`, D updates (D optimizer counts) per step.
    ema_half_life_images: H of the EMA half-life, > 0 to use it; 0 keeps `train.ema_decay`.
    ema_rampup: r of the ramp-up, 0 = off.
  """

  segments: tuple[tuple[str, tuple[Segment, ...]], ...] = ()
  batch_size: int = 1
  n_critic: int = 1
  ema_half_life_images: float = 0.0
  ema_rampup: float = 0.0

  @classmethod
  def from_config(cls, train_config: Any) -> Schedules:
    """From a config's `train` block (fields missing in older configs count as off).

    Raises:
      ConfigError: a malformed `train.schedules` (`parse`).
    """
    return cls(
      segments=tuple(parse(_get(train_config, 'schedules', '')).items()),
      batch_size=int(_get(train_config, 'batch_size', 1)),
      n_critic=int(_get(train_config, 'n_critic', 1)),
      ema_half_life_images=float(_get(train_config, 'ema_half_life_images', 0.0)),
      ema_rampup=float(_get(train_config, 'ema_rampup', 0.0)),
    )

  def factor(self, field: str) -> Callable[[Any], jax.Array] | None:
    """`factor(step)` (float32) of a scheduled field, None if `field` has no schedule."""
    for name, segments in self.segments:
      if name == field:
        return curve(segments, self.batch_size)
    return None

  def optimizer_value(self, field: str, base: Any, *, per_step: int) -> Any:
    """An Adam hyperparameter for optax: `base` itself when unscheduled, else the optax
    schedule `count -> base * factor(count // per_step)` of the optimizer's update count
    (`per_step` = its updates per train step: 1 for G, n_critic for D)."""
    factor = self.factor(field)
    if factor is None:
      return base
    return lambda count: base * factor(jnp.asarray(count) // per_step)

  def penalty_weights(self, hp: dict[str, Any], weights: Any, step: jax.Array) -> dict[str, Any]:
    """`hp` with each scheduled penalty weight set to its value at `step`.

    Args:
      hp: the step's traced hyperparameters (`gan_jax.core.train_step.HPARAM_FIELDS`),
        possibly empty; a weight there (per replica) is the base value, else `weights`'.
      weights: has the configured weights as attributes (`objectives.Stabilizers`).
      step: int32 scalar, `state.step`.

    Returns:
      A new dict (`hp` itself when no penalty weight is scheduled).
    """
    scheduled = [(f, self.factor(f)) for f in penalties.REPLICA_WEIGHT_FIELDS]
    scheduled = [(f, fn) for f, fn in scheduled if fn is not None]
    if not scheduled:
      return hp
    hp = dict(hp)
    for field, factor in scheduled:
      hp[field] = hp.get(field, getattr(weights, field)) * factor(step)
    return hp

  def augment_probability(self, p_init: float, step: Any) -> jax.Array | None:
    """ADA's p at `step` with `train.augment = 'fixed'`: float32 `p_init * factor(step)` (in
    [0, 1] for a config `check` accepted), or None when `ada_p` has no schedule (p stays
    `p_init`, `gan_jax.core.ada.probability`)."""
    factor = self.factor('ada_p')
    if factor is None:
      return None
    return jnp.float32(p_init) * factor(step)

  def ema_half_life(self, step: Any) -> jax.Array:
    """The EMA half-life in images at `step`, float32: H * factor(step), then with the
    ramp-up min(that, step * batch_size * ema_rampup) (Karras et al. 2020)."""
    half_life = jnp.float32(self.ema_half_life_images)
    factor = self.factor('ema_half_life_images')
    if factor is not None:
      half_life = half_life * factor(step)
    if self.ema_rampup:
      seen = jnp.asarray(step).astype(jnp.float32) * jnp.float32(self.batch_size)
      half_life = jnp.minimum(half_life, seen * jnp.float32(self.ema_rampup))
    return half_life

  def ema_rate(self, step: Any) -> jax.Array | None:
    """1 - beta of the EMA at `step` (the weight of G's new parameters), or None when the
    half-life is off (the constant `train.ema_decay` applies).

    beta = 0.5 ** (batch_size / max(half_life, 1e-8)); 1 - beta is computed as
    -expm1(-ln 2 * batch_size / half_life), accurate in float32 for long half-lives.

    Returns:
      float32 scalar in [0, 1], or None.
    """
    if not self.ema_half_life_images:
      return None
    half_life = jnp.maximum(self.ema_half_life(step), _MIN_HALF_LIFE)
    return -jnp.expm1(-math.log(2.0) * jnp.float32(self.batch_size) / half_life)
