"""The registry of image-to-image translation data: paired and unpaired sources by name.

Each kind of name is one `TranslationSource` entry that declares its prefix, whether it
gives paired or unpaired images (a model that needs the other kind is refused in one line),
how the name is checked without reading an image, and how it is read:

| entry       | name                         | gives                                             |
|-------------|------------------------------|---------------------------------------------------|
| `pairs`     | 'pairs:/path[?options]'      | paired: a folder or .zip of A | B images side by side (pix2pix's format: width twice the height, A left, B right) |
| `unpaired`  | 'unpaired:/path/A,/path/B'   | unpaired: two folders (or .zips), one per domain  |
| `cycle_gan` | 'cycle_gan/<config>'         | unpaired: TFDS's CycleGAN datasets (horse2zebra, monet2photo, ...), splits trainA / trainB / testA / testB |

Folders are read by `gan_jax.data.image_folder` (same files, order, decoding, content-keyed
cache and one-line errors; its options after '?', per folder: `unpaired:/a?upscale=yes,/b`;
a path cannot hold a comma). Each half of a pair is brought to the model's size as a square
image is. A folder is one sorted list: its last `num_test` images are held out and the
first `num_train` of the others train (so the two never overlap); a 'pairs:' folder with
`train/` and `test/` subfolders (pix2pix's datasets: facades/train, facades/test, ...) is
split by them instead: the first `num_train` pairs of train/ train, the first `num_test` of
test/ are held out (other subfolders, e.g. val/, are not read). TFDS's `cycle_gan/*` is
read through `gan_jax.data.tfds_images` from a prepared build in the TFDS data dir
(downloaded only when asked, `download=True`): `num_train` images of trainA / trainB and
`num_test` of testA / testB, in stored order.

Channels: given (1 or 3: every image converted), or None: the data's own, 1 when every
image is grayscale as stored, else 3 (TFDS CycleGAN: 3). Two domains whose own channels
differ are an error unless channels are given.

This module imports neither TensorFlow nor JAX: `cycle_gan` imports TFDS when it is read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from gan_jax.data import image_folder
from gan_jax.errors import ConfigError

PAIRED, UNPAIRED = 'paired', 'unpaired'
# The names messages give the data, the image size and the channels (the scripts' flags).
FIELDS = ('--data', '--image-size', '--channels')


@dataclasses.dataclass(frozen=True)
class TranslationImages:
  """The images of a translation source, uint8 numpy `[N, S, S, C]` in [0, 255].

  Attributes:
    source: the entry's name ('pairs', 'unpaired', 'cycle_gan').
    name: the data's name with its paths made absolute (what a run records).
    kind: 'paired' (train_a[i] pairs with train_b[i], test_a[i] with test_b[i]) or
      'unpaired' (the domains' counts may differ).
    train_a, train_b: training images of domains A and B.
    test_a, test_b: held-out images of A and B.
    domains: readable names of A and B.
    held_out: how the held-out images were chosen, in words.
  """

  source: str
  name: str
  kind: str
  train_a: np.ndarray
  train_b: np.ndarray
  test_a: np.ndarray
  test_b: np.ndarray
  domains: tuple[str, str]
  held_out: str

  @property
  def image_size(self) -> int:
    return int(self.train_a.shape[1])

  @property
  def channels(self) -> int:
    return int(self.train_a.shape[-1])

  def describe(self) -> dict[str, Any]:
    """A JSON-able summary: source, name, kind, shape, per-domain counts, held-out rule."""
    return {
      'source': self.source,
      'data': self.name,
      'kind': self.kind,
      'image_size': self.image_size,
      'channels': self.channels,
      'domains': {
        d: {'name': n, 'num_train': int(tr.shape[0]), 'num_test': int(te.shape[0])}
        for d, n, tr, te in (
          ('a', self.domains[0], self.train_a, self.test_a),
          ('b', self.domains[1], self.train_b, self.test_b),
        )
      },
      'held_out': self.held_out,
    }


# (name, *, image_size, channels (None: the data's own), num_train, num_test, data_dir,
# download, fields) -> TranslationImages.
Loader = Callable[..., TranslationImages]


@dataclasses.dataclass(frozen=True)
class TranslationSource:
  """A kind of translation data: which names it serves and how it reads them.

  Attributes:
    name: the entry's name (its key in `SOURCES`).
    prefix: the names it serves start with it ('pairs:').
    kind: 'paired' or 'unpaired', what its images are.
    check: `check(name, field)` checks the name (paths exist, options, a known dataset)
      reading no image; raises `ConfigError`.
    load: its `Loader`.
    example: an example name, for messages and docs.
    summary: one line for docs and listings.
  """

  name: str
  prefix: str
  kind: str
  check: Callable[[str, str], Any]
  load: Loader
  example: str
  summary: str = ''


SOURCES: dict[str, TranslationSource] = {}


def register(source: TranslationSource, *, replace: bool = False) -> TranslationSource:
  """Adds an entry to `SOURCES`.

  Raises:
    ValueError: an entry of that name exists (and not `replace`), an empty prefix, or a
      kind other than 'paired' / 'unpaired'.
  """
  if source.name in SOURCES and not replace:
    raise ValueError(f'a translation source named {source.name!r} is registered already.')
  if not source.prefix or source.kind not in (PAIRED, UNPAIRED):
    raise ValueError(
      f'translation source {source.name!r} needs a prefix and a kind of {PAIRED!r} or {UNPAIRED!r}.'
    )
  SOURCES[source.name] = source
  return source


def _choices() -> str:
  return '; '.join(f'{s.kind}: {s.example}' for s in SOURCES.values())


def source_for(name: Any, field: str = FIELDS[0]) -> TranslationSource:
  """The entry whose prefix starts `name` (the longest).

  Raises:
    ConfigError: no entry serves it (the message lists the forms).
  """
  matches = [s for s in SOURCES.values() if isinstance(name, str) and name.startswith(s.prefix)]
  if not matches:
    raise ConfigError(f'{field}={name!r} is not translation data; give one of: {_choices()}.')
  return max(matches, key=lambda s: len(s.prefix))


def check(name: str, *, kind: str | None = None, field: str = FIELDS[0]) -> TranslationSource:
  """Checks a name without reading an image: its entry, its kind, its own checks.

  Args:
    name: e.g. 'pairs:/data/facades'.
    kind: 'paired' or 'unpaired' when the model needs one of them; None: either.
    field: the flag or field that gave the name, quoted in messages.

  Returns:
    The entry.

  Raises:
    ConfigError: one line: an unknown form, the other kind, a missing folder, an unknown
      dataset or option.
  """
  source = source_for(name, field)
  if kind is not None and source.kind != kind:
    fit = '; '.join(s.example for s in SOURCES.values() if s.kind == kind)
    model = 'pix2pix' if kind == PAIRED else 'CycleGAN'
    raise ConfigError(
      f'{field}={name!r} gives {source.kind} images, but {model} trains on {kind} ones: '
      f'give {fit}' + (' (or train CycleGAN on it)' if kind == PAIRED else '') + '.'
    )
  source.check(name, field)
  return source


def load(
  name: str,
  *,
  image_size: int,
  channels: int | None = None,
  num_train: int,
  num_test: int,
  kind: str | None = None,
  data_dir: str | None = None,
  download: bool = False,
  fields: tuple[str, str, str] = FIELDS,
) -> TranslationImages:
  """Reads translation data by name (see the module docstring).

  Args:
    name: 'pairs:/path', 'unpaired:/a,/b' or 'cycle_gan/<config>'.
    image_size: S of every image (>= 1); images are resized to it, never upscaled (folders:
      unless '?upscale=yes').
    channels: 1 or 3 (images converted), or None: the data's own.
    num_train, num_test: at most this many training and held-out images per domain (>= 1).
    kind: 'paired' / 'unpaired' when the model needs it; None: either.
    data_dir: the TFDS data dir (cycle_gan; None: `$TFDS_DATA_DIR`).
    download: let TFDS download a cycle_gan dataset that is not prepared (internet).
    fields: the flags (or fields) of the name, the image size and the channels, quoted in
      messages.

  Returns:
    `TranslationImages`, uint8 `[N, S, S, C]`.

  Raises:
    ConfigError: one line: as `check`, a bad size or channel count, an empty or too small
      folder, unreadable images, a file that is no A | B pair, images smaller than S,
      domains whose channels differ (channels None).
    gan_jax.data.tfds_images.DatasetNotFoundError: a cycle_gan dataset is not prepared in
      the data dir (and no download).
  """
  field, size_field, channels_field = fields
  if (
    not isinstance(image_size, (int, np.integer))
    or isinstance(image_size, bool)
    or (image_size < 1)
  ):
    raise ConfigError(f'{size_field}={image_size!r} must be a positive integer.')
  if channels not in (None, 1, 3):
    raise ConfigError(f'{channels_field}={channels!r} must be 1 (grayscale) or 3 (RGB).')
  if num_train < 1 or num_test < 1:
    raise ConfigError(f'num_train={num_train} and num_test={num_test} must be >= 1.')
  source = check(name, kind=kind, field=field)
  return source.load(
    name,
    image_size=int(image_size),
    channels=channels,
    num_train=num_train,
    num_test=num_test,
    data_dir=data_dir,
    download=download,
    fields=fields,
  )


# Folders: 'pairs:' and 'unpaired:'.


def _folder_spec(text: str, prefix: str, fields: tuple[str, str, str], halves: int = 1):
  spec = image_folder.parse_name(text, fields[0], prefix=prefix)
  return dataclasses.replace(spec, halves=halves, fields=fields)


def _recorded(part: str) -> str:
  """A folder part ('/path?options') with its path made absolute, options kept."""
  return image_folder.absolute_name(image_folder.PREFIX + part)[len(image_folder.PREFIX) :]


def _hold_out(images: np.ndarray, num_train: int, num_test: int, where: str):
  """(train, test): the last `num_test` images held out, the first `num_train` of the rest."""
  n = images.shape[0]
  if n <= num_test:
    raise ConfigError(
      f'{where} holds {n} images: holding out the last {num_test} leaves none to train on; '
      f'hold out fewer (e.g. --num-test {max(1, n // 10)}) or add images.'
    )
  return np.asarray(images[: min(num_train, n - num_test)]), np.asarray(images[n - num_test :])


def _held_out_text(num_test: int) -> str:
  return f'the last {num_test} images (sorted paths) of each folder; the others train'


def _pairs_check(name: str, field: str) -> None:
  _folder_spec(name, 'pairs:', (field, *FIELDS[1:]), halves=2)


def _pairs_load(name, *, image_size, channels, num_train, num_test, data_dir, download, fields):
  del data_dir, download
  spec = _folder_spec(name, 'pairs:', fields, halves=2)
  if channels is None:
    channels = image_folder.stored_channels(spec)
  cached = image_folder.load_cached(spec, image_size=image_size, channels=channels)
  if {'train', 'test'} <= set(cached.classes):  # the folder's own splits
    train, test = (
      np.asarray(cached.images[cached.labels == cached.classes.index(split)][:count])
      for split, count in (('train', num_train), ('test', num_test))
    )
    held_out = f"the first {test.shape[0]} images (sorted paths) of test/; train/'s train"
  else:
    train, test = _hold_out(cached.images, num_train, num_test, f'{fields[0]}={name!r}')
    held_out = _held_out_text(num_test)
  s = image_size
  return TranslationImages(
    source='pairs',
    name='pairs:' + _recorded(name[len('pairs:') :]),
    kind=PAIRED,
    train_a=train[:, :, :s],
    train_b=train[:, :, s:],
    test_a=test[:, :, :s],
    test_b=test[:, :, s:],
    domains=('A', 'B'),
    held_out=held_out,
  )


def _unpaired_parts(name: str, field: str) -> list[str]:
  parts = name[len('unpaired:') :].split(',')
  if len(parts) != 2 or not all(parts):
    raise ConfigError(
      f'{field}={name!r} is invalid: give two folders (or .zips), one per domain, '
      'e.g. unpaired:/data/horses,/data/zebras (no comma inside a path).'
    )
  return parts


def _domain_fields(fields: tuple[str, str, str], domain: str) -> tuple[str, str, str]:
  return (f'{fields[0]} (domain {domain})', *fields[1:])


def _unpaired_check(name: str, field: str) -> None:
  for domain, part in zip('AB', _unpaired_parts(name, field)):
    _folder_spec(part, '', _domain_fields((field, *FIELDS[1:]), domain))


def _domain_name(part: str) -> str:
  path = part.rpartition('?')[0] if '?' in part else part
  base = os.path.basename(os.path.normpath(path))
  return base[:-4] if base.lower().endswith('.zip') else base


def _unpaired_load(name, *, image_size, channels, num_train, num_test, data_dir, download, fields):
  del data_dir, download
  parts = _unpaired_parts(name, fields[0])
  specs = [_folder_spec(p, '', _domain_fields(fields, d)) for d, p in zip('AB', parts)]
  if channels is None:
    own = [image_folder.stored_channels(spec) for spec in specs]
    if own[0] != own[1]:
      kinds = {1: 'grayscale (1 channel)', 3: 'colour (3 channels)'}
      raise ConfigError(
        f'{fields[0]}={name!r}: the domains have different channel counts, A {kinds[own[0]]} '
        f'and B {kinds[own[1]]}; give {fields[2]} 1 or 3 to convert both.'
      )
    channels = own[0]
  splits = []
  for spec in specs:
    cached = image_folder.load_cached(spec, image_size=image_size, channels=channels)
    splits.append(_hold_out(cached.images, num_train, num_test, f'{spec.fields[0]}={spec.name!r}'))
  return TranslationImages(
    source='unpaired',
    name='unpaired:' + ','.join(_recorded(p) for p in parts),
    kind=UNPAIRED,
    train_a=splits[0][0],
    train_b=splits[1][0],
    test_a=splits[0][1],
    test_b=splits[1][1],
    domains=(_domain_name(parts[0]), _domain_name(parts[1])),
    held_out=_held_out_text(num_test),
  )


# TFDS's CycleGAN datasets: 'cycle_gan/<config>'.

CYCLE_GAN = 'cycle_gan'
CYCLE_GAN_SPLITS = ('trainA', 'trainB', 'testA', 'testB')


def cycle_gan_configs() -> tuple[str, ...]:
  """The configs of TFDS's 'cycle_gan' builder ('apple2orange', 'horse2zebra', ...), from the
  installed tensorflow_datasets (imports it; reads no data)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (TensorFlow)

  return tuple(c.name for c in tfds.builder_cls(CYCLE_GAN).BUILDER_CONFIGS)


def _cycle_gan_config(name: str, field: str) -> str:
  config = name[len(CYCLE_GAN) + 1 :].partition(':')[0]
  known = cycle_gan_configs()
  if config not in known:
    raise ConfigError(
      f'{field}={name!r} is not a TFDS CycleGAN dataset; give cycle_gan/<name> with <name> one '
      f'of {", ".join(known)}.'
    )
  return config


def _cycle_gan_load(name, *, image_size, channels, num_train, num_test, data_dir, download, fields):
  from gan_jax.data import tfds_images  # pylint: disable=g-import-not-at-top  (TensorFlow)

  config = _cycle_gan_config(name, fields[0])
  channels = 3 if channels is None else channels
  out = {}
  for split in CYCLE_GAN_SPLITS:
    total = tfds_images.split_size(
      name, split, data_dir=data_dir, download=download, fields=(fields[0], fields[0])
    )
    count = min(num_train if split.startswith('train') else num_test, total)
    if count < 1:
      raise ConfigError(f'{fields[0]}={name!r}: its {split} split holds no images.')
    ds, _ = tfds_images.raw_tfds_images(
      name,
      f'{split}[:{count}]',
      data_dir=data_dir,
      image_size=image_size,
      channels=channels,
      download=download,
    )
    images = np.concatenate([b['image'] for b in ds.batch(256).as_numpy_iterator()])
    out[split] = np.clip(np.rint(images), 0, 255).astype(np.uint8)
  a, _, b = config.partition('2')
  return TranslationImages(
    source=CYCLE_GAN,
    name=name,
    kind=UNPAIRED,
    train_a=out['trainA'],
    train_b=out['trainB'],
    test_a=out['testA'],
    test_b=out['testB'],
    domains=(a, b) if b else ('A', 'B'),
    held_out=f'the first {num_test} images of testA and testB (TFDS order)',
  )


register(
  TranslationSource(
    'pairs',
    prefix='pairs:',
    kind=PAIRED,
    check=_pairs_check,
    load=_pairs_load,
    example='pairs:/path (A | B side by side)',
    summary="a folder or .zip of A | B images side by side (pix2pix's format)",
  )
)
register(
  TranslationSource(
    'unpaired',
    prefix='unpaired:',
    kind=UNPAIRED,
    check=_unpaired_check,
    load=_unpaired_load,
    example='unpaired:/path/A,/path/B',
    summary='two folders (or .zips) of images, one per domain',
  )
)
register(
  TranslationSource(
    CYCLE_GAN,
    prefix=CYCLE_GAN + '/',
    kind=UNPAIRED,
    check=lambda name, field: _cycle_gan_config(name, field),
    load=_cycle_gan_load,
    example='cycle_gan/horse2zebra',
    summary="TFDS's CycleGAN datasets by name (prepared in the TFDS data dir, or --download)",
  )
)
