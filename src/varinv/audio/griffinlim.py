"""Magnitude → waveform by (fast) Griffin-Lim, and WAV writing.

:func:`griffin_lim` inverts the features of :mod:`varinv.audio.features`: it undoes the log
(``exp(x) - 1e-5``, clamped at 0), restores the dropped Nyquist bin and, for reduced spectrograms
(``F < 512``, see :func:`varinv.audio.features.reduce_bins`), the missing high bins as zero
magnitude, then alternates the two projections of Griffin & Lim (1984) with the momentum of the
"fast Griffin-Lim" of Perraudin, Balazs & Søndergaard (2013):

    t_n = P_mag(P_consistent(c_{n-1})),   c_n = t_n + momentum · (t_n − t_{n−1}).

Everything is batched over the first axis and runs on the tensor's device.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from varinv.audio.features import HOP, N_FFT, SR, magnitude
from varinv.errors import ConfigError, DataError


def griffin_lim(logmag, n_fft: int = N_FFT, hop: int = HOP, n_iter: int = 64, momentum: float = 0.99,
                seed: int = 0, length: int | None = None) -> torch.Tensor:
    """Waveforms (B, samples) from log-magnitudes (B, F, T) (a single (F, T) gives (samples,)).

    ``F`` may be ``n_fft // 2`` (the stored features), ``n_fft // 2 + 1`` (with the Nyquist bin) or
    fewer (a low-band crop; the missing high bins are taken as silent). ``samples = hop * (T - 1)``
    unless ``length`` is given. The initial phases are drawn from ``seed``, so the output is
    deterministic.
    """
    lm = logmag if isinstance(logmag, torch.Tensor) else torch.from_numpy(np.asarray(logmag))
    lm = lm.detach().to(torch.float32)
    single = lm.ndim == 2
    if single:
        lm = lm[None]
    if lm.ndim != 3:
        raise ConfigError(f"griffin_lim needs a (B, F, T) or (F, T) log-magnitude, got shape {tuple(lm.shape)}")
    n_full = n_fft // 2 + 1
    b, f, t = lm.shape
    if f > n_full:
        raise ConfigError(f"griffin_lim: {f} frequency bins do not fit n_fft = {n_fft} (at most {n_full})")
    if not 0.0 <= momentum < 1.5:
        raise ConfigError(f"griffin_lim: momentum = {momentum} is out of range; use 0 (plain) to 0.99 (fast)")
    if not torch.isfinite(lm).all():
        raise DataError("griffin_lim: the log-magnitude contains NaN or Inf; check the decoder output")
    mag = magnitude(lm)
    if f < n_full:
        mag = torch.nn.functional.pad(mag, (0, 0, 0, n_full - f))
    window = torch.hann_window(n_fft, dtype=torch.float32, device=mag.device)
    if length is None:
        length = hop * (t - 1)

    def istft(spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, n_fft, hop_length=hop, window=window, center=True, length=length)

    def stft(wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(wave, n_fft, hop_length=hop, window=window, center=True, pad_mode="constant",
                          return_complex=True)[..., :t]

    gen = torch.Generator().manual_seed(int(seed))
    phase = torch.rand(mag.shape, generator=gen).to(mag.device) * (2 * math.pi)
    c = torch.polar(mag, phase)
    t_prev = None
    for _ in range(int(n_iter)):
        rebuilt = stft(istft(c))
        t_cur = mag * rebuilt / (rebuilt.abs() + 1e-12)
        c = t_cur if t_prev is None else t_cur + momentum * (t_cur - t_prev)
        t_prev = t_cur
    wave = istft(t_prev if t_prev is not None else c)
    return wave[0] if single else wave


def write_wav(path: str | Path, wave, sr: int = SR) -> Path:
    """Write ``wave`` ((samples,) or (channels, samples)) as 16-bit PCM, peak-normalised to 0.9.

    A silent (all-zero) signal is written as silence. Parent folders are created.
    """
    import soundfile

    x = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    x = x.astype(np.float64)
    if x.ndim == 2:
        x = x.T  # soundfile wants (samples, channels)
    elif x.ndim != 1:
        raise ConfigError(f"write_wav needs (samples,) or (channels, samples), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"write_wav: the waveform for {path} contains NaN or Inf")
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 0:
        x = x * (0.9 / peak)
    x = np.clip(x, -1.0, 1.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), x, int(sr), subtype="PCM_16")
    return path
