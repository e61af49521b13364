"""`gan-jax translate`: a translation run's generator applied to image files.

    gan-jax translate --workdir RUN --input IMAGE_OR_FOLDER --out PATH \
        [--direction a2b|b2a] [--batch N]

* `--input` one image (.png, .jpg, .jpeg): `--out` an image file (.png, .jpg, .jpeg), or a
  folder (new or empty; `OUT/<name>.png` is written).
* `--input` a folder: every .png/.jpg/.jpeg in it, sorted by name; `--out` a folder (new or
  empty) receives one PNG per input with the same name (`a.jpg` -> `OUT/a.png`), or
  `--out grid.png` one picture with a row of input | output per image.

Pixels are read as uint8 and mapped to [-1, 1] by x / 127.5 - 1, then prepared as the run's
task prepared its training inputs (`gan_jax.translation.tasks`), chosen by the task named in
the run's record (`INPUT_CONVENTIONS`):

* 'colorize' (pix2pix, 32x32): a colour image is reduced to its BT.601 luma (`tasks.greyscale`),
  as the training inputs were; a greyscale image is taken as it is.
* 'superres' (pix2pix, 32x32): a low-resolution 8x8 image is upsampled bicubically to 32x32
  (`tasks.upsample_bicubic`), as the training inputs were; a 32x32 image is taken as an
  already upsampled input.
* 'inpaint' (pix2pix): the hole is given by transparency: an image with an alpha channel
  (greyscale + alpha for MNIST / Fashion-MNIST runs, RGBA for CIFAR-10 runs) whose pixels of
  alpha < 128 are hidden. They are filled with the mean of the visible pixels per channel and
  a mask channel (+1 in the hole, -1 elsewhere) is appended, as `tasks.hide_squares` does.
* any other task (CycleGAN's domains): the image as it is.

Outside 'inpaint' an alpha channel is ignored. Images are never resized: an image of another
size or number of channels is refused in one line that names the file, the run's expected
H x W x C, and how to resize or convert it. The generator runs in inference mode (pix2pix:
BatchNorm running averages, no dropout), and its outputs in [-1, 1] are written as uint8
(`gan_jax.core.sampling.to_uint8`: round((y + 1) * 127.5), clipped). Nothing is written when
any input is refused: all images are read and checked first, and a folder is written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from gan_jax.core import sampling
from gan_jax.translation import run as run_lib
from gan_jax.translation import tasks

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')


class TranslateUsageError(ValueError):
  """A mistake in `translate`'s arguments or input images; `gan-jax` prints it as one line."""


# Pillow's errors for a truncated, corrupt or decompression-bomb file (the last is no OSError).
_BAD_IMAGE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image(path: str) -> np.ndarray:
  """An image file as uint8 `[H, W, C]`: C = 1 (greyscale), 2 (greyscale + alpha), 3 (RGB)
  or 4 (RGBA). Palette and 1-bit images are expanded, CMYK / YCbCr converted to RGB.

  Raises:
    TranslateUsageError: the file cannot be decoded, or holds 16-bit or float pixels.
  """
  try:
    with Image.open(path) as img:
      mode = img.mode
      if mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
        raise TranslateUsageError(
          f'{path} has {mode} pixels (16-bit or float); save it as an 8-bit PNG or JPEG.'
        )
      if mode == '1':
        img = img.convert('L')
      elif mode == 'P':
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
      elif mode not in ('L', 'LA', 'RGB', 'RGBA'):
        img = img.convert('RGBA' if 'A' in mode else 'RGB')
      x = np.asarray(img, np.uint8)
  except TranslateUsageError:
    raise
  except _BAD_IMAGE as e:
    raise TranslateUsageError(
      f'{path} cannot be read as an image ({type(e).__name__}: {e}); remove or replace it.'
    ) from None
  return x[..., None] if x.ndim == 2 else x


