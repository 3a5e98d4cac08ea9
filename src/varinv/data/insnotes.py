"""InsNotes: one-octave melodies played by General-MIDI instruments (V3 benchmark, papers.md §1.6).

What a file is (one per instrument and file index, seeded by ``(seed, program, index)`` only, so a
file is the same whatever the dataset size or the number of workers):

* 120 notes of 1 s, onsets every 1.056 s (16,896 samples = 33 STFT hops at 16 kHz), MIDI pitches
  60–71 (C4–B4). The order is a fresh random permutation of the 12 pitches in every block of 12
  notes, and **each note stores its true pitch class** (the reference labelled notes by position,
  which is wrong under a random order; see papers.md §1.6).
* Velocities ``randint(80, 121)``; each note gets a random gain curve over its sounding second,
  linear or quarter-sine, from ``g0`` to ``g1`` (both uniform in 0.8–1.2), held through its release.
* Rendered with FluidSynth (:mod:`varinv.audio.render`, default soundfont TimGM6mb from pretty_midi)
  at 16 kHz, notes overlap-added (each note's release runs under the next one), then the file is
  peak-normalised to 0.9. Every note is checked for silence and clipping.
* Soundfont tuning: before rendering, each instrument's 12 pitches are rendered once and their f0
  measured (:func:`varinv.audio.features.estimate_f0`). If an instrument's preset sounds
  transposed by a whole number of semitones (TimGM6mb's Whistle, program 78, sounds 9 semitones
  low), the played MIDI key is shifted so the *sounding* pitch matches the label
  (``retune=True``; the offsets are recorded in the manifest as ``key_offsets``).

Features: the log-STFT (:func:`varinv.audio.features.log_stft`, n_fft 1024, hop 512, Nyquist bin
dropped) of the whole file is computed once; note ``i`` starts at frame ``33 i`` (its onset is the
centre of that frame) and its fragment is frames ``33 i .. 33 i + 31`` (covering 32 ms before the
onset to 24 ms after the note-off; the 33rd frame of each slot is skipped, as in the reference), then
the low ``n_bins`` bins are kept (:func:`varinv.audio.features.reduce_bins`). Fragments are
(1, n_bins, 32) float16.

Samples: the 10 non-overlapping windows of 12 consecutive notes of a file, aligned with the
permutation blocks, so each sample holds every pitch class exactly once (content 0–11 = C..B;
style = instrument index). Splits are 80/10/10 **by file** within each instrument (at least one
val and one test file per instrument when it has 3 or more files; empty splits are left out).

OOD: instruments 0, 4, 73, 78 (style labels 0–3 within ``split_style_names``). Per OOD instrument,
``max(shots)`` files form the nested shot pool (the 1-shot file is in the 5-shot set, which is in the
10-shot set) and ``ood_files_per_instrument`` further files form ``ood_test``.

Default CPU setting: ``n_bins = 128`` (0–1984 Hz at 15.625 Hz per bin: all fundamentals, harmonics
up to the 4th of B4 / 7th of C4). ``n_bins = 512`` is the paper's full resolution.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from varinv.audio.features import FRAGMENT_FRAMES, HOP, N_FFT, SR, check_n_bins, estimate_f0, log_stft
from varinv.audio.features import midi_to_hz, reduce_bins, semitones
from varinv.data.store import Dataset, from_arrays
from varinv.errors import ConfigError, DataError

TRAIN_PROGRAMS = (64, 19, 21, 41, 56, 59, 68, 71, 72, 75, 22, 52)
OOD_PROGRAMS = (0, 4, 73, 78)
LOW_PITCH = 60
N_PITCHES = 12
NOTES_PER_FILE = 120
NOTE_SECONDS = 1.0
ONSET_SAMPLES = 33 * HOP  # 16,896 samples = 1.056 s at 16 kHz
FRAMES_PER_SLOT = ONSET_SAMPLES // HOP  # 33
L = 12  # notes per sample
SAMPLES_PER_FILE = NOTES_PER_FILE // L  # 10
FILE_SAMPLES = NOTES_PER_FILE * ONSET_SAMPLES
DEFAULT_N_BINS = 128
CONTENT_NAMES = ["C4", "C#4", "D4", "D#4", "E4", "F4", "F#4", "G4", "G#4", "A4", "A#4", "B4"]
_TAG_FILE = 7101  # separates InsNotes random streams from other generators with the same seed
_TAG_SPLIT = 7102


@dataclass
class FilePlan:
    """The MIDI plan of one file (labels are the intended = sounding pitches)."""

    program: int
    index: int
    pitches: np.ndarray  # (120,) MIDI 60..71
    velocities: np.ndarray  # (120,) 80..120
    env_quarter_sine: np.ndarray  # (120,) bool: quarter-sine (True) or linear gain curve
    g0: np.ndarray  # (120,) start gain
    g1: np.ndarray  # (120,) end gain

    @property
    def content(self) -> np.ndarray:
        return (self.pitches - LOW_PITCH).astype(np.int64)


def plan_file(seed: int, program: int, index: int) -> FilePlan:
    rng = np.random.default_rng([int(seed), _TAG_FILE, int(program), int(index)])
    blocks = [rng.permutation(N_PITCHES) for _ in range(NOTES_PER_FILE // N_PITCHES)]
    pitches = LOW_PITCH + np.concatenate(blocks)
    velocities = rng.integers(80, 121, size=NOTES_PER_FILE)
    quarter = rng.random(NOTES_PER_FILE) < 0.5
    g0 = rng.uniform(0.8, 1.2, NOTES_PER_FILE)
    g1 = rng.uniform(0.8, 1.2, NOTES_PER_FILE)
    return FilePlan(int(program), int(index), pitches.astype(np.int64), velocities.astype(np.int64),
                    quarter, g0, g1)


def gain_curve(quarter_sine: bool, g0: float, g1: float, n: int) -> np.ndarray:
    """Gain drifting from ``g0`` to ``g1`` over ``n`` samples (linear or quarter-sine shape)."""
    u = np.arange(n, dtype=np.float64) / max(n, 1)
    shape = np.sin(0.5 * np.pi * u) if quarter_sine else u
    return (g0 + (g1 - g0) * shape).astype(np.float32)


def render_file(renderer, plan: FilePlan, key_offset: int = 0) -> np.ndarray:
    """The file's audio: (FILE_SAMPLES,) float32, peak-normalised to 0.9."""
    from varinv.audio.render import Note

    notes, gains = [], []
    n_on = int(round(NOTE_SECONDS * renderer.sr))
    for i in range(NOTES_PER_FILE):
        key = int(plan.pitches[i]) + int(key_offset)
        notes.append(Note(plan.program, key, int(plan.velocities[i]), i * ONSET_SAMPLES / renderer.sr, NOTE_SECONDS))
        gains.append(gain_curve(bool(plan.env_quarter_sine[i]), float(plan.g0[i]), float(plan.g1[i]), n_on))
    try:
        audio = renderer.render(notes, length=FILE_SAMPLES, gains=gains)
    except DataError as e:
        raise DataError(f"InsNotes file {plan.index} of instrument {plan.program}: {e}") from None
    peak = float(np.abs(audio).max())
    return audio * np.float32(0.9 / peak)


