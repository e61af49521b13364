"""Images from a prepared TFDS build: where the data is, checked builders, and the decoding,
resizing and channel conversion every gan_jax dataset goes through.

The layer under `gan_jax.data.pipeline` (batches, sharding, prefetch) and `gan_jax.data.stacked_mnist`
(built from TFDS 'mnist'): both read TFDS through this module, so neither imports the other.
TensorFlow is only a host-side input library here: `keep_tensorflow_on_cpu` keeps it off
accelerators so it never reserves GPU memory that JAX needs.
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from gan_jax.errors import ConfigError

_ENV_DATA_DIR = 'TFDS_DATA_DIR'
_TFDS_DEFAULT_DATA_DIR = '~/tensorflow_datasets'


class DatasetNotFoundError(FileNotFoundError):
  """A TFDS dataset is neither prepared in the data_dir nor downloadable.

  Attributes:
    name: The TFDS dataset name, e.g. ``'mnist'``.
    split: The requested split string, e.g. ``'train'``.
    data_dir: The TFDS data directory that was searched (already resolved; never None).
    reason: A short description of what went wrong (empty when the data is simply absent).
  """

  def __init__(self, name: str, split: str, data_dir: str, reason: str = '', field: str = ''):
    self.name = name
    self.split = split
    self.data_dir = data_dir
    self.reason = reason
    self.field = field
    detail = f' ({reason})' if reason else ''
    prepared = prepared_datasets(data_dir)
    choices = (
      f'Datasets prepared there (valid names): {", ".join(prepared)}. '
      if prepared
      else 'No dataset is prepared there. '
    )
    message = (
      (f'{field}={name!r}: ' if field else '')
      + f"TFDS dataset '{name}' (split '{split}') was not found in the TFDS data_dir "
      f"'{data_dir}'{detail}. {choices}Nothing is downloaded unless download=True is passed. "
      f'To prepare it offline, on a machine with internet access run '
      f'`python -c "import tensorflow_datasets as tfds; '
      f"tfds.load('{name}', data_dir='{data_dir}')\"` "
      f'(or `tfds build {name} --data_dir {data_dir}`), copy the resulting '
      f"'{os.path.join(data_dir, name)}' folder into a data_dir on this machine, and point "
      f'gan_jax at that data_dir with config.data.data_dir or the {_ENV_DATA_DIR} '
      f'environment variable.'
    )
    super().__init__(message)

  def __reduce__(self):  # Keeps the exception picklable despite the custom __init__.
    return (type(self), (self.name, self.split, self.data_dir, self.reason, self.field))


def prepared_datasets(data_dir: str | None) -> list[str]:
  """Names of the TFDS datasets prepared in `data_dir` (folders holding a dataset_info.json
  at `<name>/<version>/` or `<name>/<config>/<version>/`), sorted; [] if there are none."""
  if not data_dir or not os.path.isdir(data_dir):
    return []
  names = set()
  for pattern in ('*/*/dataset_info.json', '*/*/*/dataset_info.json'):
    for path in glob.glob(os.path.join(glob.escape(data_dir), pattern)):
      names.add(os.path.relpath(path, data_dir).split(os.sep)[0])
  return sorted(names)


def resolve_data_dir(data_dir: str | None) -> str | None:
  """Returns the TFDS data directory to read from.

  Precedence: the explicit (config) value, then the ``TFDS_DATA_DIR`` environment variable,
  then None, which means TFDS's own default (``~/tensorflow_datasets``). Empty strings count
  as unset. ``~`` is expanded; the path is not required to exist.

  Args:
    data_dir: The configured directory (``config.data.data_dir``) or None.

  Returns:
    The directory as an absolute-or-relative path string with ``~`` expanded, or None.
  """
  for candidate in (data_dir, os.environ.get(_ENV_DATA_DIR)):
    if candidate:
      return os.path.expanduser(os.fspath(candidate))
  return None


@functools.cache
def keep_tensorflow_on_cpu() -> None:
  """Hides GPUs from TensorFlow (once per process) so tf.data never grabs accelerator memory."""
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    # TF's devices are already initialised (someone used TF first); nothing we can change.
    pass


def searched_dir(data_dir: str | None) -> str:
  """The directory TFDS searches for a resolved data_dir: None means ~/tensorflow_datasets."""
  return data_dir if data_dir else os.path.expanduser(_TFDS_DEFAULT_DATA_DIR)


def validate_image_args(image_size: int, channels: int) -> None:
  """Checks the output image size and channels of a dataset.

  Raises:
    ConfigError: `image_size` is not a positive integer, or `channels` is not 1 or 3.
  """
  if not isinstance(image_size, (int, np.integer)) or image_size < 1:
    raise ConfigError(f'data.image_size={image_size!r} must be a positive integer.')
  if channels not in (1, 3):
    raise ConfigError(f'data.channels={channels!r} must be 1 (grayscale) or 3 (RGB).')


def prepared_builder(
  name: str, split: str, data_dir: str, download: bool, fields: tuple[str, str] = ('', '')
):
  """Returns the prepared TFDS builder of dataset `name`, after checking `split`.

  Args:
    name: a TFDS dataset name.
    split: a TFDS split string, slicing allowed; checked against the build's splits.
    data_dir: the resolved directory to search (`searched_dir`), never None.
    download: let TFDS download and prepare the dataset if it is not prepared there.
    fields: the config fields that gave the name and the split, named in the messages.

  Raises:
    DatasetNotFoundError: not a TFDS name, not prepared in `data_dir` (and no download), or
      the download failed.
    ConfigError: an unknown split or out-of-range slice (the message lists the splits), or
      a dataset without an 'image' feature.
  """
  searched = data_dir
  name_field, split_field = fields
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except ValueError as err:  # tfds' DatasetNotFoundError is a ValueError too
    if isinstance(err, tfds.core.registered.DatasetNotFoundError):
      # Neither a registered builder nor a prepared folder `data_dir/name/<version>`.
      reason = 'no registered TFDS builder and no prepared folder'
    else:  # not a TFDS name at all, e.g. '_' or 'a b'
      reason = 'not a TFDS dataset name (letters, digits and _, optionally /config:version)'
    raise DatasetNotFoundError(name, split, searched, reason=reason, field=name_field) from None
  if not builder.is_prepared():
    if not download:
      raise DatasetNotFoundError(name, split, searched, field=name_field) from None
    try:
      builder.download_and_prepare()
    except Exception as err:  # Network errors take many forms (OSError, DownloadError, ...).
      first_line = (str(err).strip().splitlines() or [''])[0][:200]
      raise DatasetNotFoundError(
        name,
        split,
        searched,
        reason=f'download_and_prepare failed: {type(err).__name__}: {first_line}',
        field=name_field,
      ) from err
  try:
    builder.info.splits[split]  # Validates split names and slice bounds.
  except (KeyError, ValueError) as err:
    available = ', '.join(
      f"'{s}' ({info.num_examples} examples)" for s, info in builder.info.splits.items()
    )
    raise ConfigError(
      (f'{split_field}={split!r}: ' if split_field else '')
      + f"Invalid split '{split}' for TFDS dataset '{name}' in '{searched}': {err} "
      f'Available splits: {available}. TFDS slicing such as '
      f"'train[:10%]' or 'train+test' is supported."
    ) from None
  if 'image' not in builder.info.features:
    raise ConfigError(
      f"TFDS dataset '{name}' has no 'image' feature (features: "
      f'{sorted(builder.info.features.keys())}); gan_jax.data.pipeline only reads image datasets.'
    )
  return builder


def split_size(
  name: str,
  split: str,
  *,
  data_dir: str | None,
  download: bool = False,
  fields: tuple[str, str] = ('data.name', 'data.split'),
) -> int:
  """The number of examples of `split` of TFDS dataset `name`, from its metadata (no image
  is read): the data-source registry's check for TFDS names (`gan_jax.data.sources`).

  Args:
    name: a TFDS dataset name.
    split: a TFDS split string, slicing allowed.
    data_dir: the TFDS data dir (None: `$TFDS_DATA_DIR`, else TFDS's default).
    download: let TFDS download a missing dataset.
    fields: the config fields holding the name and the split, named in the messages.

  Raises:
    DatasetNotFoundError, ConfigError: as `prepared_builder`.
  """
  searched = searched_dir(resolve_data_dir(data_dir))
  return prepared_builder(name, split, searched, download, fields).info.splits[split].num_examples


def label_classes(
  name: str, split: str = 'train', *, data_dir: str | None, download: bool = False
) -> int | None:
  """How many classes the 'label' feature of TFDS dataset `name` has, from its metadata.

  Returns:
    K for a 'label' feature with K classes (labels 0..K-1); 0 when TFDS does not know its
    number of classes; None when the dataset has no 'label' feature.

  Raises:
    DatasetNotFoundError, ConfigError: as `prepared_builder`.
  """
  searched = searched_dir(resolve_data_dir(data_dir))
  info = prepared_builder(name, split, searched, download, ('data.name', 'data.split')).info
  if 'label' not in info.features:
    return None
  return int(getattr(info.features['label'], 'num_classes', 0) or 0)


def convert_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
  """[H, W, C_in] float32 -> [H, W, channels]; works with a static or a dynamic C_in."""

  def convert(img: tf.Tensor, c_in: int) -> tf.Tensor:
    if c_in == 4:  # RGBA: drop alpha.
      img, c_in = img[..., :3], 3
    if c_in == channels:
      return img
    if c_in == 1 and channels == 3:
      return tf.tile(img, [1, 1, 3])
    if c_in == 3 and channels == 1:
      return tf.image.rgb_to_grayscale(img)
    raise ValueError(f'Cannot convert images with {c_in} channels to {channels}.')

  c_static = image.shape[-1]
  if c_static is not None:
    return convert(image, c_static)
  c_dyn = tf.shape(image)[-1]

  def unsupported() -> tf.Tensor:
    check = tf.debugging.Assert(False, ['Unsupported number of image channels:', c_dyn])
    with tf.control_dependencies([check]):
      return tf.zeros(tf.concat([tf.shape(image)[:2], [channels]], 0), image.dtype)

  return tf.case(
    [(tf.equal(c_dyn, c), functools.partial(convert, image, c)) for c in (1, 3, 4)],
    default=unsupported,
    exclusive=True,
  )


def preprocess(
  features: Mapping[str, tf.Tensor], image_size: int, channels: int
) -> dict[str, tf.Tensor]:
  """Resizes and converts channels, leaving values in [0, 255] (scaling happens later).

  The image stays uint8 when neither resizing nor RGB->grayscale is needed (it is then 4x
  smaller in the cache); otherwise it becomes float32 in [0, 255].
  """
  image = features['image']
  h, w = image.shape[0], image.shape[1]
  static_ok = h == image_size and w == image_size
  if not static_ok:
    image = tf.cast(image, tf.float32)
    if h is not None and w is not None:
      image = tf.image.resize(image, (image_size, image_size), method='bilinear', antialias=True)
    else:  # No static size: resize only the images whose stored size differs.
      shape = tf.shape(image)
      image = tf.cond(
        tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size)),
        lambda: image,
        lambda: tf.image.resize(image, (image_size, image_size), method='bilinear', antialias=True),
      )
  if image.shape[-1] is None or image.shape[-1] != channels:
    if image.dtype == tf.uint8 and not (image.shape[-1] == 1 and channels == 3):
      image = tf.cast(image, tf.float32)  # rgb_to_grayscale would round in uint8.
    image = convert_channels(image, channels)
  if image.dtype != tf.uint8:  # Guards against float round-off of the resize kernel.
    image = tf.clip_by_value(image, 0.0, 255.0)
  image = tf.ensure_shape(image, (image_size, image_size, channels))
  if 'label' in features:
    label = tf.cast(features['label'], tf.int32)
  else:
    label = tf.constant(-1, tf.int32)
  return {'image': image, 'label': label}


def scale(features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """Maps images in [0, 255] (any leading batch dims) to float32 in [-1, 1] as x/127.5 - 1."""
  # x in [0, 255] maps into [-1, 1] exactly (255 / 127.5 == 2), so no clipping is needed.
  image = tf.cast(features['image'], tf.float32) / 127.5 - 1.0
  return {'image': image, 'label': features['label']}


def deterministic_options() -> tf.data.Options:
  """`tf.data.Options` with `deterministic = True` (the order of every gan_jax pipeline)."""
  options = tf.data.Options()
  options.deterministic = True
  return options


def raw_tfds_images(
  name: str,
  split: str,
  *,
  data_dir: str | None,
  image_size: int,
  channels: int,
  download: bool,
) -> tuple[tf.data.Dataset, int]:
  """TFDS dataset `name` as decoded, resized, channel-converted images, not yet scaled.

  Args:
    name: a TFDS dataset name with an 'image' feature.
    split: a TFDS split string, slicing allowed ('train[:1024]').
    data_dir: the TFDS data dir (None: `$TFDS_DATA_DIR`, else TFDS's default).
    image_size: output height and width H = W, >= 1.
    channels: output channels C, 1 or 3.
    download: let TFDS download and prepare a missing dataset.

  Returns:
    `(ds, n)`: `ds` yields `{'image': uint8 or float32 [H, W, C] in [0, 255], 'label': int32
    []}` in stored order (see `preprocess`); `n` is the split's number of examples.

  Raises:
    DatasetNotFoundError, ConfigError: as `prepared_builder` and `validate_image_args`.
  """
  keep_tensorflow_on_cpu()
  validate_image_args(image_size, channels)
  # Pass TFDS an explicit directory, so what it searches is exactly what errors report.
  data_dir = searched_dir(resolve_data_dir(data_dir))
  builder = prepared_builder(name, split, data_dir, download)
  read_config = tfds.ReadConfig(try_autocache=False, options=deterministic_options())
  ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)
  num_examples = builder.info.splits[split].num_examples
  process = functools.partial(preprocess, image_size=image_size, channels=channels)
  return ds.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True), num_examples


def load_tfds_images(
  name: str,
  split: str,
  *,
  data_dir: str | None,
  image_size: int,
  channels: int,
  download: bool = False,
) -> tf.data.Dataset:
  """`raw_tfds_images` scaled to [-1, 1]: what `gan_jax.data.pipeline.load_images` gives for a TFDS name.

  Returns:
    A `tf.data.Dataset` of `{'image': float32 [H, W, C] in [-1, 1], 'label': int32 []}` in
    stored order (label -1 when the dataset has none).

  Raises:
    As `raw_tfds_images`.
  """
  ds, _ = raw_tfds_images(
    name, split, data_dir=data_dir, image_size=image_size, channels=channels, download=download
  )
  return ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