def _unit(x: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1] (x / 127.5 - 1, as the input pipeline maps pixels)."""
  return np.asarray(x, np.float32) / 127.5 - 1.0


def _shape_text(shape: tuple[int, ...]) -> str:
  return 'x'.join(str(int(v)) for v in shape)


def _refuse(path: str, got: tuple[int, ...], want: str, run_desc: str, fix: str) -> None:
  raise TranslateUsageError(
    f'{path} is {_shape_text(got)} (HxWxC) but this {run_desc} translates {want}; {fix}'
  )


def _resize_hint(h: int, w: int) -> str:
  return f"resize it first, e.g. PIL: Image.open(path).resize(({w}, {h})).save(new_path)."


def _channels_hint(c: int) -> str:
  if c == 1:
    return "convert it to greyscale first, e.g. PIL: Image.open(path).convert('L')."
  return "convert it to RGB first, e.g. PIL: Image.open(path).convert('RGB')."


def _colour(image: np.ndarray) -> np.ndarray:
  """The colour channels of uint8 `[H, W, C]` (an alpha channel dropped)."""
  return image[..., :-1] if image.shape[-1] in (2, 4) else image


def plain_input(image: np.ndarray, want: tuple[int, int, int], path: str, run_desc: str):
  """The image itself in [-1, 1] (alpha ignored); refused unless H x W x C is `want`."""
  x = _colour(image)
  if x.shape[:2] != want[:2]:
    _refuse(path, x.shape, _shape_text(want), run_desc, _resize_hint(*want[:2]))
  if x.shape[-1] != want[-1]:
    _refuse(path, x.shape, _shape_text(want), run_desc, _channels_hint(want[-1]))
  return _unit(x)


def colorize_input(image: np.ndarray, want: tuple[int, int, int], path: str, run_desc: str):
  """'colorize': greyscale as is, colour reduced to BT.601 luma (`tasks.greyscale`)."""
  x = _colour(image)
  if x.shape[:2] != want[:2]:
    hw = _shape_text(want[:2])
    _refuse(path, x.shape, f'{hw}x1 (or {hw}x3, made greyscale)', run_desc, _resize_hint(*want[:2]))
  x = _unit(x)
  return tasks.greyscale(x[None])[0] if x.shape[-1] == 3 else x


def superres_input(image: np.ndarray, want: tuple[int, int, int], path: str, run_desc: str):
  """'superres': an image of a quarter of the side upsampled bicubically
  (`tasks.upsample_bicubic`), or one of the full side taken as an upsampled input."""
  x = _colour(image)
  s, c = want[0], want[-1]
  low = s // 4
  if x.shape[:2] not in ((low, low), (s, s)):
    _refuse(
      path, x.shape, f'{low}x{low}x{c} (or an upsampled {s}x{s}x{c})', run_desc,
      _resize_hint(low, low),
    )  # fmt: skip
  if x.shape[-1] != c:
    _refuse(path, x.shape, f'{low}x{low}x{c}', run_desc, _channels_hint(c))
  x = _unit(x)
  return tasks.upsample_bicubic(x[None], s)[0] if x.shape[0] == low else x


def fill_hole(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """The inpainting input of images with a known hole (`tasks.hide_squares`'s fill).

  Args:
    images: float32 `[N, S, S, C]` in [-1, 1].
    mask: float32 `[N, S, S, 1]`, 1 in the hole, 0 elsewhere; every image has a visible pixel.

  Returns:
    float32 `[N, S, S, C + 1]`: the hole filled with the mean of the visible pixels per
    channel, then the mask channel as +1 in the hole and -1 elsewhere.
  """
  visible = 1.0 - mask
  means = (images * visible).sum(axis=(1, 2), keepdims=True) / visible.sum(
    axis=(1, 2), keepdims=True
  )
  filled = images * visible + means * mask
  return np.concatenate([filled, 2.0 * mask - 1.0], axis=-1).astype(np.float32)


def inpaint_input(image: np.ndarray, want: tuple[int, int, int], path: str, run_desc: str):
  """'inpaint': the hole is the pixels of alpha < 128; mean-filled plus a mask channel."""
  c = want[-1] - 1  # the image's channels; the model's input has the mask channel too
  expected = f'{_shape_text(want[:2])}x{c + 1} ({"greyscale" if c == 1 else "RGB"} + alpha)'
  if image.shape[:2] != want[:2]:
    _refuse(path, image.shape, expected, run_desc, _resize_hint(*want[:2]))
  if image.shape[-1] != c + 1:
    raise TranslateUsageError(
      f'{path} is {_shape_text(image.shape)} (HxWxC) but this {run_desc} needs {expected}: '
      'mark the hole to fill as transparent pixels (alpha 0) in a '
      f'{"LA" if c == 1 else "RGBA"} PNG.'
    )
  mask = (image[..., -1:] < 128).astype(np.float32)
  if mask.all():
    raise TranslateUsageError(f'{path} is transparent everywhere; leave some pixels visible.')
  return fill_hole(_unit(image[..., :-1])[None], mask[None])[0]


# How each task's inputs are prepared from an image file; other tasks use `plain_input`.
INPUT_CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
  'colorize': colorize_input,
  'superres': superres_input,
  'inpaint': inpaint_input,
}


def display_inputs(task: str, inputs: np.ndarray, out_channels: int) -> np.ndarray:
  """Inputs `[N, S, S, C_in]` as viewable images with `out_channels` channels (a mask
  channel dropped, greyscale tiled to RGB), for the input | output grid."""
  x = tasks.input_as_image(task, inputs, out_channels)
  if x.shape[-1] == 1 and out_channels == 3:
    x = np.repeat(x, 3, axis=-1)
  return x


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `translate` will do, every argument checked: files in, where and what out."""

  record: dict[str, Any]
  direction: str
  files: list[str]
  out: str
  mode: str  # 'image' (one file), 'folder' (one PNG per input) or 'grid'


def _list_images(folder: str) -> list[str]:
  files = sorted(
    os.path.join(folder, f)
    for f in os.listdir(folder)
    if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))
  )
  if not files:
    raise TranslateUsageError(f'--input {folder!r} holds no .png/.jpg/.jpeg images.')
  stems: dict[str, str] = {}
  for f in files:
    stem = os.path.splitext(os.path.basename(f))[0]
    if stem in stems:
      raise TranslateUsageError(
        f'--input {os.path.basename(stems[stem])} and {os.path.basename(f)} would both be '
        f'written as {stem}.png; rename one.'
      )
    stems[stem] = f
  return files