def note_fragments(audio: np.ndarray, n_bins: int) -> np.ndarray:
    """(120, n_bins, 32) float16 log-STFT fragments of a rendered file (alignment: module doc)."""
    lm = log_stft(audio).numpy()  # (512, frames)
    idx = FRAMES_PER_SLOT * np.arange(NOTES_PER_FILE)[:, None] + np.arange(FRAGMENT_FRAMES)[None]
    frag = np.transpose(lm[:, idx], (1, 0, 2))  # (120, 512, 32)
    return np.ascontiguousarray(reduce_bins(frag, n_bins)).astype(np.float16)


# -- worker side ---------------------------------------------------------------------------------
_RENDERERS: dict = {}


def _renderer(soundfont: str | None, gain: float):
    from varinv.audio.render import Renderer

    key = (soundfont, gain)
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(soundfont, gain=gain)
    return _RENDERERS[key]


def _close_renderers() -> None:
    for r in _RENDERERS.values():
        r.close()
    _RENDERERS.clear()


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _make_file(task: tuple) -> tuple[np.ndarray, np.ndarray]:
    seed, program, index, key_offset, n_bins, soundfont, gain = task
    plan = plan_file(seed, program, index)
    audio = render_file(_renderer(soundfont, gain), plan, key_offset)
    frags = note_fragments(audio, n_bins)
    x = frags.reshape(SAMPLES_PER_FILE, L, 1, n_bins, FRAGMENT_FRAMES)
    return x, plan.content.reshape(SAMPLES_PER_FILE, L)


