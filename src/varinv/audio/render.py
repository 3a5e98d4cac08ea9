"""General-MIDI note rendering with FluidSynth, in-process (pyfluidsynth).

One :class:`Renderer` holds one ``fluidsynth.Synth`` at 16 kHz with the soundfont loaded once and is
reused for every note. Each note is rendered *in isolation* (note-on, ``duration`` seconds, note-off,
``tail`` seconds of release, then all sounds off; durations are whole 64-sample FluidSynth blocks and
each note is preceded by a one-block priming copy of itself), so a note never depends on what was
rendered before it: the output is bit-identical whatever the order of rendering or the number of
worker processes.
Notes are then placed on the timeline by overlap-add (a note's release overlaps the next note).
Reverb and chorus are off by default for the same reason (their state would carry over between notes).

Samples are read as 32-bit float (``fluid_synth_write_float``: no dither, no int16 saturation), so
the clipping check sees the synth's true peak. Every note is checked: a note whose RMS over its
sounding part, divided by the synth gain, is below ``silence_threshold`` raises
:class:`~varinv.errors.DataError` naming the instrument, the pitch and the soundfont; so does a note
whose peak reaches full scale (it would clip in a 16-bit render).

Needs the system library ``libfluidsynth`` (Debian/Ubuntu: ``apt-get install libfluidsynth3``) and the
Python binding ``pyfluidsynth`` (import name ``fluidsynth``).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from varinv.audio.features import SR
from varinv.errors import DataError, DependencyError

INSTALL_HINT = (
    "libfluidsynth is not installed: run `apt-get install libfluidsynth3` (Debian/Ubuntu; "
    "`brew install fluid-synth` on macOS) and `pip install pyfluidsynth`"
)


NO_FLUIDSYNTH_ENV = "VARINV_NO_FLUIDSYNTH"


def import_fluidsynth():
    """Import pyfluidsynth, or raise DependencyError with the install hint.

    Setting the environment variable ``VARINV_NO_FLUIDSYNTH=1`` makes this behave as if libfluidsynth
    were not installed (to test the error path, e.g. of the CLI in a subprocess).
    """
    if os.environ.get(NO_FLUIDSYNTH_ENV, "") not in ("", "0"):
        raise DependencyError(INSTALL_HINT)
    try:
        import fluidsynth
    except (ImportError, OSError):
        raise DependencyError(INSTALL_HINT) from None
    if not hasattr(fluidsynth, "Synth"):
        raise DependencyError(
            "the installed `fluidsynth` module is not pyfluidsynth (PyPI `fluidsynth` 0.2 uses the same "
            "name): run `pip uninstall fluidsynth && pip install pyfluidsynth`"
        )
    return fluidsynth


def fluidsynth_available() -> bool:
    try:
        import_fluidsynth()
    except DependencyError:
        return False
    return True


def default_soundfont() -> Path:
    """The General-MIDI soundfont shipped inside pretty_midi (``TimGM6mb.sf2``, 6 MB)."""
    try:
        path = Path(str(importlib.resources.files("pretty_midi") / "TimGM6mb.sf2"))
    except ModuleNotFoundError:
        raise DependencyError(
            "pretty_midi is not installed, so there is no default soundfont: run "
            "`pip install pretty_midi` or pass a .sf2 file (soundfont=..., CLI --soundfont)"
        ) from None
    if not path.exists():
        raise DependencyError(
            f"the default soundfont {path} is missing from the pretty_midi install: reinstall it with "
            "`pip install --force-reinstall pretty_midi` or pass a .sf2 file (soundfont=...)"
        )
    return path


def resolve_soundfont(soundfont: str | Path | None) -> Path:
    if soundfont is None:
        return default_soundfont()
    path = Path(soundfont).expanduser()
    if not path.is_file():
        raise DataError(f"soundfont {path} does not exist; pass the path of a .sf2 file (or None for TimGM6mb)")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def program_name(program: int) -> str:
    """General-MIDI instrument name of a 0-based program number."""
    try:
        import pretty_midi

        return pretty_midi.program_to_instrument_name(int(program))
    except Exception:  # pragma: no cover - names are cosmetic
        return f"program {program}"


_BLOCK = 64  # FluidSynth renders in 64-sample blocks; events take effect at block boundaries


def _blocks(n: float) -> int:
    """Round a sample count to whole 64-sample blocks, so every note-on falls on a block boundary."""
    return int(round(n / _BLOCK)) * _BLOCK


@dataclass(frozen=True)
class Note:
    program: int  # General-MIDI program, 0-based
    pitch: int  # MIDI key
    velocity: int  # 1..127
    onset: float  # seconds
    duration: float  # seconds


class Renderer:
    """One reusable FluidSynth synthesizer (see module doc)."""

    def __init__(self, soundfont: str | Path | None = None, sr: int = SR, gain: float = 0.8,
                 effects: bool = False, tail: float = 0.5, silence_threshold: float = 1e-3):
        fluidsynth = import_fluidsynth()
        self.soundfont = resolve_soundfont(soundfont)
        self.sr = int(sr)
        self.gain = float(gain)
        self.tail = float(tail)
        self.silence_threshold = float(silence_threshold)
        # effects must be set before the synth is created (pyfluidsynth passes kwargs as settings)
        fx = {"synth.reverb.active": int(bool(effects)), "synth.chorus.active": int(bool(effects))}
        self.synth = fluidsynth.Synth(gain=self.gain, samplerate=float(self.sr), **fx)
        self.sfid = self.synth.sfload(str(self.soundfont))
        if self.sfid < 0:
            self.close()
            raise DataError(
                f"FluidSynth cannot load soundfont {self.soundfont} (not a valid SoundFont 2 file?); "
                "pass another .sf2 file"
            )
        self._program: int | None = None
        self._write_float = getattr(fluidsynth._fl, "fluid_synth_write_float", None)
        if self._write_float is not None:
            self._write_float.restype = ctypes.c_int
            self._write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                          ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]

    # -- low level -------------------------------------------------------------------------------
    def _samples(self, n: int) -> np.ndarray:
        """``n`` stereo frames as float32 (n, 2), full scale = 1."""
        if n <= 0:
            return np.zeros((0, 2), np.float32)
        if self._write_float is not None:
            buf = np.zeros((n, 2), np.float32)
            ptr = buf.ctypes.data
            self._write_float(self.synth.synth, n, ptr, 0, 2, ptr + 4, 0, 2)
            return buf
        s16 = self.synth.get_samples(n).reshape(n, 2)  # older bindings: int16 with dither
        return s16.astype(np.float32) / 32768.0

    def _select(self, program: int) -> None:
        if program == self._program:
            return
        if self.synth.program_select(0, self.sfid, 0, int(program)) < 0:
            raise DataError(
                f"soundfont {self.soundfont.name} has no preset for General-MIDI program {program} "
                f"({program_name(program)}); pick another instrument or a full GM soundfont"
            )
        self._program = int(program)

    # -- public ----------------------------------------------------------------------------------
    def render_note(self, program: int, pitch: int, velocity: int, duration: float = 1.0,
                    check: bool = True) -> np.ndarray:
        """One isolated note: mono float32 of ``(duration + tail) * sr`` samples (whole 64-blocks).

        The last 50 ms of the release tail fade out (raised cosine), so the cut is click-free.
        """
        if not (0 <= int(pitch) <= 127 and 1 <= int(velocity) <= 127 and 0 <= int(program) <= 127):
            raise DataError(f"bad note program={program} pitch={pitch} velocity={velocity}; MIDI values are 0..127")
        self._select(program)
        n_on = _blocks(duration * self.sr)
        n_tail = _blocks(self.tail * self.sr)
        # Prime: the same note for one 64-sample block, then killed. FluidSynth starts a reused
        # voice from the amplitude its previous note left behind (this changes the first block by
        # up to ~0.007); after the priming note that leftover is the same whatever came before.
        self.synth.noteon(0, int(pitch), int(velocity))
        self._samples(_BLOCK)
        self.synth.all_sounds_off(0)
        self._samples(_BLOCK)
        self.synth.noteon(0, int(pitch), int(velocity))
        on = self._samples(n_on)
        self.synth.noteoff(0, int(pitch))
        off = self._samples(n_tail)
        self.synth.all_sounds_off(0)
        self._samples(_BLOCK)  # let FluidSynth free the stopped voices before the next note
        stereo = np.concatenate([on, off])
        if check:
            self._check(stereo, n_on, program, pitch, velocity)
        mono = stereo.mean(axis=1)
        n_fade = min(n_tail, int(0.05 * self.sr))
        if n_fade > 0:
            mono[-n_fade:] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, n_fade, dtype=np.float32)))
        return mono

    def _check(self, stereo: np.ndarray, n_on: int, program: int, pitch: int, velocity: int) -> None:
        rms = float(np.sqrt(np.mean(stereo[:n_on].astype(np.float64) ** 2))) if n_on else 0.0
        if not np.isfinite(stereo).all() or rms / self.gain < self.silence_threshold:
            raise DataError(
                f"instrument {program} ({program_name(program)}) renders silent with soundfont "
                f"{self.soundfont.name} at pitch {pitch}, velocity {velocity} (RMS {rms:.2e}); "
                "use another soundfont (soundfont=path.sf2, e.g. FluidR3_GM.sf2 from Debian "
                "fluid-soundfont-gm) or drop this instrument"
            )
        peak = float(np.abs(stereo).max())
        if peak >= 1.0:
            raise DataError(
                f"instrument {program} ({program_name(program)}) clips with soundfont {self.soundfont.name} "
                f"at pitch {pitch}, velocity {velocity} (peak {peak:.2f} at gain {self.gain}); "
                "render with a lower gain (Renderer(gain=...))"
            )

    def render(self, notes: list[Note], length: int | None = None,
               gains: list[np.ndarray] | None = None) -> np.ndarray:
        """Render ``notes`` onto one mono float32 timeline by overlap-add.

        ``length`` (samples) defaults to the end of the last release tail. ``gains`` optionally gives,
        per note, a gain curve multiplied into that note's audio (shorter curves hold their last value).
        """
        starts = [int(round(n.onset * self.sr)) for n in notes]
        parts = [self.render_note(n.program, n.pitch, n.velocity, n.duration) for n in notes]
        if length is None:
            length = max((s + len(p) for s, p in zip(starts, parts)), default=0)
        out = np.zeros(int(length), np.float32)
        for i, (s, p) in enumerate(zip(starts, parts)):
            if gains is not None:
                g = np.asarray(gains[i], np.float32)
                if len(g) < len(p):
                    g = np.concatenate([g, np.full(len(p) - len(g), g[-1] if len(g) else 1.0, np.float32)])
                p = p * g[: len(p)]
            end = min(s + len(p), len(out))
            if end > s:
                out[s:end] += p[: end - s]
        return out

    def close(self) -> None:
        synth = getattr(self, "synth", None)
        if synth is not None:
            synth.delete()
            self.synth = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