def _out_mode(out: str, input_is_folder: bool) -> str:
  """'image', 'folder' or 'grid' for `--out`, or a one-line error."""
  if os.path.isdir(out):
    if os.listdir(out):
      raise TranslateUsageError(
        f'--out {out!r} is a folder that is not empty; give a new or empty folder (nothing is '
        'overwritten).'
      )
    return 'folder'
  ext = os.path.splitext(out)[1].lower()
  if not ext:
    if os.path.lexists(out):
      raise TranslateUsageError(f'--out {out!r} is a file; give an image path or a new folder.')
    return 'folder'
  if input_is_folder and ext != '.png':
    raise TranslateUsageError(
      f'--out {out!r}: for a folder of inputs give a folder (no extension) or a .png grid, '
      f'not {ext}.'
    )
  if ext not in IMAGE_EXTENSIONS:
    raise TranslateUsageError(
      f'--out {out!r}: unknown extension {ext}; give a .png (lossless), .jpg or .jpeg image, '
      'or a folder (no extension).'
    )
  return 'grid' if input_is_folder else 'image'


def plan(workdir: str, input_path: str, out: str, direction: str, batch_size: int) -> Plan:
  """Checks every argument without reading the checkpoint (cheap); see `translate`.

  Raises:
    TranslateUsageError: a bad --batch, --input, --out or --direction (one line).
    FileNotFoundError, gan_jax.errors.UnreadableCheckpointError: `workdir` is missing, not a
      translation run, or its record is garbled (`run.read_run_record`).
  """
  if batch_size < 1:
    raise TranslateUsageError(f'--batch={batch_size} must be a positive number of images.')
  record = run_lib.read_run_record(workdir)
  try:
    run_lib.check_direction(record['kind'], direction)
  except ValueError as e:
    raise TranslateUsageError(str(e)) from None
  if os.path.isdir(input_path):
    files, is_folder = _list_images(input_path), True
  elif os.path.isfile(input_path):
    if not input_path.lower().endswith(IMAGE_EXTENSIONS):
      raise TranslateUsageError(
        f'--input {input_path!r} is not a .png/.jpg/.jpeg image or a folder of them.'
      )
    files, is_folder = [input_path], False
  else:
    raise TranslateUsageError(f'--input {input_path!r} does not exist.')
  mode = _out_mode(out, is_folder)
  return Plan(record=record, direction=direction, files=files, out=out, mode=mode)


