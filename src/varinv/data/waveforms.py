"""Waveforms: the MARL setting (papers.md §4) as sequences.

Style = waveform (sine, sawtooth, square, triangle; 4 classes). Content = one of 21 frequencies,
log-spaced over three octaves from 110 Hz to 880 Hz (ratio 2^(3/20): 180 cents between neighbours).
A sample is ``n_fragments`` one-second tones that share one waveform and have distinct frequency
classes (drawn without replacement); every tone gets its own detune (uniform within ±40 cents, less
than a quarter tone, so classes never overlap), starting phase and amplitude (0.5–1.0).

The default ``n_fragments = 21`` plays every frequency once per sample, in a random order, as an
InsNotes sample plays each of its 12 pitches once. With fewer, sample means of the content differ:
for 8 of 21 equidistant atoms the across-sample spread of the means is about 1/3.6 of the
within-sample spread, so V3's content hinge (ratio >= r = 15) cannot be met by any faithful
codebook, whereas with all 21 it is met exactly.

Synthesis is band-limited: each tone is the additive Fourier series of its waveform (sawtooth:
all harmonics 1/k; square: odd harmonics 1/k; triangle: odd harmonics ±1/k²) truncated below
7.9 kHz, so nothing aliases at 16 kHz. It is built as a 4096-point wavetable per tone, peak-normalised,
read with linear interpolation, and faded in and out over 10 ms. A tone is 16,000 samples, which
gives exactly 32 STFT frames.

Features follow InsNotes (:mod:`varinv.audio.features`): log-STFT, n_fft 1024, hop 512, Nyquist
bin dropped, low ``n_bins`` kept, then the 32 frames averaged into ``n_frames``. Fragments are
(1, n_bins, n_frames) float16. The defaults are the CPU setting: ``n_bins = 256`` (0–3984 Hz) keeps
at least the 3rd harmonic of every tone (880 Hz · 3 = 2640 Hz), which is what tells square, triangle
and sine apart (fewer than 176 bins would cut it for the top tones, so they are refused), and
``n_frames = 8`` (each the mean of 4 STFT frames), since a tone is stationary and its 32 frames are
near-copies; this makes a fragment 4x cheaper to encode and decode. ``n_bins = 512, n_frames = 32``
is the full resolution. Audio out repeats each pooled frame (manifest ``frame_pool``) before
Griffin-Lim. Splits are 80/10/10 by sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from varinv.audio.features import (FRAGMENT_FRAMES, HOP, N_FFT, SR, check_n_bins, check_n_frames, log_stft,
                                   pool_frames, reduce_bins)
from varinv.data.store import Dataset, from_arrays
from varinv.errors import ConfigError, DataError

WAVEFORMS = ("sine", "sawtooth", "square", "triangle")
N_FREQS = 21
FREQS = 110.0 * 2.0 ** (np.arange(N_FREQS) * 3.0 / (N_FREQS - 1))  # 110 .. 880 Hz
CONTENT_NAMES = [f"{f:.0f}Hz" for f in FREQS]
TONE_SAMPLES = SR  # 1 s -> 1 + 16000 // 512 = 32 frames
MAX_DETUNE_CENTS = 40.0
HARMONIC_LIMIT_HZ = 7900.0
DEFAULT_N_BINS = 256
DEFAULT_N_FRAMES = 8
MIN_N_BINS = 176  # 3rd harmonic of the top (detuned) tone must stay in band
_TABLE = 4096
_FADE = int(0.01 * SR)
_TAG = 7201


def harmonic_amplitudes(waveform: int | str, n_harmonics: int) -> np.ndarray:
    """Sine-series coefficients b_k (k = 1..n_harmonics) of a waveform's Fourier series."""
    w = WAVEFORMS.index(waveform) if isinstance(waveform, str) else int(waveform)
    k = np.arange(1, n_harmonics + 1, dtype=np.float64)
    odd = (k % 2) == 1
    if w == 0:
        return (k == 1).astype(np.float64)
    if w == 1:
        return (2 / np.pi) * ((-1.0) ** (k + 1)) / k
    if w == 2:
        return np.where(odd, 4 / (np.pi * k), 0.0)
    if w == 3:
        return np.where(odd, (8 / np.pi**2) * ((-1.0) ** ((k - 1) // 2)) / k**2, 0.0)
    raise ConfigError(f"waveform {waveform!r} unknown; use one of {WAVEFORMS}")


def synthesize(waveforms, freqs, phases=None, amplitudes=None, n_samples: int = TONE_SAMPLES,
               sr: int = SR) -> np.ndarray:
    """Band-limited tones (B, n_samples) float32 for arrays of waveform index, frequency (Hz),
    starting phase (cycles, default 0) and amplitude (default 1)."""
    waveforms = np.atleast_1d(np.asarray(waveforms, np.int64))
    freqs = np.atleast_1d(np.asarray(freqs, np.float64))
    b = len(freqs)
    phases = np.zeros(b) if phases is None else np.atleast_1d(np.asarray(phases, np.float64))
    amplitudes = np.ones(b) if amplitudes is None else np.atleast_1d(np.asarray(amplitudes, np.float64))
    if np.any(freqs <= 0) or np.any(freqs >= sr / 2):
        raise ConfigError(f"tone frequencies must lie in (0, {sr / 2}) Hz")
    limit = min(HARMONIC_LIMIT_HZ, sr / 2 - 100.0)
    k_max = max(1, int(limit // freqs.min()))
    coef = np.stack([harmonic_amplitudes(w, k_max) for w in waveforms])  # (B, K)
    coef[np.arange(1, k_max + 1)[None, :] * freqs[:, None] >= limit] = 0.0
    theta = 2 * np.pi * np.arange(_TABLE) / _TABLE
    basis = np.sin(np.arange(1, k_max + 1)[:, None] * theta[None, :])  # (K, T)
    tables = coef @ basis
    tables /= np.abs(tables).max(axis=1, keepdims=True)
    tables = np.concatenate([tables, tables[:, :1]], axis=1)  # wrap point for interpolation
    t = np.arange(n_samples, dtype=np.float64) / sr
    pos = np.mod(phases[:, None] + freqs[:, None] * t[None, :], 1.0) * _TABLE
    i0 = pos.astype(np.int64)  # pos >= 0, so truncation is floor
    frac = (pos - i0).astype(np.float32)
    i0 += (np.arange(b) * (_TABLE + 1))[:, None]
    flat = tables.astype(np.float32).reshape(-1)
    lo = flat[i0]
    out = lo + (flat[i0 + 1] - lo) * frac
    fade = min(_FADE, n_samples // 2)
    if fade:
        ramp = (0.5 * (1 - np.cos(np.linspace(0, np.pi, fade)))).astype(np.float32)
        out[:, :fade] *= ramp
        out[:, -fade:] *= ramp[::-1]
    return out * amplitudes[:, None].astype(np.float32)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.progress import TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled)


def generate(out: str | Path, n_samples: int = 1000, seed: int = 0, *, n_fragments: int = N_FREQS,
             n_bins: int = DEFAULT_N_BINS, n_frames: int = DEFAULT_N_FRAMES, overwrite: bool = False,
             progress: bool = True, batch: int = 512) -> Dataset:
    """Synthesise the Waveforms dataset to ``out`` (see the module doc) and return it."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) or choose another path")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 3:
        raise ConfigError(f"n_samples = {n_samples!r} must be an integer >= 3 (80/10/10 splits)")
    if not isinstance(n_fragments, (int, np.integer)) or not 2 <= n_fragments <= N_FREQS:
        raise ConfigError(f"n_fragments = {n_fragments!r} must be 2..{N_FREQS} (distinct frequencies per sample)")
    n_bins = check_n_bins(n_bins)
    if n_bins < MIN_N_BINS:
        raise ConfigError(
            f"n_bins = {n_bins} cuts the 3rd harmonic of the top tones ({FREQS[-1]:.0f} Hz), so square, "
            f"triangle and sine would look alike; use n_bins >= {MIN_N_BINS} (default {DEFAULT_N_BINS})"
        )
    n_frames = check_n_frames(n_frames)
    rng = np.random.default_rng([int(seed), _TAG])
    style = rng.integers(0, len(WAVEFORMS), n_samples)
    content = np.stack([rng.choice(N_FREQS, n_fragments, replace=False) for _ in range(n_samples)])
    detune = rng.uniform(-MAX_DETUNE_CENTS, MAX_DETUNE_CENTS, (n_samples, n_fragments))
    phase = rng.random((n_samples, n_fragments))
    amp = rng.uniform(0.5, 1.0, (n_samples, n_fragments))
    freq = FREQS[content] * 2.0 ** (detune / 1200.0)
    wave_idx = np.repeat(style[:, None], n_fragments, axis=1)

    x = np.empty((n_samples, n_fragments, 1, n_bins, n_frames), np.float16)
    flat = x.reshape(n_samples * n_fragments, n_bins, n_frames)
    total = n_samples * n_fragments
    with _progress(progress) as bar:
        job = bar.add_task("Waveforms: synthesise + features", total=total)
        for s in range(0, total, batch):
            e = min(total, s + batch)
            tones = synthesize(wave_idx.reshape(-1)[s:e], freq.reshape(-1)[s:e], phase.reshape(-1)[s:e],
                               amp.reshape(-1)[s:e])
            lm = log_stft(tones).numpy()
            flat[s:e] = pool_frames(reduce_bins(lm, n_bins)[..., :FRAGMENT_FRAMES], n_frames)
            bar.advance(job, e - s)

    perm = np.random.default_rng([int(seed), _TAG, 1]).permutation(n_samples)
    n_val = n_test = max(1, int(round(0.1 * n_samples)))
    parts = {"train": np.sort(perm[: n_samples - n_val - n_test]),
             "val": np.sort(perm[n_samples - n_val - n_test : n_samples - n_test]),
             "test": np.sort(perm[n_samples - n_test :])}
    splits = {k: (x[v], content[v], style[v]) for k, v in parts.items()}
    params = {
        "sr": SR, "n_fft": N_FFT, "hop": HOP, "n_bins": n_bins, "bin_hz": SR / N_FFT,
        "feature": "log(|STFT| + 1e-5), hann, center=True (zero pad), Nyquist bin dropped, low n_bins kept",
        "fragment_frames": n_frames, "frame_pool": FRAGMENT_FRAMES // n_frames, "tone_seconds": TONE_SAMPLES / SR,
        "freqs_hz": [round(float(f), 3) for f in FREQS], "max_detune_cents": MAX_DETUNE_CENTS,
        "amplitude": [0.5, 1.0], "harmonic_limit_hz": HARMONIC_LIMIT_HZ, "fade_ms": 10,
        "n_samples": int(n_samples), "n_fragments": int(n_fragments),
    }
    return from_arrays(out, splits, kind="spectrogram", content_names=CONTENT_NAMES, style_names=list(WAVEFORMS),
                       generator="waveforms", seed=int(seed), params=params, overwrite=overwrite)
