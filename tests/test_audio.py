"""Audio features, Griffin-Lim, FluidSynth rendering and the two audio datasets."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from varinv.audio.features import (
    BIN_HZ,
    SR,
    estimate_f0,
    log_stft,
    midi_to_hz,
    reduce_bins,
    semitones,
)
from varinv.audio.griffinlim import griffin_lim, write_wav
from varinv.audio.render import fluidsynth_available
from varinv.data import insnotes, waveforms
from varinv.errors import ConfigError, DataError, DependencyError

needs_fluidsynth = pytest.mark.skipif(
    not fluidsynth_available(), reason="libfluidsynth/pyfluidsynth not installed (apt-get install libfluidsynth3)"
)


def sine(freq: float, n: int = SR, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def chroma_distance(f0: float, pitch: int) -> float:
    """Semitones from f0 to the pitch's class, ignoring the octave (|.| <= 6)."""
    d = semitones(f0, midi_to_hz(pitch))
    return abs((d + 6) % 12 - 6)


def harmonic_ratio(x: np.ndarray, f0: float) -> float:
    """Share of the power above 1.5 f0 (0 for a pure sine)."""
    p = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(p[f > 1.5 * f0].sum() / p.sum())


def spectral_flatness(x: np.ndarray) -> float:
    p = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2 + 1e-12
    return float(np.exp(np.mean(np.log(p))) / np.mean(p))


# -- features ------------------------------------------------------------------------------------
def test_log_stft_shapes_and_reduce():
    lm = log_stft(sine(440.0))
    assert lm.shape == (512, 32)  # 1 s at 16 kHz: 512 bins x 32 frames
    batch = log_stft(np.stack([sine(220.0), sine(330.0), sine(440.0)]))
    assert batch.shape == (3, 512, 32)
    assert torch.allclose(batch[2], lm)
    # the fundamental sits in bin round(f / 15.625)
    assert int(lm[:, 16].argmax()) == round(440.0 / BIN_HZ)
    assert reduce_bins(lm, 128).shape == (128, 32)
    assert reduce_bins(lm.numpy(), 512).shape == (512, 32)
    with pytest.raises(ConfigError):
        reduce_bins(lm, 0)
    with pytest.raises(ConfigError):
        reduce_bins(lm, 600)


