"""The audio generators of the generalisation suite (benchmarks/generalisation/{speech,fluidr3,fmsynth}.py).

Each domain is generated three times at a tiny size (seed 0 twice, seed 1 once) with a smaller rendering
pool than the full-size default, so the whole file stays well under 30 s on one core.
"""

import importlib.util
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from varinv.audio.features import BIN_HZ, estimate_f0, log_stft, midi_to_hz, reduce_bins

ROOT = Path(__file__).parents[1]
GEN = ROOT / "benchmarks" / "generalisation"
N_SAMPLES = 8
# (content classes, fragments per sample, contents repeat within a sample)
SPEC = {"speech": (10, 10, True), "fluidr3": (12, 12, True), "fmsynth": (12, 12, False)}
# smaller pools: fewer renderings per (style, content), and only 4 speakers (espeak runs as a process)
POOL = {"speech": {"VARIATIONS": 3}, "fluidr3": {"VELOCITIES": [70, 120, 95]}, "fmsynth": {"VARIATIONS": 3}}
SPEECH_VOICES = 4


def load(domain: str):
    spec = importlib.util.spec_from_file_location(f"gen_{domain}", GEN / f"{domain}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for k, v in POOL[domain].items():
        setattr(mod, k, v)
    if domain == "speech":
        mod.VOICES = mod.VOICES[:2] + mod.VOICES[-2:]  # lowest and highest voices included
    return mod


def require(domain: str) -> None:
    if domain == "speech" and shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    if domain == "fluidr3":
        from varinv.audio.render import fluidsynth_available

        if not fluidsynth_available() or not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").is_file():
            pytest.skip("libfluidsynth or FluidR3_GM.sf2 (Debian fluid-soundfont-gm) is missing")


@pytest.fixture(scope="module", params=sorted(SPEC))
def gen(request, tmp_path_factory):
    """(domain, module, {run: Dataset}) with runs 'a' (seed 0), 'b' (seed 0 again), 'c' (seed 1)."""
    domain = request.param
    require(domain)
    mod = load(domain)
    root = tmp_path_factory.mktemp(domain)
    runs = {name: mod.generate(root / name, n_samples=N_SAMPLES, seed=seed)
            for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    return domain, mod, runs


def arrays(ds, split):
    s = ds.split(split, mmap=False)
    return s.x, s.content, s.style


def test_shapes_labels_names(gen):
    domain, mod, runs = gen
    n_content, length, _ = SPEC[domain]
    n_style = SPEECH_VOICES if domain == "speech" else 8
    ds = runs["a"]
    sizes = mod.split_sizes(N_SAMPLES)
    assert ds.splits == ["train", "val", "test"]
    assert len(ds.content_names) == n_content and len(ds.style_names) == n_style
    assert ds.manifest["generator"] == f"generalisation.{domain}" and ds.kind == "spectrogram"
    for split in ds.splits:
        x, c, s = arrays(ds, split)
        n = sizes[split]
        assert x.shape == (n, length, 1, 128, 32) and x.dtype == np.float16
        assert np.isfinite(x).all()
        assert c.shape == (n, length) and c.dtype == np.int64 and c.min() >= 0 and c.max() < n_content
        assert s.shape == (n,) and s.dtype == np.int64 and s.min() >= 0 and s.max() < n_style


def test_content_repeats(gen):
    domain, _, runs = gen
    _, length, repeats = SPEC[domain]
    c = np.concatenate([arrays(runs["a"], sp)[1] for sp in runs["a"].splits])
    distinct = np.array([len(set(row)) for row in c])
    if repeats:
        assert (distinct < length).any()
    else:
        assert (distinct == length).all()


def test_deterministic_per_seed(gen):
    _, _, runs = gen
    for split in runs["a"].splits:
        for a, b in zip(arrays(runs["a"], split), arrays(runs["b"], split)):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(arrays(runs["a"], "train")[0], arrays(runs["c"], "train")[0])
    assert not np.array_equal(arrays(runs["a"], "train")[1], arrays(runs["c"], "train")[1])


def test_no_silent_fragment(gen):
    # the floor is log(1e-5) = -11.5 and the added noise peaks near log(0.06) = -2.8; a sounding
    # fragment at its quietest (-6 dB gain, softest velocity) peaks far above e (log-magnitude 1)
    _, _, runs = gen
    for split in runs["a"].splits:
        x = arrays(runs["a"], split)[0].astype(np.float32)
        assert x.max(axis=(2, 3, 4)).min() > 1.0


def lowest_strong_peak(logmag: np.ndarray) -> int:
    """Bin of the lowest local maximum of the time-averaged magnitude within -10 dB of its maximum."""
    m = np.exp(logmag.astype(np.float32)).mean(-1)
    strong = (m >= 0.3 * m.max()) & (m >= np.roll(m, 1)) & (m >= np.roll(m, -1))
    strong[0] = strong[-1] = False
    return int(np.argmax(strong))


def pitch_hits(x: np.ndarray, content: np.ndarray, pitches) -> float:
    """Share of fragments whose lowest strong peak is within 1 bin of a harmonic (1..4) of their label."""
    hits = []
    for frag, c in zip(x.reshape(-1, 128, 32), content.reshape(-1)):
        f0_bin = midi_to_hz(pitches[c]) / BIN_HZ
        hits.append(min(abs(lowest_strong_peak(frag) - k * f0_bin) for k in range(1, 5)) <= 1.0)
    return float(np.mean(hits))


def test_pitch_matches_content(gen):
    domain, mod, runs = gen
    if domain == "speech":
        pytest.skip("speech content is a word, not a pitch (see test_speech_voices_differ)")
    x = np.concatenate([arrays(runs["a"], sp)[0] for sp in runs["a"].splits])
    c = np.concatenate([arrays(runs["a"], sp)[1] for sp in runs["a"].splits])
    assert pitch_hits(x, c, mod.PITCHES) >= 0.9
    # the check can fail: labels one semitone off almost never match
    assert pitch_hits(x, (c + 1) % 12, mod.PITCHES) < 0.3


def test_speech_voices_differ():
    require("speech")
    mod = load("speech")
    (low, p_low, s_low), (high, p_high, s_high) = mod.VOICES[0], mod.VOICES[-1]
    with tempfile.TemporaryDirectory() as tmp:
        a = mod.render_word(low, "five", p_low, s_low, 0.0, Path(tmp))
        b = mod.render_word(high, "five", p_high, s_high, 0.0, Path(tmp))
        # at 80 words per minute "seven" does not fit: it is re-spoken faster, not cut
        assert len(mod.speak(low, "seven", p_low, 80, Path(tmp))) > mod.MAX_WORD
        slow = mod.render_word(low, "seven", p_low, 80, 1.0, Path(tmp))
    sounding = np.nonzero(np.abs(slow) > 1e-3)[0]
    assert sounding[0] >= 0.02 * 16000 and sounding[-1] < 0.02 * 16000 + mod.MAX_WORD
    for w in (a, b):
        assert w.shape == (16000,) and np.sqrt(np.mean(w**2)) > 0.01
    spec_a, spec_b = (np.log(np.exp(reduce_bins(log_stft(w).numpy(), 128)).mean(-1)) for w in (a, b))
    assert np.abs(spec_a - spec_b).mean() > 0.3
    assert estimate_f0(b) > 1.5 * estimate_f0(a)

