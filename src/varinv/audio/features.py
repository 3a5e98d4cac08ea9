"""Audio features shared by the audio datasets and by Griffin-Lim resynthesis.

All audio in varinv is mono, 16 kHz. The feature is the log-magnitude STFT of the paper
(V3 InsNotes): ``log(|STFT(x)| + 1e-5)`` with ``n_fft = 1024`` (Hann window), ``hop = 512``,
``center=True`` with zero padding. The top (Nyquist) bin is dropped, leaving 512 bins of
15.625 Hz (bin ``k`` is centred on ``k * 15.625`` Hz, 0 .. 7984 Hz).

Frame alignment: with ``center=True`` frame ``t`` is centred on sample ``t * hop``, i.e. its window
covers samples ``[t * hop - 512, t * hop + 512)``. A note whose onset is at sample ``s`` (a multiple of
``hop``) therefore starts in frame ``s / hop``, and the 32 frames ``[s/hop, s/hop + 32)`` cover samples
``[s - 512, s + 16384)``: the 1-s note plus 24 ms of its release, and 32 ms before the onset.
A 1-s tone of 16,000 samples gives exactly ``1 + 16000 // 512 = 32`` frames.

Reduced bins (CPU setting): :func:`reduce_bins` keeps the *low* bins ``0 .. n_bins - 1`` at full
resolution and drops the rest, so pitch stays resolvable at 15.625 Hz per bin:

=========  ============  ==============================================================
n_bins     band          what survives
=========  ============  ==============================================================
512        0 – 7984 Hz   everything (paper setting)
256        0 – 3984 Hz   C4–B4 fundamentals (bins 16–31) and harmonics 1–8 (B4) / 1–15 (C4)
128        0 – 1984 Hz   fundamentals and harmonics 1–4 (B4) / 1–7 (C4)
=========  ============  ==============================================================

Cropping (rather than pooling the high band) keeps the representation a plain sub-array of the
full one, so Griffin-Lim can invert it by zero-padding the missing high bins.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from varinv.errors import ConfigError

SR = 16000
N_FFT = 1024
HOP = 512
N_BINS = N_FFT // 2  # 512 after dropping the Nyquist bin
FRAGMENT_FRAMES = 32
LOG_EPS = 1e-5
BIN_HZ = SR / N_FFT  # 15.625


def _as_tensor(wave) -> torch.Tensor:
    if isinstance(wave, torch.Tensor):
        return wave.detach().to(torch.float32)
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


def log_stft(wave, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """Log-magnitude STFT ``log(|X| + 1e-5)`` of ``wave`` (…, samples) → (…, n_fft // 2, frames).

    Hann window, ``center=True`` (zero padding), Nyquist bin dropped; ``frames = 1 + samples // hop``.
    Accepts a numpy array or a torch tensor; returns a float32 torch tensor.
    """
    x = _as_tensor(wave)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ConfigError(f"log_stft needs a (…, samples) waveform, got shape {tuple(x.shape)}")
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(n_fft, dtype=torch.float32)
    spec = torch.stft(
        x, n_fft, hop_length=hop, window=window, center=True, pad_mode="constant", return_complex=True
    )
    mag = spec.abs()[:, : n_fft // 2, :]
    return log_magnitude(mag).reshape(*lead, n_fft // 2, mag.shape[-1])


def log_magnitude(mag: torch.Tensor) -> torch.Tensor:
    """The stored feature ``log(|X| + LOG_EPS)`` of a magnitude."""
    return torch.log(mag + LOG_EPS)


def magnitude(logmag: torch.Tensor) -> torch.Tensor:
    """|X| back from a log-magnitude feature (the inverse of :func:`log_magnitude`, floored at 0)."""
    return (torch.exp(logmag) - LOG_EPS).clamp_min(0.0)


def check_n_bins(n_bins: int, n_fft: int = N_FFT) -> int:
    if not isinstance(n_bins, (int, np.integer)) or not 1 <= int(n_bins) <= n_fft // 2:
        raise ConfigError(
            f"n_bins = {n_bins!r} is out of range; use an integer in 1..{n_fft // 2} "
            "(512 = full resolution, 256 or 128 = reduced CPU settings)"
        )
    return int(n_bins)


def reduce_bins(logmag, n_bins: int):
    """Keep the low-frequency bins ``0 .. n_bins - 1`` of a (…, F, T) log-magnitude (see module doc).

    Works on numpy arrays and torch tensors; ``n_bins = F`` returns the input unchanged.
    """
    n_bins = check_n_bins(n_bins)
    if logmag.shape[-2] < n_bins:
        raise ConfigError(f"cannot keep {n_bins} bins of a spectrogram with {logmag.shape[-2]} bins")
    return logmag[..., :n_bins, :]


def check_n_frames(n_frames: int, t: int = FRAGMENT_FRAMES) -> int:
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 1 or t % n_frames:
        raise ConfigError(f"n_frames = {n_frames!r} must divide the {t} frames of a fragment (e.g. 32, 16, 8, 4)")
    return int(n_frames)


def pool_frames(logmag, n_frames: int):
    """Average a (…, F, T) log-magnitude over groups of ``T // n_frames`` adjacent frames.

    For stationary sounds (Waveforms tones) the frames are near-copies, so pooling keeps the
    spectrum and cuts the conv cost of a fragment by the pooling factor.
    """
    t = logmag.shape[-1]
    n_frames = check_n_frames(n_frames, t)
    if n_frames == t:
        return logmag
    return logmag.reshape(*logmag.shape[:-1], n_frames, t // n_frames).mean(-1)


def band_hz(n_bins: int) -> float:
    """Upper edge (centre of the last kept bin) in Hz of a spectrogram reduced to ``n_bins``."""
    return (check_n_bins(n_bins) - 1) * BIN_HZ


def estimate_f0(wave, sr: int = SR, fmin: float = 50.0, fmax: float = 2000.0,
                threshold: float = 0.15) -> float:
    """Fundamental frequency (Hz) of a mostly monophonic, mostly stationary signal (YIN).

    The signal is cut into 64-ms frames; in each, the cumulative-mean-normalised difference function
    is searched for its first dip below ``threshold`` (else its global minimum) between the lags of
    ``fmax`` and ``fmin``, refined by parabolic interpolation. The result is the median over the
    periodic, non-silent frames; ``nan`` if there are none.
    """
    x = _as_tensor(wave).numpy().astype(np.float64).reshape(-1)
    w = int(round(0.064 * sr))
    tmin = max(2, int(math.floor(sr / fmax)))
    tmax = int(math.ceil(sr / fmin))
    span = w + tmax + 1
    if x.size < span:
        x = np.pad(x, (0, span - x.size))
    starts = np.arange(0, x.size - span + 1, w)
    frames = np.stack([x[s : s + span] for s in starts])  # (nF, span)
    energy = (frames[:, :w] ** 2).sum(1)
    keep = energy > 1e-4 * energy.max() if energy.max() > 0 else np.zeros(len(frames), bool)
    if not keep.any():
        return float("nan")
    frames = frames[keep]
    nfft = 1 << int(math.ceil(math.log2(span + w)))
    a = np.fft.rfft(frames[:, :w], nfft)
    b = np.fft.rfft(frames, nfft)
    corr = np.fft.irfft(np.conj(a) * b, nfft)[:, : tmax + 1]  # sum_j x[j] x[j + tau]
    csum = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tmax + 1)
    e_tau = csum[:, taus + w] - csum[:, taus]
    diff = np.maximum(csum[:, [w]] + e_tau - 2.0 * corr, 0.0)
    cmnd = np.ones_like(diff)
    running = np.cumsum(diff[:, 1:], axis=1)
    cmnd[:, 1:] = diff[:, 1:] * taus[1:] / np.maximum(running, 1e-12)
    f0s, aper = [], []
    for row in cmnd:
        seg = row[tmin : tmax + 1]
        below = np.nonzero(seg < threshold)[0]
        if below.size:
            i = int(below[0])
            while i + 1 < seg.size and seg[i + 1] < seg[i]:
                i += 1
        else:
            i = int(np.argmin(seg))
        tau = float(i + tmin)
        if 0 < i < seg.size - 1:
            y0, y1, y2 = seg[i - 1], seg[i], seg[i + 1]
            den = y0 - 2 * y1 + y2
            if abs(den) > 1e-12:
                tau += float(np.clip(0.5 * (y0 - y2) / den, -1, 1))
        f0s.append(sr / tau)
        aper.append(seg[i])
    f0s, aper = np.asarray(f0s), np.asarray(aper)
    voiced = aper < 0.35
    if not voiced.any():
        voiced = aper <= aper.min() + 1e-9
    return float(np.median(f0s[voiced]))


def semitones(f: float, ref: float) -> float:
    """Signed distance ``12 log2(f / ref)`` in semitones."""
    return 12.0 * math.log2(f / ref)


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)
