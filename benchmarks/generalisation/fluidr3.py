"""FluidR3 notes: melodies with repeated pitches, played from another soundfont than InsNotes'.

Content is the pitch class: 12 pitches C5–B5 (MIDI 72–83, 523–988 Hz, so fundamentals and 2nd/3rd
harmonics lie in the 0–1984 Hz of the 128 kept bins). A sample is a melody of L = 12 one-second notes
drawn *with replacement*, so pitches repeat within a sample as in real melodies. Style is the instrument:
8 General-MIDI programs disjoint from all of InsNotes' (its 12 training and 4 OOD programs), rendered
from FluidR3_GM.sf2 rather than the default TimGM6mb. The domain is in the suite to test whether a model
generalises to new recordings of the same kind of data (another soundfont, other instruments, an octave
up) and to repeated contents, which InsNotes (every pitch once per sample) never shows.

Each note is rendered in isolation with :class:`varinv.audio.render.Renderer` (0.9 s held, then its
release, onset at the fragment start). The pool holds every (instrument, pitch, velocity); train uses
four velocities, val and test one unseen velocity each. Per fragment: ±6 dB gain, 0–2 frames of delay
and a faint noise floor, applied in the feature domain.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import audio_params, audio_splits, cli, contents_repeating, held_out, split_sizes  # noqa: E402

from varinv.audio.features import SR, estimate_f0, log_stft, magnitude  # noqa: E402
from varinv.audio.features import midi_to_hz, reduce_bins, semitones  # noqa: E402
from varinv.audio.render import Renderer, file_sha256, program_name  # noqa: E402
from varinv.data.store import Dataset, from_arrays  # noqa: E402
from varinv.errors import DataError  # noqa: E402

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
N_BINS, NOTE_SECONDS, L = 128, 0.9, 12
PITCHES = list(range(72, 84))  # C5..B5
CONTENT_NAMES = [f"{n}5" for n in ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")]
# Not 16 (FluidR3's drawbar organ sounds two octaves low) nor 46 (its harp zone above A#5 is broken).
PROGRAMS = [1, 6, 11, 12, 24, 40, 60, 74]  # bright piano, harpsichord, vibraphone, marimba, nylon guitar,
#                                             violin, french horn, recorder
VELOCITIES = [70, 80, 100, 120, 90, 110]  # the last two are val's and test's only, inside train's range
_TAG = 8201


def render_pool() -> np.ndarray:
    """Magnitudes (programs * pitches * velocities, 128, 32), flat index (s, c, v); checks tuning."""
    waves = np.empty((len(PROGRAMS), len(PITCHES), len(VELOCITIES), SR), np.float32)
    with Renderer(SOUNDFONT) as r:  # raises DataError on a silent (or clipping) note
        for s, prog in enumerate(PROGRAMS):
            for c, pitch in enumerate(PITCHES):
                for v, vel in enumerate(VELOCITIES):
                    waves[s, c, v] = r.render_note(prog, pitch, vel, NOTE_SECONDS)[:SR]
                # a transposed preset would silently mislabel every note of the instrument
                dev = semitones(estimate_f0(waves[s, c, np.argmax(VELOCITIES)]), midi_to_hz(pitch))
                if not abs(dev) < 0.5:
                    raise DataError(f"program {prog} ({program_name(prog)}) sounds {dev:+.1f} semitones "
                                    f"off key {pitch} in {Path(SOUNDFONT).name}; choose another program")
    # one gain per instrument: equal loudness across instruments, velocity dynamics kept within one
    waves *= 0.9 / np.abs(waves).max(axis=(1, 2, 3), keepdims=True)
    lm = reduce_bins(log_stft(waves.reshape(-1, SR)), N_BINS)
    return magnitude(lm).numpy()


def generate(out, n_samples: int = 3000, seed: int = 0, overwrite: bool = False) -> Dataset:
    """FluidR3 soundfont melodies: 12 pitch classes with repeats (content), 8 GM instruments (style)."""
    pool = render_pool()
    variations = held_out(len(VELOCITIES))
    splits = audio_splits(pool, split_sizes(n_samples), variations, len(PROGRAMS), len(PITCHES), L, contents_repeating,
                          entropy=(seed, _TAG))
    params = audio_params(N_BINS, {
        "pitches": PITCHES, "note_seconds": NOTE_SECONDS, "length": L, "programs": PROGRAMS,
        "soundfont": Path(SOUNDFONT).name, "soundfont_sha256": file_sha256(Path(SOUNDFONT)),
        "velocities": VELOCITIES, "velocity_splits": {k: [VELOCITIES[i] for i in v] for k, v in variations.items()},
        "normalised": "per instrument, peak 0.9 over its pool",
    })
    return from_arrays(out, splits, kind="spectrogram", content_names=CONTENT_NAMES,
                       style_names=[f"{program_name(p)} ({p})" for p in PROGRAMS],
                       generator="generalisation.fluidr3", seed=seed, params=params, overwrite=overwrite)


main = cli(generate)

if __name__ == "__main__":
    sys.exit(main())