def prepare_inputs(record: dict[str, Any], direction: str, image: np.ndarray, path: str):
  """One image file's pixels (uint8 `[H, W, C]`, `read_image`) as the generator's input,
  float32 `[S, S, C_in]` in [-1, 1], by the run's task (`INPUT_CONVENTIONS`).

  Raises:
    TranslateUsageError: the image has another size or other channels than the run takes.
  """
  want = tuple(record['image_shapes'][direction[0]])
  task = str(record['task'].get('task', ''))
  pix2pix = record['kind'] == 'pix2pix'
  convention = INPUT_CONVENTIONS.get(task, plain_input) if pix2pix else plain_input
  run_desc = f'{record["kind"]} {task} run ({direction})'
  return convention(image, want, path, run_desc)


def _batches(p: Plan, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
  for lo in range(0, len(p.files), batch_size):
    names = p.files[lo : lo + batch_size]
    yield names, np.stack([prepare_inputs(p.record, p.direction, read_image(f), f) for f in names])


def _write_image(path: str, image: np.ndarray) -> None:
  """Writes float `[H, W, C]` in [-1, 1] as an 8-bit image (format from the extension)."""
  x = sampling.to_uint8(image)
  Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x).save(path)


def translate(
  workdir: str,
  input_path: str,
  out: str,
  *,
  direction: str = 'a2b',
  batch_size: int = 64,
) -> dict[str, Any]:
  """Translates one image or a folder of images with a run's generator (module docstring).

  Args:
    workdir: a translation run folder (`gan_jax.translation.run`).
    input_path: an image file, or a folder of them.
    out: an image file (one input), a folder (new or empty), or a .png grid (a folder in).
    direction: 'a2b', or 'b2a' (CycleGAN runs only).
    batch_size: images per generator call.

  Returns:
    {'count', 'step', 'direction', 'mode', 'out'}.

  Raises:
    TranslateUsageError: a bad argument or input image (one line; nothing is written).
    FileNotFoundError, gan_jax.errors.UnreadableCheckpointError: `workdir` is missing, not a
      translation run, or has no readable checkpoint.
  """
  p = plan(workdir, input_path, out, direction, batch_size)
  for f in p.files:  # every image is read and checked before anything is computed or written
    prepare_inputs(p.record, direction, read_image(f), f)
  run = run_lib.load_translation_run(workdir)
  if p.mode == 'folder':
    _translate_to_folder(p, run, batch_size)
  else:
    _translate_to_file(p, run, batch_size)
  return {
    'count': len(p.files),
    'step': run.step,
    'direction': direction,
    'mode': p.mode,
    'out': out,
  }


def _translate_to_file(p: Plan, run: run_lib.TranslationRun, batch_size: int) -> None:
  """One image ('image'), or rows of input | output ('grid'), written under a temporary name
  beside `p.out` and renamed when complete."""
  out_c = run.output_shape(p.direction)[-1]
  rows = []
  for _, x in _batches(p, batch_size):
    y = run.translate(x, p.direction, batch_size=batch_size)
    if p.mode == 'image':
      rows.append(y)
    else:
      pairs = np.stack([display_inputs(run.task, x, out_c), y], axis=1)
      rows.append(pairs.reshape((-1,) + y.shape[1:]))
  target = os.path.abspath(p.out)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  root, ext = os.path.splitext(os.path.basename(target))
  tmp = os.path.join(os.path.dirname(target), f'.{root}.partial{ext}')
  try:
    if p.mode == 'image':
      _write_image(tmp, rows[0][0])
    else:
      sampling.save_grid(tmp, np.concatenate(rows), ncol=2, scale=2)
    os.replace(tmp, target)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _translate_to_folder(p: Plan, run: run_lib.TranslationRun, batch_size: int) -> None:
  """One PNG per input, written into a temporary folder beside `p.out`, renamed when done."""
  target = os.path.abspath(p.out)
  parent = os.path.dirname(target)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(target)}.partial-', dir=parent)
  try:
    for names, x in _batches(p, batch_size):
      y = run.translate(x, p.direction, batch_size=batch_size)
      for name, image in zip(names, y):
        stem = os.path.splitext(os.path.basename(name))[0]
        _write_image(os.path.join(tmp, stem + '.png'), image)
    if os.path.isdir(target):  # an empty folder: rename() replaces it
      os.rmdir(target)
    os.rename(tmp, target)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
