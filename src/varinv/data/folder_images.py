"""Image folder reader of `varinv data images` and of a run's raw image input (layouts a and b: the
docstring of :mod:`varinv.data.folders`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from varinv.data.folder_common import (BadFile, Imported, Unit, check_length, check_source, excluded_paths, file_key,
                                       nothing_left, parse_size, sample_windows, skip_policy, unique_names, visible,
                                       wording)
from varinv.errors import ConfigError, DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CHANNELS = ("rgb", "grey")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS


def load_image(path: Path):
    """An image file as an RGB Pillow image (alpha composited on white, 16-bit/float scaled to 8 bits)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                a = np.asarray(im, dtype=np.float64)
                top = 65535.0 if a.max(initial=0) > 255 else 255.0
                im = Image.fromarray(np.clip(np.rint(a * 255.0 / top), 0, 255).astype(np.uint8), "L")
            if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            return im.convert("RGB")
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError, DecompressionBomb…)
        raise BadFile(path, f"cannot be read as an image ({type(e).__name__}: {e})") from None


def _fragment_arrays(images, size: tuple[int, int] | None) -> list[np.ndarray]:
    from PIL import Image

    if size is not None:
        images = [im.resize((size[1], size[0]), Image.Resampling.BILINEAR) for im in images]
    return [np.asarray(im, dtype=np.uint8) for im in images]


def _load_tiled(unit: Unit, tiles: int, size, for_run: str | None = None) -> None:
    im = load_image(unit.source)
    w, h = im.size
    tw = w // tiles
    if tw < 1:
        raise BadFile(unit.source,
                      wording(for_run, f"is {w} px wide, too narrow for --tiles {tiles}",
                              f"is {w} px wide, too narrow for the {tiles} tiles (fragments) of run {{run}}"),
                      wording(for_run, "use fewer tiles or remove the file", "use a wider image or remove the file"))
    unit.frags = _fragment_arrays([im.crop((i * tw, 0, (i + 1) * tw, h)) for i in range(tiles)], size)


def _load_folder(unit: Unit, size) -> None:
    files = unit.frag_files or []
    if not files:
        raise BadFile(unit.source, "holds no image files (too few fragments)",
                      f"add fragment images ({', '.join(IMAGE_EXTS)}) or remove the folder")
    unit.frags = _fragment_arrays([load_image(f) for f in files], size)


def _fragment_files(d: Path, excl: set[Path] = frozenset()) -> list[Path]:
    """The fragment images of a sample folder (layout b), in natural name order."""
    return sorted((f for f in visible(d.iterdir(), excl) if _is_image(f)), key=file_key)


