"""The data-source registry: each kind of `data.name` is one `DataSource` entry that declares
how it is matched, read, counted and checked.

On the model of `gan_jax.core.penalties` and `gan_jax.models.registry`: `gan_jax.data.pipeline` reads
every dataset through its entry (`source_for(name).load(...)`), `gan_jax.config.validate`
asks `check(config)`, and `gan_jax.training.run_setup` asks the entry what a run records and prepares,
so none of them holds a list of names.

| entry           | `data.name`             | images                          | labels          |
|-----------------|-------------------------|---------------------------------|-----------------|
| `folder`        | 'folder:/path?options'  | `gan_jax.data.image_folder`          | class folders   |
| `stacked_mnist` | exactly 'stacked_mnist' | `gan_jax.data.stacked_mnist` (mnist) | the mode, 0-999 |
| `tfds`          | any other name          | a prepared TFDS build           | 'label' feature |

A name is matched by an entry's exact names first, then by the longest matching prefix,
and else by the one catch-all entry (TFDS).

Adding a data source: write its module (a function giving its examples, see `Loader`), then
one `register(DataSource(...))` here, and its tests (`tests/test_data_sources.py` registers a
toy source and trains on it through the ordinary path). Every entry today gives images with
an optional class label (`kind='images'`); `kind` leaves room for the paired / unpaired image
sources of image-to-image translation, whose examples hold two images.

This module imports neither TensorFlow nor JAX (the config reads it): the entries' functions
import their modules when called.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from gan_jax.data import image_folder

# (data.name, split, *, data_dir, image_size, channels, download) -> (ds, n): the split's
# examples in their stored order, as a tf.data.Dataset of {'image': uint8 or float32 [H, W,
# C] in [0, 255] with H = W = image_size and C = channels (resized and converted as
# `gan_jax.data.tfds_images.preprocess` does), 'label': int32 [] (-1: none)}, and their number n.
# `gan_jax.data.pipeline` caches, shuffles, batches and scales it to [-1, 1].
Loader = Callable[..., tuple[Any, int]]
# (data.name, split, *, data_dir, download, fields) -> the split's number of examples, or
# None when only loading tells; reads no image. `fields` names the config fields of the
# name and the split, for messages.
Counter = Callable[..., 'int | None']
# (data.name, split, *, data_dir, download) -> K (labels 0..K-1), 0 (labels, number of
# classes unknown) or None (no labels); reads no image.
Classes = Callable[..., 'int | None']


@dataclasses.dataclass(frozen=True)
class DataSource:
  """A kind of dataset: which `data.name`s it serves and how it reads them.

  Attributes:
    name: the entry's name, e.g. 'folder' (its key in `SOURCES`).
    load: its `Loader` (examples in [0, 255], in stored order, and their count).
    num_examples: its `Counter`: checks the name and split without reading an image.
    num_classes: its `Classes`: the number of label classes, from metadata.
    exact: the `data.name`s it serves exactly, e.g. ('stacked_mnist',).
    prefix: a `data.name` prefix it serves, e.g. 'folder:' ('' for none).
    catch_all: it serves every name no other entry matches (TFDS; at most one entry).
    image_shape: the stored (H, W, C) of its images when fixed (Stacked MNIST: (28, 28, 3));
      None when it depends on the dataset. Images are resized and converted to
      `data.image_size` and `data.channels` either way.
    check: its own config checks, reading no data (e.g. a folder name's options and that the
      folder exists); raises `gan_jax.errors.ConfigError`. None: nothing to check.
    record_name: the `data.name` a run records in config.json (e.g. a folder's path made
      absolute, so the run resumes from any working folder). None: the name as given.
    prepare: `prepare(config)`, the run's last data check before anything is written (e.g.
      decoding a folder into its cache so a bad image fails early). None: nothing.
    write_run_files: `write_run_files(data_name, workdir)`, extra files a run keeps about its
      data (a folder's classes.json). None: none.
    kind: what an example holds: 'images' ({'image', 'label'}); room for the paired /
      unpaired sources of image-to-image translation.
    summary: one line for docs and listings.
  """

  name: str
  load: Loader
  num_examples: Counter
  num_classes: Classes
  exact: tuple[str, ...] = ()
  prefix: str = ''
  catch_all: bool = False
  image_shape: tuple[int, int, int] | None = None
  check: Callable[[Any], None] | None = None
  record_name: Callable[[str], str] | None = None
  prepare: Callable[[Any], None] | None = None
  write_run_files: Callable[[str, str], Any] | None = None
  kind: str = 'images'
  summary: str = ''


# The registry, in registration order: entry name -> entry.
SOURCES: dict[str, DataSource] = {}


def register(source: DataSource, *, replace: bool = False) -> DataSource:
  """Adds a data source to `SOURCES` (so the names it matches are read through it).

  Args:
    source: the entry.
    replace: allow replacing an entry of the same name.

  Returns:
    The entry.

  Raises:
    ValueError: an entry of that name exists already (and not `replace`), a second
      catch-all entry, or an entry that matches no name.
  """
  if source.name in SOURCES and not replace:
    raise ValueError(
      f'a data source named {source.name!r} is registered already; pass replace=True.'
    )
  others = [s for s in SOURCES.values() if s.name != source.name]
  if source.catch_all and any(s.catch_all for s in others):
    raise ValueError(f'data source {source.name!r}: there is a catch-all entry already.')
  if not (source.exact or source.prefix or source.catch_all):
    raise ValueError(f'data source {source.name!r} matches no name: give exact or prefix.')
  SOURCES[source.name] = source
  return source


def unregister(name: str) -> DataSource:
  """Removes and returns the entry `name` (e.g. a source a test registered).

  Raises:
    KeyError: no entry of that name.
  """
  return SOURCES.pop(name)


def source_for(data_name: Any) -> DataSource:
  """The entry that serves `data.name` `data_name`: an exact name, else the longest
  matching prefix, else the catch-all (TFDS).

  Raises:
    LookupError: no entry matches (only when the catch-all entry was unregistered).
  """
  if isinstance(data_name, str):
    for source in SOURCES.values():
      if data_name in source.exact:
        return source
    prefixed = [s for s in SOURCES.values() if s.prefix and data_name.startswith(s.prefix)]
    if prefixed:
      return max(prefixed, key=lambda s: len(s.prefix))
  for source in SOURCES.values():
    if source.catch_all:
      return source
  raise LookupError(f'no data source serves data.name={data_name!r}.')


def check(config: Any) -> None:
  """The data source's own checks of a full config (`DataSource.check`), reading no data.

  Raises:
    ConfigError: one line naming the bad field.
  """
  source = source_for(config.data.name)
  if source.check is not None:
    source.check(config)


def record_name(data_name: str) -> str:
  """The `data.name` a run records for `data_name` (see `DataSource.record_name`).

  Raises:
    ConfigError: from the entry (e.g. no such folder).
  """
  source = source_for(data_name)
  return data_name if source.record_name is None else source.record_name(data_name)


# The built-in entries. Their functions import TensorFlow (TFDS, Stacked MNIST) when called.


def _tfds_load(name, split, *, data_dir, image_size, channels, download):
  from gan_jax.data import tfds_images  # pylint: disable=g-import-not-at-top  (TensorFlow)

  return tfds_images.raw_tfds_images(
    name, split, data_dir=data_dir, image_size=image_size, channels=channels, download=download
  )


def _tfds_count(name, split, *, data_dir, download, fields):
  from gan_jax.data import tfds_images  # pylint: disable=g-import-not-at-top  (TensorFlow)

  return tfds_images.split_size(name, split, data_dir=data_dir, download=download, fields=fields)


def _tfds_classes(name, split, *, data_dir, download):
  from gan_jax.data import tfds_images  # pylint: disable=g-import-not-at-top  (TensorFlow)

  return tfds_images.label_classes(name, split, data_dir=data_dir, download=download)


def _stacked_load(name, split, *, data_dir, image_size, channels, download):
  del name
  from gan_jax.data import stacked_mnist  # pylint: disable=g-import-not-at-top  (TensorFlow)

  return stacked_mnist.raw_images(
    split, data_dir=data_dir, image_size=image_size, channels=channels, download=download
  )


def _stacked_count(name, split, *, data_dir, download, fields):
  """None: the stacked split's length is checked when it is built (it depends on blocks)."""
  del name, split
  from gan_jax.data import stacked_mnist  # pylint: disable=g-import-not-at-top  (TensorFlow)

  stacked_mnist.check_source(data_dir=data_dir, download=download, field=fields[0])
  return None


def _folder_load(name, split, *, data_dir, image_size, channels, download):
  del data_dir, download
  return image_folder.raw_images(name, split, image_size=image_size, channels=channels)


def _folder_count(name, split, *, data_dir, download, fields):
  del data_dir, download, fields
  return image_folder.check_folder(name, split)


def _folder_prepare(config: Any) -> None:
  # Decodes (or reuses) the cache now, so a bad image fails before any file is written.
  d = config.data
  image_folder.load_cached(d.name, image_size=d.image_size, channels=d.channels)


register(
  DataSource(
    'tfds',
    load=_tfds_load,
    num_examples=_tfds_count,
    num_classes=_tfds_classes,
    catch_all=True,
    summary="a prepared TFDS image dataset ('mnist', 'cifar10', ...) in data.data_dir",
  )
)
# 'stacked_mnist', 1000 and (28, 28, 3) are gan_jax.data.stacked_mnist's NAME, NUM_MODES and
# IMAGE_SHAPE, written out because that module imports TensorFlow (a test checks they agree).
register(
  DataSource(
    'stacked_mnist',
    load=_stacked_load,
    num_examples=_stacked_count,
    num_classes=lambda *a, **k: 1000,
    exact=('stacked_mnist',),
    image_shape=(28, 28, 3),
    summary='Stacked MNIST, 1,000 modes, built from TFDS mnist (Srivastava et al. 2017)',
  )
)
register(
  DataSource(
    'folder',
    load=_folder_load,
    num_examples=_folder_count,
    num_classes=lambda name, split, **_: image_folder.label_classes(name),
    prefix=image_folder.PREFIX,
    check=lambda config: image_folder.parse_name(config.data.name),
    record_name=image_folder.absolute_name,
    prepare=_folder_prepare,
    write_run_files=image_folder.write_classes,
    summary="a folder or .zip of images, 'folder:/path?options' (gan_jax.data.image_folder)",
  )
)