# -- tuning --------------------------------------------------------------------------------------
def measure_transposition(renderer, program: int, velocity: int = 100) -> float:
    """Median deviation (semitones) of the sounding f0 from the MIDI key over C4–B4."""
    devs = []
    for p in range(LOW_PITCH, LOW_PITCH + N_PITCHES):
        note = renderer.render_note(program, p, velocity, NOTE_SECONDS)[: renderer.sr]
        f0 = estimate_f0(note, renderer.sr)
        if np.isfinite(f0):
            devs.append(semitones(f0, midi_to_hz(p)))
    if not devs:
        raise DataError(
            f"cannot measure the pitch of instrument {program} with soundfont {renderer.soundfont.name}; "
            "use another soundfont or pass retune=False"
        )
    return float(np.median(devs))


def tune_instrument(renderer, program: int, retune: bool = True) -> tuple[int, float | None]:
    """``(key_offset, measured deviation)`` so that key ``pitch + key_offset`` sounds pitch class ``pitch``.

    The offset cancels a whole-semitone transposition of the soundfont preset; among the offsets that
    give the right pitch class it takes the one nearest the C4–B4 octave whose 12 keys all render
    non-silent (TimGM6mb's Whistle: keys above 78 are silent, so it plays C3–B3). ``retune=False``
    only checks that the 12 plain keys render.
    """
    if not retune:
        for p in range(LOW_PITCH, LOW_PITCH + N_PITCHES):
            renderer.render_note(program, p, 80, NOTE_SECONDS)
        return 0, None
    dev = measure_transposition(renderer, program)
    base = -int(round(dev)) if abs(dev) > 0.5 else 0
    last: DataError | None = None
    for off in (base, base - 12, base + 12, base - 24, base + 24):
        if not all(0 <= p + off <= 127 for p in (LOW_PITCH, LOW_PITCH + N_PITCHES - 1)):
            continue
        try:
            for p in range(LOW_PITCH, LOW_PITCH + N_PITCHES):
                renderer.render_note(program, p + off, 80, NOTE_SECONDS)
        except DataError as e:
            last = e
            continue
        return off, dev
    raise DataError(
        f"instrument {program} cannot play the 12 pitch classes with soundfont {renderer.soundfont.name} "
        f"(it sounds {dev:+.1f} semitones off and some keys are silent: {last}); drop the instrument or "
        "use another soundfont"
    )


# -- public API ----------------------------------------------------------------------------------
def _split_counts(n: int) -> tuple[int, int, int]:
    n_test = max(1, int(round(0.1 * n))) if n >= 2 else 0
    n_val = max(1, int(round(0.1 * n))) if n >= 3 else 0
    return n - n_val - n_test, n_val, n_test


def _programs(name: str, programs) -> tuple[int, ...]:
    progs = tuple(int(p) for p in programs)
    if not progs or len(set(progs)) != len(progs) or not all(0 <= p <= 127 for p in progs):
        raise ConfigError(f"{name} = {programs!r} must be distinct General-MIDI programs 0..127")
    return progs


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.progress import TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled)