def _chw(frag: np.ndarray, channels: str) -> np.ndarray:
    """(H, W, 3) uint8 → (3, H, W), or (1, H, W) ITU-R 601 luma (Pillow's "L" formula) for grey."""
    if channels == "rgb":
        return np.ascontiguousarray(frag.transpose(2, 0, 1))
    f = frag.astype(np.uint32)
    return ((f[..., 0] * 299 + f[..., 1] * 587 + f[..., 2] * 114 + 500) // 1000).astype(np.uint8)[None]


def _has_colour(frags: list[np.ndarray]) -> bool:
    return any(not ((f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all()) for f in frags)


def image_layout(src: str | Path, *, one_sample: bool = False, exclude=(), for_run: str | None = None) -> str:
    """``"image-per-sample"`` (layout a; also a single image file, with ``for_run``) or
    ``"folder-per-sample"`` (layout b; also any folder with ``one_sample``); raises :class:`DataError`
    for a folder that mixes both or holds neither."""
    src = check_source(src, "images", file_ok=for_run is not None)
    if src.is_file():
        if not _is_image(src):
            raise DataError(f"{src} is not an image file ({', '.join(e[1:] for e in IMAGE_EXTS)}); "
                            "pass an image, or a folder of them")
        return "image-per-sample"
    if one_sample:
        return "folder-per-sample"
    files, img_dirs, _ = _image_entries(src, excluded_paths(exclude))
    if files and img_dirs:
        raise DataError(
            f"{src} mixes image files ({files[0].name}) and sample sub-folders of images ({img_dirs[0].name}); "
            + wording(for_run, "use either one image per sample (with --tiles) or one sub-folder of fragment images "
                            "per sample",
                   "use either one image per sample or one sub-folder of fragment images per sample")
        )
    if not files and not img_dirs:
        raise DataError(
            f"{src} holds no images ({', '.join(e[1:] for e in IMAGE_EXTS)}) and no sub-folders of images; "
            + wording(for_run, "point DIR at a folder with one image per sample or one sub-folder per sample",
                      "pass a folder with one image per sample or one sub-folder of fragment images per sample")
        )
    return "image-per-sample" if files else "folder-per-sample"


def _image_entries(src: Path, excl: set[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(image files, sub-folders holding images, all sub-folders) directly in ``src``."""
    entries = sorted(visible(src.iterdir(), excl), key=file_key)
    files = [p for p in entries if _is_image(p)]
    dirs = [p for p in entries if p.is_dir()]
    img_dirs = [d for d in dirs if any(_is_image(f) for f in d.iterdir() if not f.name.startswith("."))]
    return files, img_dirs, dirs


def read_images(
    src: str | Path,
    *,
    tiles: int | None = None,
    size: tuple[int, int] | str | None = None,
    channels: str | None = None,
    length: int | None = None,
    skip_bad: bool = False,
    exclude=(),
    one_sample: bool = False,
    for_run: str | None = None,
) -> Imported:
    """Read an image folder (layouts: module doc) into uint8 samples (N, L, C, H, W).

    ``size``: ``(H, W)`` or ``"HxW"``; ``channels``: ``"rgb"``, ``"grey"`` or None (auto); ``exclude``:
    paths inside ``src`` to ignore (the output folder). ``one_sample``: ``src`` is one sample's folder
    (its images are the fragments). ``for_run``: a run's raw input (module doc); ``src`` may be one image.
    """
    if isinstance(size, str):
        size = parse_size(size)
    elif size is not None:
        size = parse_size(f"{size[0]}x{size[1]}")
    if channels is not None:
        channels = {"gray": "grey", "greyscale": "grey", "grayscale": "grey"}.get(channels.lower(), channels.lower())
        if channels not in CHANNELS:
            raise ConfigError(f"--channels {channels!r} is invalid: use rgb or grey")
    tiles = check_length(tiles, "--tiles")
    length = check_length(length, "--length")
    src = check_source(src, "images", file_ok=for_run is not None)
    excl = excluded_paths(exclude)
    layout = image_layout(src, one_sample=one_sample, exclude=exclude, for_run=for_run)
    skips = skip_policy(skip_bad, for_run)
    if layout == "image-per-sample":
        files = [src] if src.is_file() else _image_entries(src, excl)[0]
        if tiles is None:
            raise ConfigError(
                f"{src} holds one image per sample: pass --tiles L to cut each image into L fragments along its width"
            )
        if length is not None and length > tiles:
            raise ConfigError(f"--length {length} is longer than the {tiles} tiles of each image; "
                              "use --length <= --tiles")
        names = unique_names(files, lambda p: p.stem, lambda p: p.name)
        units = [Unit(n, p) for n, p in zip(names, files)]
    else:
        if tiles is not None:
            raise ConfigError(
                f"--tiles applies to a folder of one image per sample; {src} holds one sub-folder per sample"
            )
        dirs = [src] if one_sample else _image_entries(src, excl)[2]
        units = [Unit(d.name, d, frag_files=_fragment_files(d, excl)) for d in dirs]
    found = {u.name for u in units}

    good: list[Unit] = []
    for u in units:
        try:
            _load_tiled(u, tiles, size, for_run) if layout == "image-per-sample" else _load_folder(u, size)
            good.append(u)
        except BadFile as e:
            skips.bad(e)

    if size is None and good:  # one common fragment size
        shapes = Counter(f.shape[:2] for u in good for f in u.frags)
        ref = max(shapes, key=lambda s: (shapes[s], s))  # the most common (ties: the larger)
        kept = []
        for u in good:
            k = next((i for i, f in enumerate(u.frags) if f.shape[:2] != ref), None)
            if k is None:
                kept.append(u)
                continue
            h, w = u.frags[k].shape[:2]
            path, what = (u.frag_files[k], "is") if u.frag_files else (u.source, "gives tiles of")
            skips.bad(BadFile(path, f"{what} {h}x{w} (HxW) but most fragments are {ref[0]}x{ref[1]}",
                              f"pass --size {ref[0]}x{ref[1]} to resize every fragment, or fix the file"))
        good = kept

    if layout == "image-per-sample":
        big = tiles if length is None else length
    else:
        big = length
        if big is None and good:
            counts = Counter(u.n for u in good)
            big = max(counts, key=lambda c: (counts[c], c))
        kept = []
        for u in good:
            if u.n < (big or 0):
                skips.bad(BadFile(u.source, f"has too few fragments ({u.n}) for samples of L = {big}"
                                  + wording(for_run, "", " (run {run})"),
                                  wording(for_run, "add fragment images or use a smaller --length",
                                          "add fragment images or remove the folder")))
            elif length is None and u.n > big:
                skips.bad(BadFile(u.source, f"has {u.n} fragments but most samples have {big}",
                                  f"pass --length {big} to cut every sample into windows of {big} fragments"))
            else:
                kept.append(u)
        good = kept
    if not good:
        raise DataError(nothing_left(src, skips.items))

    if channels is None:
        channels = "rgb" if any(_has_colour(u.frags) for u in good) else "grey"
    wins = sample_windows(good, big)
    x = np.stack([np.stack([_chw(f, channels) for f in u.frags[s : s + big]]) for u, s in wins])
    rows = [(u.name, s) for u, s in wins]
    for u in good:
        u.frags = [None] * u.n  # keep the count for label checks, drop the arrays
    params = {
        "source": str(src.resolve()), "layout": layout, "tiles": tiles, "length": int(big),
        "size": list(size) if size is not None else None, "channels": channels,
        "resize": "Pillow bilinear (antialiased)" if size is not None else None,
        "n_skipped": len(skips.items),
    }
    return Imported(x=x, rows=rows, units={u.name: u for u in good}, found=found, skipped=skips.items,
                    kind="image", params=params)

