"""Audio folder reader of `varinv data audio` and of a run's raw audio input: loading, resampling,
onset detection, cutting into fragments and their log-STFT features (the docstring of
:mod:`varinv.data.folders`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from varinv.data.folder_common import (BadFile, Imported, Unit, check_length, check_source, excluded_paths, file_key,
                                       nothing_left, sample_windows, skip_policy, unique_names, wording)
from varinv.errors import ConfigError, DataError, DependencyError

AUDIO_EXTS = (".wav", ".flac", ".ogg")
DEFAULT_WINDOW = 1.0
DEFAULT_AUDIO_LENGTH = 8
DEFAULT_BINS = 128
DEFAULT_ONSET_THRESHOLD = 0.2
DEFAULT_MIN_GAP = 0.1
ONSET_RANGE_DB = 80.0
ENDING_GATE_DB = 6.0
_FEATURE_BATCH = 256


@dataclass
class AudioSettings:
    """How audio becomes fragments (recorded in the manifest's ``params``)."""

    window: float = DEFAULT_WINDOW
    onsets: bool = False
    min_gap: float = DEFAULT_MIN_GAP
    threshold: float = DEFAULT_ONSET_THRESHOLD
    bins: int = DEFAULT_BINS
    length: int = DEFAULT_AUDIO_LENGTH

    def __post_init__(self):
        from varinv.audio.features import check_n_bins

        if not (isinstance(self.window, (int, float)) and math.isfinite(self.window) and self.window > 0):
            raise ConfigError(f"--window {self.window!r} is invalid: give the fragment length in seconds, e.g. 1.0")
        if self.window_samples < 1:
            raise ConfigError(f"--window {self.window!r} is shorter than one sample at 16 kHz; use e.g. 1.0")
        if not (math.isfinite(self.min_gap) and self.min_gap >= 0):
            raise ConfigError(f"--min-gap {self.min_gap!r} is invalid: give seconds >= 0, e.g. 0.1")
        if not (math.isfinite(self.threshold) and 0 <= self.threshold < 1):
            raise ConfigError(f"--onset-threshold {self.threshold!r} is invalid: give a number in [0, 1), e.g. 0.2")
        try:
            self.bins = check_n_bins(self.bins)
        except ConfigError:
            raise ConfigError(f"--bins {self.bins!r} is out of range: use an integer in 1..512 (e.g. 128)") from None
        check_length(self.length, "--length")

    @property
    def window_samples(self) -> int:
        from varinv.audio.features import SR

        return int(round(self.window * SR))

    @property
    def frames(self) -> int:
        from varinv.audio.features import HOP

        return 1 + self.window_samples // HOP

    def to_params(self) -> dict:
        from varinv.audio.features import BIN_HZ, HOP, N_FFT, SR

        return {
            "sr": SR, "n_fft": N_FFT, "hop": HOP, "n_bins": self.bins, "bins": self.bins, "bin_hz": BIN_HZ,
            "feature": "log(|STFT| + 1e-5) of each fragment alone, hann, center=True (zero pad), "
                       "Nyquist bin dropped, low n_bins kept",
            "window": self.window, "window_samples": self.window_samples, "frames": self.frames,
            "fragment_frames": self.frames, "length": self.length,
            "segmentation": "onsets" if self.onsets else "windows",
            "onsets": {"detector": "spectral flux of the log-STFT (floored range_db below the file's peak), "
                                   "0 where the energy falls by > ending_gate_db, median-subtracted, "
                                   "max-normalised; local maxima >= threshold, min_gap apart",
                       "threshold": self.threshold, "min_gap": self.min_gap, "range_db": ONSET_RANGE_DB,
                       "ending_gate_db": ENDING_GATE_DB}
            if self.onsets else None,
            "mono": "mean of channels", "resample": "scipy.signal.resample_poly to 16 kHz", "normalise": None,
        }

    @classmethod
    def from_params(cls, params: dict) -> "AudioSettings":
        """The settings of an imported audio dataset (``Dataset.manifest["params"]``)."""
        on = params.get("onsets") or {}
        return cls(window=float(params["window"]), onsets=params.get("segmentation") == "onsets",
                   min_gap=float(on.get("min_gap", DEFAULT_MIN_GAP)),
                   threshold=float(on.get("threshold", DEFAULT_ONSET_THRESHOLD)),
                   bins=int(params["n_bins"]), length=int(params["length"]))


def _soundfile():
    try:
        import soundfile
    except ImportError:
        raise DependencyError("soundfile is not installed: run pip install 'varinv[audio]' "
                              "(or pip install soundfile)") from None
    return soundfile


def resample(wave: np.ndarray, sr: int, target: int | None = None) -> np.ndarray:
    """``wave`` from ``sr`` to ``target`` Hz (default 16 kHz) with a rational polyphase filter."""
    from scipy.signal import resample_poly

    from varinv.audio.features import SR

    target = SR if target is None else int(target)
    sr = int(sr)
    if sr == target:
        return np.asarray(wave, np.float32)
    g = math.gcd(sr, target)
    return resample_poly(np.asarray(wave, np.float64), target // g, sr // g).astype(np.float32)


def load_audio(path: Path) -> np.ndarray:
    """A file as 16-kHz mono float32 (channels averaged); raises :class:`BadFile`."""
    sf = _soundfile()
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, …
        raise BadFile(path, f"cannot be read as audio ({type(e).__name__}: {e})") from None
    if data.shape[0] == 0:
        raise BadFile(path, "holds no audio samples (too short for one fragment)")
    if not np.isfinite(data).all():
        raise BadFile(path, "contains NaN or Inf samples")
    return resample(data.mean(axis=1), sr)


def onset_envelope(wave: np.ndarray) -> np.ndarray:
    """Spectral-flux onset strength per STFT frame (16-kHz audio; frame ``t`` is centred on ``t * 512``).

    The log-magnitude STFT (:func:`varinv.audio.features.log_stft`) is floored 80 dB below its peak.
    The flux of frame ``t`` is the half-wave-rectified increase over frame ``t - 1``, summed over bins
    (frame 0 is compared with the file's median spectrum, and frame 1, the first without zero padding,
    with the larger of the two). Where the frame energy one frame later is more than 6 dB below the energy
    one frame earlier (a sound ending; an abrupt end splatters over all bins like an onset), and in the
    frames whose window reaches past the end of the file, the flux is set to 0 (so an onset during the
    fading end of a louder sound can be missed). The median flux is subtracted, the result clipped at 0
    and divided by its maximum, so it lies in [0, 1] (all zeros when nothing rises).
    """
    from varinv.audio.features import HOP, log_stft

    lm = log_stft(np.asarray(wave, np.float32)).numpy().astype(np.float64)  # (512, T)
    lm = np.maximum(lm, lm.max() - ONSET_RANGE_DB / 20.0 * math.log(10.0))
    med = np.median(lm, axis=1, keepdims=True)
    prev = np.concatenate([med, lm[:, :-1]], axis=1)
    if lm.shape[1] > 1:
        prev[:, 1] = np.maximum(lm[:, 0], med[:, 0])
    flux = np.maximum(lm - prev, 0.0).sum(axis=0)
    energy = np.exp(2.0 * (lm - lm.max())).sum(axis=0)  # relative to the peak, to stay finite
    before = np.concatenate([[np.exp(2.0 * (med - lm.max())).sum()], energy[:-1]])
    after = np.concatenate([energy[1:], energy[-1:]])
    flux[after < before * 10.0 ** (-ENDING_GATE_DB / 10.0)] = 0.0
    flux[(np.arange(flux.size) + 1) * HOP > np.asarray(wave).size] = 0.0  # windows reaching past the end
    env = np.maximum(flux - np.median(flux), 0.0)
    top = env.max(initial=0.0)
    return env / top if top > 0 else env


def detect_onsets(wave: np.ndarray, sr: int | None = None, *, threshold: float = DEFAULT_ONSET_THRESHOLD,
                  min_gap: float = DEFAULT_MIN_GAP) -> np.ndarray:
    """Onset sample positions (int64, ascending) of a mono waveform at 16 kHz (resampled if ``sr`` differs).

    Peak picking on :func:`onset_envelope`: a frame is a candidate where the envelope is >= ``threshold``
    and a local maximum (> the previous frame, >= the next); candidates are accepted strongest first,
    each at least ``min_gap`` seconds from every accepted one. An onset is reported at its frame's centre
    (``t * 512``), which lies within one hop (32 ms) of the true onset.
    """
    from varinv.audio.features import HOP, SR

    wave = np.asarray(wave, np.float32).reshape(-1)
    if sr is not None and int(sr) != SR:
        wave = resample(wave, sr)
    if wave.size == 0:
        return np.zeros(0, np.int64)
    env = onset_envelope(wave)
    left = np.concatenate([[-1.0], env[:-1]])
    right = np.concatenate([env[1:], [-1.0]])
    cand = np.nonzero((env >= threshold) & (env > left) & (env >= right) & (env > 0))[0]
    gap = min_gap * SR / HOP  # in frames
    chosen: list[int] = []
    for t in sorted(cand, key=lambda t: (-env[t], t)):
        if all(abs(int(t) - c) >= gap for c in chosen):
            chosen.append(int(t))
    return np.array(sorted(chosen), np.int64) * HOP


def cut_windows(wave: np.ndarray, window_samples: int) -> np.ndarray:
    """Consecutive non-overlapping windows (n, window_samples); a shorter tail is dropped."""
    n = wave.size // window_samples
    return np.ascontiguousarray(wave[: n * window_samples].reshape(n, window_samples), np.float32)


def cut_at(wave: np.ndarray, starts: np.ndarray, window_samples: int) -> np.ndarray:
    """The audio from each start on, cut or zero-padded to ``window_samples``: (n, window_samples)."""
    out = np.zeros((len(starts), window_samples), np.float32)
    for i, s in enumerate(starts):
        seg = wave[int(s) : int(s) + window_samples]
        out[i, : seg.size] = seg
    return out


def fragment_features(frags: np.ndarray, bins: int) -> np.ndarray:
    """log-STFT features of each fragment on its own: (n, samples) → float16 (n, bins, 1 + samples // 512)."""
    import torch

    from varinv.audio.features import HOP, log_stft, reduce_bins

    n, length = frags.shape
    out = np.empty((n, bins, 1 + length // HOP), np.float16)
    with torch.no_grad():
        for i in range(0, n, _FEATURE_BATCH):
            lm = log_stft(frags[i : i + _FEATURE_BATCH]).numpy()
            out[i : i + _FEATURE_BATCH] = reduce_bins(lm, bins).astype(np.float16)
    return out


def audio_fragments(wave: np.ndarray, settings: AudioSettings, path: Path | str = "audio",
                    for_run: str | None = None) -> np.ndarray:
    """(n, bins, frames) float16 fragments of 16-kHz mono audio (windows or onsets); raises :class:`BadFile`."""
    from varinv.audio.features import SR

    win = settings.window_samples
    if settings.onsets:
        starts = detect_onsets(wave, threshold=settings.threshold, min_gap=settings.min_gap)
        if starts.size == 0:
            raise BadFile(path, "has no detected onsets (too short for one fragment)",
                          wording(for_run, "lower --onset-threshold, or cut it by --window without --onsets",
                                  "run {run} cuts audio at onsets: pass audio with clear note onsets "
                                  "or remove the file"))
        frags = cut_at(wave, starts, win)
    else:
        if wave.size < win:
            raise BadFile(path, f"is {wave.size / SR:.3f} s long, too short for one fragment of "
                                + wording(for_run, f"--window {settings.window} s",
                                          f"{settings.window:g} s (run {{run}})"),
                          wording(for_run, "use a shorter --window or remove the file",
                                  "pass a longer file or remove it"))
        frags = cut_windows(wave, win)
    return fragment_features(frags, settings.bins)


def _audio_files(src: Path, excl: set[Path]) -> list[tuple[str, Path]]:
    """(sample name, path) of every audio file under ``src`` (recursive; or ``src`` itself, a file)."""
    if src.is_file():
        if src.suffix.lower() not in AUDIO_EXTS:
            raise DataError(f"{src} is not an audio file ({', '.join(e[1:] for e in AUDIO_EXTS)}); "
                            "pass an audio file, or a folder of them")
        return [(src.stem, src)]
    files = []
    for p in src.rglob("*"):
        rel = p.relative_to(src)
        if p.suffix.lower() in AUDIO_EXTS and p.is_file() and not any(part.startswith(".") for part in rel.parts) \
                and not any(q == p.resolve() or q in p.resolve().parents for q in excl):
            files.append(p)
    files.sort(key=lambda p: tuple(file_key(Path(part)) for part in p.relative_to(src).parts))
    if not files:
        raise DataError(f"{src} holds no audio files ({', '.join(e[1:] for e in AUDIO_EXTS)}); "
                        "point DIR at the folder that holds them (sub-folders are searched)")
    names = unique_names(files, lambda p: p.stem, lambda p: p.relative_to(src).with_suffix("").as_posix())
    return list(zip(names, files))


def read_audio(src: str | Path, settings: AudioSettings | None = None, *, skip_bad: bool = False,
               exclude=(), one_sample: bool = False, for_run: str | None = None) -> Imported:
    """Read every wav/flac/ogg under ``src`` (recursively) into float16 samples (N, L, 1, bins, frames).

    ``one_sample``: one sample of all fragments of all files, in order (no windows of L). ``for_run``:
    a run's raw input (module doc); ``src`` may be one audio file.
    """
    settings = settings or AudioSettings()
    src = check_source(src, "audio files", file_ok=for_run is not None)
    _soundfile()
    named = _audio_files(src, excluded_paths(exclude))
    names = [n for n, _ in named]
    skips = skip_policy(skip_bad, for_run)
    good: list[Unit] = []
    L = 1 if one_sample else settings.length
    for name, path in named:
        try:
            frags = audio_fragments(load_audio(path), settings, path, for_run)
            if len(frags) < L:
                raise BadFile(path, f"gives {len(frags)} fragment(s), too few for one sample of "
                                    + wording(for_run, f"--length {L}", f"L = {L} (run {{run}})"),
                              wording(for_run, "use a smaller --length (or a shorter --window), or remove the file",
                                      f"pass a file of at least {L} fragments or remove it"))
            good.append(Unit(name, path, frags))
        except BadFile as e:
            skips.bad(e)
    if not good:
        raise DataError(nothing_left(src, skips.items))
    if one_sample:
        x = np.concatenate([u.frags for u in good])[None, :, None]  # (1, fragments, 1, bins, frames)
        rows = [(src.stem if src.is_file() else src.name, 0)]
    else:
        wins = sample_windows(good, L)
        x = np.stack([u.frags[s : s + L] for u, s in wins])[:, :, None]  # (N, L, 1, bins, frames)
        rows = [(u.name, s) for u, s in wins]
    n_frags = {u.name: u.n for u in good}
    for u in good:
        u.frags = [None] * u.n  # keep the count for label checks, drop the arrays
    params = {**settings.to_params(), "source": str(src.resolve()), "n_skipped": len(skips.items),
              "fragments_per_file": n_frags}
    return Imported(x=x, rows=rows, units={u.name: u for u in good}, found=set(names), skipped=skips.items,
                    kind="spectrogram", params=params)