def generate(
    out: str | Path,
    files_per_instrument: int = 100,
    seed: int = 0,
    *,
    n_bins: int = DEFAULT_N_BINS,
    soundfont: str | Path | None = None,
    ood: bool = True,
    ood_files_per_instrument: int | None = None,
    shots: tuple[int, ...] = (1, 5, 10),
    instruments: tuple[int, ...] = TRAIN_PROGRAMS,
    ood_instruments: tuple[int, ...] = OOD_PROGRAMS,
    retune: bool = True,
    gain: float = 0.8,
    workers: int | None = None,
    write_midi: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> Dataset:
    """Render InsNotes to ``out`` (see the module doc) and return the opened dataset.

    Paper size: ``files_per_instrument=100`` (1200 files + 80 OOD files, 144k + 9.6k notes).
    ``ood_files_per_instrument`` (files per OOD instrument in ``ood_test``) defaults to the test-set
    size of a training instrument. ``workers`` processes render in parallel (default: one per core, up to 16; 1 for
    small jobs); worker processes are spawned, so call this under ``if __name__ == "__main__":`` in a
    script. With ``write_midi`` each file's played MIDI goes to ``out/midi/`` and the file behind every
    sample to ``out/files.json``.
    """
    from varinv.audio.render import Renderer, file_sha256, program_name

    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) or choose another path")
    if not isinstance(files_per_instrument, (int, np.integer)) or files_per_instrument < 1:
        raise ConfigError(f"files_per_instrument = {files_per_instrument!r} must be a positive integer (paper: 100)")
    n_bins = check_n_bins(n_bins)
    instruments = _programs("instruments", instruments)
    ood_instruments = _programs("ood_instruments", ood_instruments) if ood else ()
    shots = tuple(sorted({int(s) for s in shots})) if ood else ()
    if ood and (not shots or min(shots) < 1):
        raise ConfigError(f"shots = {shots!r} must be positive file counts, e.g. (1, 5, 10)")
    if ood_files_per_instrument is None:
        ood_files_per_instrument = max(1, int(round(0.1 * files_per_instrument)))
    if ood and ood_files_per_instrument < 1:
        raise ConfigError(f"ood_files_per_instrument = {ood_files_per_instrument} must be >= 1")
    if ood and set(instruments) & set(ood_instruments):
        raise ConfigError(f"instruments {instruments} and ood_instruments {ood_instruments} overlap")
    sf_arg = None if soundfont is None else str(soundfont)

    # main-process renderer: fails fast on a missing libfluidsynth / bad soundfont, measures tuning
    probe = Renderer(sf_arg, gain=gain)
    sf_path = probe.soundfont
    key_offsets: dict[int, int] = {}
    measured: dict[int, float] = {}
    try:
        for prog in (*instruments, *ood_instruments):
            key_offsets[prog], dev = tune_instrument(probe, prog, retune)
            if dev is not None:
                measured[prog] = round(dev, 3)
    finally:
        probe.close()

    # file → split assignment (per instrument, by file)
    split_files: dict[str, list[tuple[int, int, int]]] = {}  # split -> [(program, index, style)]
    for s, prog in enumerate(instruments):
        perm = np.random.default_rng([int(seed), _TAG_SPLIT, prog]).permutation(files_per_instrument)
        n_tr, n_va, n_te = _split_counts(files_per_instrument)
        for name, part in (("train", perm[:n_tr]), ("val", perm[n_tr : n_tr + n_va]), ("test", perm[n_tr + n_va :])):
            split_files.setdefault(name, []).extend((prog, int(i), s) for i in sorted(part))
    if ood:
        pool = max(shots)
        for s, prog in enumerate(ood_instruments):
            n = pool + ood_files_per_instrument
            perm = np.random.default_rng([int(seed), _TAG_SPLIT, prog]).permutation(n)
            split_files.setdefault("ood_test", []).extend((prog, int(i), s) for i in sorted(perm[pool:]))
            for k in shots:
                split_files.setdefault(f"ood_{k}shot", []).extend((prog, int(i), s) for i in perm[:k])
    split_files = {k: v for k, v in split_files.items() if v}

    # unique files to render (shot files appear in several splits, ood_test files once)
    unique = sorted({(p, i) for files in split_files.values() for p, i, _ in files})
    tasks = [(int(seed), p, i, key_offsets[p], n_bins, sf_arg, float(gain)) for p, i in unique]
    if workers is None:
        workers = min(16, os.cpu_count() or 1) if len(tasks) >= 16 else 1
    workers = max(1, int(workers))

    buffers = {name: (np.empty((len(f) * SAMPLES_PER_FILE, L, 1, n_bins, FRAGMENT_FRAMES), np.float16),
                      np.empty((len(f) * SAMPLES_PER_FILE, L), np.int64),
                      np.repeat(np.array([s for _, _, s in f], np.int64), SAMPLES_PER_FILE))
               for name, f in split_files.items()}
    where: dict[tuple[int, int], list[tuple[str, int]]] = {}
    for name, files in split_files.items():
        for j, (p, i, _) in enumerate(files):
            where.setdefault((p, i), []).append((name, j))

    def place(key, x, c):
        for name, j in where[key]:
            xs, cs, _ = buffers[name]
            xs[j * SAMPLES_PER_FILE : (j + 1) * SAMPLES_PER_FILE] = x
            cs[j * SAMPLES_PER_FILE : (j + 1) * SAMPLES_PER_FILE] = c

    with _progress(progress) as bar:
        job = bar.add_task(f"InsNotes: render + features ({workers} proc)", total=len(tasks))
        if workers == 1:
            try:
                for key, task in zip(unique, tasks):
                    place(key, *_make_file(task))
                    bar.advance(job)
            finally:
                _close_renderers()
        else:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool_:
                for key, res in zip(unique, pool_.imap(_make_file, tasks, chunksize=2)):
                    place(key, *res)
                    bar.advance(job)

    ins_names = [f"{program_name(p)} ({p})" for p in instruments]
    ood_names = [f"{program_name(p)} ({p})" for p in ood_instruments]
    params = {
        "sr": SR, "n_fft": N_FFT, "hop": HOP, "n_bins": n_bins, "bin_hz": SR / N_FFT,
        "feature": "log(|STFT| + 1e-5), hann, center=True (zero pad), Nyquist bin dropped, low n_bins kept",
        "fragment_frames": FRAGMENT_FRAMES, "fragment_start_frame": "33 * note index (onset = frame centre)",
        "notes_per_file": NOTES_PER_FILE, "note_seconds": NOTE_SECONDS, "onset_seconds": ONSET_SAMPLES / SR,
        "pitches": list(range(LOW_PITCH, LOW_PITCH + N_PITCHES)),
        "pitch_order": "random permutation of the 12 pitches in every block of 12 notes; true labels",
        "sample": "non-overlapping 12-note windows aligned with the permutation blocks (10 per file)",
        "velocity": [80, 120], "envelope": "per note linear or quarter-sine gain g0->g1, g ~ U(0.8, 1.2)",
        "peak_normalised": 0.9,
        "programs": list(instruments), "ood_programs": list(ood_instruments),
        "files_per_instrument": int(files_per_instrument),
        "ood_files_per_instrument": int(ood_files_per_instrument) if ood else 0,
        "shots": list(shots), "shots_nested": True,
        "split_files": {k: len(v) for k, v in split_files.items()},
        "soundfont": sf_path.name, "soundfont_sha256": file_sha256(sf_path), "synth_gain": float(gain),
        "effects": False, "retune": bool(retune), "key_offsets": {str(k): v for k, v in key_offsets.items()},
        "measured_transposition_semitones": {str(k): v for k, v in measured.items()},
    }
    splits = {name: buffers[name] for name in split_files}
    split_style_names = {n: ood_names for n in splits if n.startswith("ood")}
    ds = from_arrays(out, splits, kind="spectrogram", content_names=CONTENT_NAMES, style_names=ins_names,
                     split_style_names=split_style_names, generator="insnotes", seed=int(seed), params=params,
                     overwrite=overwrite)
    if write_midi:
        _write_provenance(out, int(seed), split_files, key_offsets)
    return ds


def _write_provenance(out: Path, seed: int, split_files: dict, key_offsets: dict[int, int]) -> None:
    """``files.json`` (the file behind every group of 10 samples) and one .mid per file (played keys)."""
    import pretty_midi

    (out / "files.json").write_text(json.dumps(
        {name: [{"program": p, "index": i, "samples": [j * SAMPLES_PER_FILE, (j + 1) * SAMPLES_PER_FILE]}
                for j, (p, i, _) in enumerate(files)] for name, files in split_files.items()}, indent=0))
    mdir = out / "midi"
    mdir.mkdir(exist_ok=True)
    for p, i in sorted({(p, i) for files in split_files.values() for p, i, _ in files}):
        plan = plan_file(seed, p, i)
        pm = pretty_midi.PrettyMIDI()
        ins = pretty_midi.Instrument(program=p)
        for k in range(NOTES_PER_FILE):
            t0 = k * ONSET_SAMPLES / SR
            ins.notes.append(pretty_midi.Note(int(plan.velocities[k]), int(plan.pitches[k]) + key_offsets[p],
                                              t0, t0 + NOTE_SECONDS))
        pm.instruments.append(ins)
        pm.write(str(mdir / f"{p:03d}_{i:04d}.mid"))
