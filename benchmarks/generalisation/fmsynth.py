"""FM synth: one-octave melodies from a two-operator FM synthesiser instead of a soundfont.

Content is the pitch (12 chromatic pitches A4–G#5, 440–831 Hz); every sample plays each pitch exactly once
(L = 12), as InsNotes does. Style is the timbre: 8 FM patches, each its own carrier:modulator ratio,
modulation index and index envelope, and amplitude envelope (attack / decay / sustain). The domain is in
the suite because its timbres come from a different synthesis method than any sample-based instrument:
a model that learnt "pitch" on InsNotes only from soundfont harmonics must find it here among FM
sidebands, some of them inharmonic (bell, glass).

Every note lasts 0.9 s (then a 20-ms release) from the start of its 1-s fragment. A pool of renderings
per (patch, pitch, variation) is synthesised once; a variation draws a velocity (loudness and, as on
real FM synths, brightness), a detune of up to ±10 cents and a ±10 % jitter of the modulation index.
Train, val and test draw from disjoint variations. Per fragment: ±6 dB gain, 0–2 frames of delay and a
faint noise floor, applied in the feature domain.
"""

from __future__ import annotations

import sys
from collections import namedtuple
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import audio_params, audio_splits, cli, contents_once, held_out, split_sizes  # noqa: E402

from varinv.audio.features import SR, log_stft, magnitude, midi_to_hz, reduce_bins  # noqa: E402
from varinv.data.store import Dataset, from_arrays  # noqa: E402
from varinv.errors import DataError  # noqa: E402

N_BINS, SAMPLES, GATE, RELEASE = 128, SR, 0.9, 0.02
PITCHES = list(range(69, 81))  # A4..G#5
NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
CONTENT_NAMES = [f"{NOTE_NAMES[p % 12]}{p // 12 - 1}" for p in PITCHES]
L = 12
VARIATIONS = 8  # per (patch, pitch): the last two are val's and test's only
_TAG = 8301

# carrier c and modulator m are multiples of f0; index_tau None = index follows the amplitude envelope
# (the classic brass trick: brighter as it gets louder); inf = a steady index.
Patch = namedtuple("Patch", "name c m index index_tau attack decay sustain vibrato")
PATCHES = [
    Patch("bell", 1, 3.5, 5.0, 0.15, 0.002, 0.50, 0.0, 0.0),  # inharmonic 2.5 f0 sideband, fast-fading
    Patch("brass", 1, 1, 3.5, None, 0.08, 0.20, 0.7, 0.0),
    Patch("clarinet", 1, 2, 1.6, np.inf, 0.04, 0.30, 0.9, 0.0),  # odd harmonics only
    Patch("electric piano", 1, 1, 2.2, 0.06, 0.002, 1.00, 0.0, 0.0),  # bright strike, near-sine body
    Patch("wood", 1, 3, 2.5, 0.03, 0.001, 0.18, 0.0, 0.0),  # no 3rd harmonic, very short
    Patch("flute", 1, 1, 0.5, np.inf, 0.10, 0.30, 1.0, 0.004),
    Patch("strings", 2, 1, 2.0, np.inf, 0.15, 0.40, 0.9, 0.006),  # carrier on the 2nd harmonic
    Patch("glass", 1, 2.76, 1.5, 0.40, 0.005, 0.35, 0.15, 0.0),  # inharmonic 1.76 f0 sideband
]


def render_note(patch: Patch, f0: float, velocity: float, index_scale: float) -> np.ndarray:
    """One 1-s fragment of ``patch`` at ``f0`` Hz; ``velocity`` in (0, 1] scales loudness."""
    t = np.arange(SAMPLES) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + patch.vibrato * np.sin(2 * np.pi * 5.5 * t))) / SR
    after = np.maximum(t - patch.attack, 0.0)
    env = np.where(t < patch.attack, t / patch.attack,
                   patch.sustain + (1 - patch.sustain) * np.exp(-after / patch.decay))
    env = np.where(t < GATE, env, np.interp(GATE, t, env) * np.exp(-(t - GATE) / RELEASE))
    if patch.index_tau is None:
        shape = env
    else:
        shape = 0.2 + 0.8 * np.exp(-t / patch.index_tau)
    index = patch.index * index_scale * (0.7 + 0.3 * velocity) * shape
    wave = 0.8 * velocity * env * np.sin(patch.c * phase + index * np.sin(patch.m * phase))
    rms = float(np.sqrt(np.mean(wave[: int(GATE * SR)] ** 2)))
    if not rms > 1e-3:
        raise DataError(f"FM patch {patch.name} at {f0:.1f} Hz renders silent (RMS {rms:.1e})")
    return wave.astype(np.float32)


def render_pool(seed: int) -> np.ndarray:
    """Magnitudes (patches * pitches * VARIATIONS, 128, 32) of every pool rendering, flat index (s, c, v)."""
    waves = []
    for s, patch in enumerate(PATCHES):
        for c, pitch in enumerate(PITCHES):
            for v in range(VARIATIONS):
                rng = np.random.default_rng([seed, _TAG, s, c, v])
                velocity = rng.uniform(0.45, 1.0)
                f0 = midi_to_hz(pitch) * 2 ** (rng.uniform(-10, 10) / 1200)
                waves.append(render_note(patch, f0, velocity, rng.uniform(0.9, 1.1)))
    return magnitude(reduce_bins(log_stft(np.stack(waves)), N_BINS)).numpy()


def generate(out, n_samples: int = 3000, seed: int = 0, overwrite: bool = False) -> Dataset:
    """Two-operator FM synth melodies: 12 pitches once per sample (content), 8 FM patches (style)."""
    pool = render_pool(seed)
    variations = held_out(VARIATIONS)
    splits = audio_splits(pool, split_sizes(n_samples), variations, len(PATCHES), len(PITCHES), L, contents_once,
                          entropy=(seed, _TAG), first=1000)
    params = audio_params(N_BINS, {
        "pitches": PITCHES, "note_seconds": GATE, "release_seconds": RELEASE, "length": L,
        "patches": [p._asdict() | {"index_tau": str(p.index_tau)} for p in PATCHES],
        "variations": VARIATIONS, "variation_splits": {k: [int(v) for v in vs] for k, vs in variations.items()},
        "velocity": [0.45, 1.0], "detune_cents": 10, "index_jitter": 0.1,
    })
    return from_arrays(out, splits, kind="spectrogram", content_names=CONTENT_NAMES,
                       style_names=[p.name for p in PATCHES], generator="generalisation.fmsynth",
                       seed=seed, params=params, overwrite=overwrite)


main = cli(generate)

if __name__ == "__main__":
    sys.exit(main())
