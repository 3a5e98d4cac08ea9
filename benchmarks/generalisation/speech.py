"""Spoken phone numbers: digit words with repeats, said by 8 synthetic (espeak-ng) speakers.

Content is the word, "zero".."nine" (10 classes); a sample is a 10-digit phone number drawn *with
replacement*, so digits repeat within a sample as in real numbers. Style is the speaker: 8 espeak-ng
voice variants, each with its own base pitch and speed. The domain is in the suite because its content
is not a pitch but a phonetic shape that moves through time (formant glides, bursts, fricatives), its
style is mostly the voice's pitch and formants, and fragments are words of varying length in silence,
unlike the stationary tones of InsNotes.

Each pool rendering is one word by one voice with its pitch (±6) and speed (±10 %) jittered around the
voice's base, resampled from espeak's 22,050 Hz to 16 kHz, trimmed of silence, peak-normalised and placed
at a random offset in a 1-s fragment (a word too long for it is re-spoken faster, never cut). Train,
val and test use disjoint renderings. Per fragment: ±6 dB gain, 0–2 frames of delay and a faint noise
floor, applied in the feature domain. Needs ``espeak-ng`` (Debian/Ubuntu: ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).parent))
from common import audio_params, audio_splits, cli, contents_repeating, held_out, split_sizes  # noqa: E402

from varinv.audio.features import SR, log_stft, magnitude, reduce_bins  # noqa: E402
from varinv.data.store import Dataset, from_arrays  # noqa: E402
from varinv.errors import DataError, DependencyError  # noqa: E402

N_BINS, L = 128, 10
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# (voice, base pitch -p 0..99, base speed -s words per minute); the pitches spread the speakers' f0 from
# about 60 Hz (en-us+m2) to 275 Hz (en-us+f3), as a real speaker population does
VOICES = [("en-us+m2", 15, 150), ("en+m1", 35, 170), ("en+croak", 50, 140), ("en+m3", 65, 180),
          ("en+m7", 80, 155), ("en+f4", 45, 165), ("en+f2", 65, 145), ("en-us+f3", 85, 175)]
VARIATIONS = 6  # renderings per (voice, word): the last two are val's and test's only
MAX_WORD = int(0.8 * SR)  # room left in the fragment for the placement offset and the delay
_TAG = 8101


def speak(voice: str, word: str, pitch: int, speed: int, workdir: Path) -> np.ndarray:
    """``word`` said by espeak-ng, at 16 kHz, trimmed to where it sounds (-40 dB of its loudest 10 ms)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DependencyError("espeak-ng is not installed: run `apt-get install espeak-ng` (Debian/Ubuntu)")
    wav = workdir / "word.wav"
    subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), word],
                   check=True, capture_output=True)
    audio, sr = sf.read(wav, dtype="float64")
    audio = resample_poly(audio, SR, sr) if sr != SR else audio
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt((frames**2).mean(1))
    if not rms.max() > 1e-3:
        raise DataError(f"espeak-ng voice {voice} says {word!r} silently (pitch {pitch}, speed {speed})")
    loud = np.nonzero(rms > 0.01 * rms.max())[0]
    return audio[max(0, loud[0] - 1) * 160 : (loud[-1] + 2) * 160]


def render_word(voice: str, word: str, pitch: int, speed: int, offset: float, workdir: Path) -> np.ndarray:
    """A 1-s fragment (float32, peak 0.9) with the word starting at ``offset`` (0..1) of the free room."""
    audio = speak(voice, word, pitch, speed, workdir)
    while len(audio) > MAX_WORD:
        speed = int(speed * 1.15)
        audio = speak(voice, word, pitch, speed, workdir)
    frag = np.zeros(SR, np.float32)
    start = int(0.02 * SR + offset * (MAX_WORD - len(audio)))
    frag[start : start + len(audio)] = 0.9 * audio / np.abs(audio).max()
    return frag


def render_pool(seed: int) -> np.ndarray:
    """Magnitudes (voices * words * VARIATIONS, 128, 32), flat index (s, c, v)."""
    waves = []
    with tempfile.TemporaryDirectory(prefix="varinv-speech-") as tmp:
        for s, (voice, pitch, speed) in enumerate(VOICES):
            for c, word in enumerate(WORDS):
                for v in range(VARIATIONS):
                    rng = np.random.default_rng([seed, _TAG, s, c, v])
                    p = int(np.clip(pitch + rng.integers(-6, 7), 0, 99))
                    waves.append(render_word(voice, word, p, int(speed * rng.uniform(0.9, 1.1)),
                                             rng.uniform(), Path(tmp)))
    return magnitude(reduce_bins(log_stft(np.stack(waves)), N_BINS)).numpy()


def generate(out, n_samples: int = 3000, seed: int = 0, overwrite: bool = False) -> Dataset:
    """Spoken 10-digit phone numbers: digit words with repeats (content), 8 espeak-ng voices (style)."""
    pool = render_pool(seed)
    variations = held_out(VARIATIONS)
    splits = audio_splits(pool, split_sizes(n_samples), variations, len(VOICES), len(WORDS), L, contents_repeating,
                          entropy=(seed, _TAG), first=1000)
    params = audio_params(N_BINS, {
        "length": L, "voices": [{"voice": v, "pitch": p, "speed": s} for v, p, s in VOICES],
        "pitch_jitter": 6, "speed_jitter": 0.1, "max_word_seconds": MAX_WORD / SR, "peak": 0.9,
        "variations": VARIATIONS, "variation_splits": {k: [int(v) for v in vs] for k, vs in variations.items()},
        "espeak_ng": subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip(),
    })
    return from_arrays(out, splits, kind="spectrogram", content_names=WORDS,
                       style_names=[v for v, _, _ in VOICES], generator="generalisation.speech",
                       seed=seed, params=params, overwrite=overwrite)


main = cli(generate)

if __name__ == "__main__":
    sys.exit(main())