def test_insnotes_fragment_alignment_without_synth():
    # a synthetic "file": 120 sines on the InsNotes grid -> 120 fragments of 512 x 32
    audio = np.zeros(insnotes.FILE_SAMPLES, np.float32)
    pitches = 60 + np.arange(120) % 12
    for i, p in enumerate(pitches):
        s = i * insnotes.ONSET_SAMPLES
        audio[s : s + SR] = sine(midi_to_hz(p))
    assert log_stft(audio).shape == (512, 1 + insnotes.FILE_SAMPLES // 512)
    frags = insnotes.note_fragments(audio, 512)
    assert frags.shape == (120, 512, 32) and frags.dtype == np.float16
    peak_bins = frags.astype(np.float32)[:, :, 16].argmax(axis=1)
    expected = np.round(np.array([midi_to_hz(p) for p in pitches]) / BIN_HZ)
    assert np.all(np.abs(peak_bins - expected) <= 1)
    # frame 0 of a fragment is centred on the onset (half silence before it), frame 31 fully inside
    f = frags.astype(np.float32)
    assert f[5, :, 0].max() < f[5, :, 16].max() and f[5, :, 31].max() > f[5, :, 16].max() - 0.5


@pytest.mark.parametrize("freq", [110.0, 261.63, 440.0, 1200.0])
def test_estimate_f0_sine(freq):
    assert abs(semitones(estimate_f0(sine(freq)), freq)) < 0.05


# -- Griffin-Lim ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n_bins", [512, 128])
def test_griffin_lim_roundtrip_keeps_pitch(n_bins):
    freqs = [220.0, 440.0]
    lm = reduce_bins(log_stft(np.stack([sine(f) for f in freqs])), n_bins)
    wave = griffin_lim(lm, n_iter=32)
    assert wave.shape == (2, 512 * 31)
    for w, f in zip(wave.numpy(), freqs):
        assert abs(semitones(estimate_f0(w), f)) < 1.0
    # deterministic for a seed
    assert torch.equal(griffin_lim(lm[0], n_iter=4, seed=3), griffin_lim(lm[0], n_iter=4, seed=3))


def test_write_wav_pcm16_peak(tmp_path):
    import soundfile

    path = write_wav(tmp_path / "a" / "x.wav", torch.tensor(sine(300.0, amp=3.0)))
    data, sr = soundfile.read(str(path), dtype="float64")
    info = soundfile.info(str(path))
    assert sr == SR and info.subtype == "PCM_16"
    assert abs(np.abs(data).max() - 0.9) < 1e-3
    write_wav(tmp_path / "silent.wav", np.zeros(100))  # no division by zero
    with pytest.raises(DataError):
        write_wav(tmp_path / "nan.wav", np.array([0.0, np.nan]))


# -- Waveforms -----------------------------------------------------------------------------------
def test_waveform_synthesis_pitch_and_timbre():
    n = len(waveforms.WAVEFORMS)
    grid = waveforms.FREQS
    w = np.repeat(np.arange(n), len(grid))
    f = np.tile(grid, n)
    tones = waveforms.synthesize(w, f, phases=np.linspace(0, 1, len(f), endpoint=False))
    assert tones.shape == (len(f), SR) and np.abs(tones).max() <= 1.0 + 1e-5
    for x, freq in zip(tones, f):
        assert abs(semitones(estimate_f0(x), freq)) < 0.25  # well inside the 1.8-semitone grid step
    by = {name: tones[w == i] for i, name in enumerate(waveforms.WAVEFORMS)}
    hr = {k: np.array([harmonic_ratio(x, fr) for x, fr in zip(v, grid)]) for k, v in by.items()}
    assert hr["sine"].max() < 1e-3
    assert hr["square"].min() > 0.1 and hr["sawtooth"].min() > 0.2
    assert 1e-3 < hr["triangle"].min() and hr["triangle"].max() < hr["square"].min()
    assert spectral_flatness(by["sine"][10]) < spectral_flatness(by["square"][10])


def test_waveforms_dataset_labels(tmp_path):
    ds = waveforms.generate(tmp_path / "wf", n_samples=20, seed=5, n_fragments=6, progress=False)
    assert ds.content_names[0] == "110Hz" and ds.style_names == ["sine", "sawtooth", "square", "triangle"]
    assert set(ds.splits) == {"train", "val", "test"}
    sp = ds.split("train")
    assert sp.x.shape[1:] == (6, 1, waveforms.DEFAULT_N_BINS, waveforms.DEFAULT_N_FRAMES) and sp.x.dtype == np.float16
    for c in sp.content:
        assert len(set(c.tolist())) == 6  # distinct frequencies in a sample
    # the strongest bin of every fragment is its grid frequency (all four waveforms peak at f0)
    spec = np.asarray(sp.x, np.float32)[:, :, 0].mean(axis=-1)  # (N, L, F)
    peak = spec.argmax(axis=-1)
    expected = waveforms.FREQS[sp.content] / BIN_HZ
    # +-40 cents of detune move the 880-Hz class by up to 1.3 bins; neighbouring classes are >= 1 bin apart
    assert np.all(np.abs(peak - expected) <= 1.5)
    nearest = np.abs(peak[..., None] - waveforms.FREQS / BIN_HZ).argmin(axis=-1)
    assert (nearest == sp.content).mean() > 0.9
    again = waveforms.generate(tmp_path / "wf2", n_samples=20, seed=5, n_fragments=6, progress=False)
    assert np.array_equal(np.asarray(again.split("train").x), np.asarray(sp.x))
    with pytest.raises(ConfigError):
        waveforms.generate(tmp_path / "bad", n_samples=20, n_bins=128, progress=False)
    with pytest.raises(DataError):
        waveforms.generate(tmp_path / "wf", n_samples=20, progress=False)  # exists, no overwrite


def test_waveforms_frame_pooling_and_defaults(tmp_path):
    """Pooled fragments are the means of the full-resolution frames; the default plays all 21 tones."""
    full = waveforms.generate(tmp_path / "full", n_samples=10, seed=2, n_frames=32, progress=False)
    pooled = waveforms.generate(tmp_path / "pool", n_samples=10, seed=2, progress=False)
    x32, x8 = (np.asarray(d.split("train").x, np.float32) for d in (full, pooled))
    assert x32.shape[1] == waveforms.N_FREQS and x8.shape[-1] == 8 and x32.shape[-1] == 32
    assert np.array_equal(np.sort(pooled.split("train").content, axis=1),
                          np.tile(np.arange(waveforms.N_FREQS), (len(x8), 1)))
    np.testing.assert_allclose(x8, x32.reshape(*x32.shape[:-1], 8, 4).mean(-1), atol=2e-2)
    assert pooled.manifest["params"]["frame_pool"] == 4 and full.manifest["params"]["frame_pool"] == 1
    with pytest.raises(ConfigError, match="must divide"):
        waveforms.generate(tmp_path / "bad", n_samples=10, n_frames=5, progress=False)
    assert not (tmp_path / "bad").exists()


# -- FluidSynth / InsNotes -----------------------------------------------------------------------
def test_missing_libfluidsynth_raises_dependency_error(monkeypatch, tmp_path):
    from varinv.audio import render

    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # `import fluidsynth` now raises ImportError
    with pytest.raises(DependencyError) as err:
        render.Renderer()
    msg = str(err.value)
    assert "libfluidsynth" in msg and "apt-get install libfluidsynth3" in msg and "pip install pyfluidsynth" in msg
    assert "\n" not in msg
    with pytest.raises(DependencyError):
        insnotes.generate(tmp_path / "ins", files_per_instrument=1, progress=False)
    assert not (tmp_path / "ins").exists()
    assert not render.fluidsynth_available()


@needs_fluidsynth
def test_rendered_notes_have_their_label_pitch():
    from varinv.audio.render import Renderer

    with Renderer() as r:
        for program in (56, 19, 78):  # trumpet, church organ (sub-octave), whistle (TimGM6mb: 9 semitones low)
            offset, _ = insnotes.tune_instrument(r, program)
            plan = insnotes.plan_file(0, program, 0)
            audio = insnotes.render_file(r, plan, offset)
            assert audio.shape == (insnotes.FILE_SAMPLES,) and abs(np.abs(audio).max() - 0.9) < 1e-4
            for i, pitch in enumerate(plan.pitches):
                s = i * insnotes.ONSET_SAMPLES
                f0 = estimate_f0(audio[s + 800 : s + SR], SR)
                assert chroma_distance(f0, int(pitch)) < 1.0, (program, i, pitch, f0)
            # every 12-note block holds each pitch once
            assert all(sorted(b) == list(range(12)) for b in plan.content.reshape(10, 12).tolist())
        assert insnotes.tune_instrument(r, 78)[0] == -3  # whistle: keys 57..68 sound C3..B3


@needs_fluidsynth
def test_silent_note_and_bad_soundfont_raise_data_error(tmp_path):
    from varinv.audio.render import Renderer

    with Renderer() as r:
        with pytest.raises(DataError, match=r"instrument 78 .*renders silent with soundfont TimGM6mb"):
            r.render_note(78, 90, 100)  # TimGM6mb's whistle has no sample above key 78
    with pytest.raises(DataError, match="does not exist"):
        Renderer(tmp_path / "missing.sf2")
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont")
    with pytest.raises(DataError, match="cannot load"):
        Renderer(bad)


@needs_fluidsynth
def test_insnotes_small_generation_is_deterministic(tmp_path):
    kw = dict(files_per_instrument=3, seed=7, instruments=(56, 19), ood_instruments=(78,),
              ood_files_per_instrument=1, shots=(1,), workers=1, progress=False)
    ds = insnotes.generate(tmp_path / "a", **kw)
    assert set(ds.splits) == {"train", "val", "test", "ood_test", "ood_1shot"}
    assert ds.fragment_shape == (1, insnotes.DEFAULT_N_BINS, 32) and ds.n_fragments == 12
    assert ds.content_names[0] == "C4" and ds.style_names == ["Trumpet (56)", "Church Organ (19)"]
    tr = ds.split("train")
    assert tr.x.shape == (20, 12, 1, 128, 32) and tr.x.dtype == np.float16
    assert all(sorted(c) == list(range(12)) for c in tr.content.tolist())
    assert tr.style.tolist() == [0] * 10 + [1] * 10
    assert ds.split("ood_test").style_names == ["Whistle (78)"]
    assert ds.manifest["params"]["key_offsets"]["78"] == -3
    assert (tmp_path / "a" / "midi").is_dir() and (tmp_path / "a" / "files.json").exists()
    again = insnotes.generate(tmp_path / "b", **kw)
    for name in ds.splits:
        for key in ("x", "content", "style"):
            assert ds.manifest["splits"][name]["files"][f"{key}.npy"]["sha256"] == \
                again.manifest["splits"][name]["files"][f"{key}.npy"]["sha256"], (name, key)


@needs_fluidsynth
def test_insnotes_two_workers_match_one(tmp_path):
    kw = dict(files_per_instrument=2, seed=1, instruments=(41, 72), ood=False, progress=False, write_midi=False)
    one = insnotes.generate(tmp_path / "one", workers=1, **kw)
    two = insnotes.generate(tmp_path / "two", workers=2, **kw)
    assert one.manifest["splits"] == two.manifest["splits"]
