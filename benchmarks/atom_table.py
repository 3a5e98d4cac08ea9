"""Per-atom diagnostics of a trained run: for every atom, its fragments' top content classes and
their style histogram, then linear-probe accuracies of z_c and z_s for both labels.

    python benchmarks/atom_table.py RUN [--split test] [--audio]

``--audio`` (Waveforms and InsNotes runs after `varinv recombine`): the share of recombined cells
(atom x style) whose estimated f0 is within a semitone of the atom's majority class.

Shows what the summary metrics hide: whether mixed atoms merge neighbouring classes or depend on the
style (Waveforms: low tones permuted per waveform), and whether z_s carries content.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from varinv.eval.embed import embed_split
from varinv.eval.metrics import confusion_matrix
from varinv.train.trainer import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--split", default="test")
    ap.add_argument("--audio", action="store_true", help="check the pitch of RUN/recombine/audio cells")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, ds, model, _ = load_run(args.run)
    e = embed_split(model, ds.split(args.split))
    if e["index"] is None:
        raise SystemExit(f"error: {args.run} has no codebook (method {cfg.method}); this table needs one")
    idx, c, s = e["index"], e["content"], e["style"]
    k_atoms = cfg.model.n_atoms
    by_content = confusion_matrix(idx, c, k_atoms, len(ds.content_names))  # (K, classes)
    by_style = confusion_matrix(idx, s, k_atoms, len(ds.style_names))
    print(f"atom | n | top classes (fraction) | style histogram {ds.style_names}")
    for k, (cc, ss) in enumerate(zip(by_content, by_style)):
        n = cc.sum()
        top = " ".join(f"{ds.content_names[t]}:{cc[t] / n:.2f}" for t in np.argsort(-cc)[:3] if cc[t])
        print(f"{k:3d} | {n} | {top or 'unused'} | {ss.tolist()}")
    half = np.arange(len(c)) < len(c) // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, z, y in (("z_c -> content", e["zc"], c), ("z_c -> style", e["zc"], s),
                           ("z_s -> style", e["zs"], s), ("z_s -> content", e["zs"], c)):
            z = StandardScaler().fit(z[half]).transform(z)
            clf = LogisticRegression(max_iter=2000).fit(z[half], y[half])
            print(f"linear probe {name}: {(clf.predict(z[~half]) == y[~half]).mean():.3f}")
    if args.audio:
        audio_pitch(Path(args.run), ds.manifest["generator"], by_content.argmax(1))


def audio_pitch(run: Path, generator: str, majority: np.ndarray) -> None:
    import soundfile

    from varinv.audio.features import estimate_f0, midi_to_hz, semitones
    from varinv.data.waveforms import FREQS

    hz = {"waveforms": lambda k: FREQS[k], "insnotes": lambda k: midi_to_hz(60 + k)}.get(generator)
    folder = run / "recombine" / "audio"
    if hz is None or not (folder / "audio.json").exists():
        raise SystemExit(f"error: no audio grid at {folder} for a {generator} run; run `varinv recombine {run}`")
    index = json.loads((folder / "audio.json").read_text())
    err = np.array([[abs(semitones(estimate_f0(*soundfile.read(folder / "cells" / f)), hz(majority[a])))
                     for f in row] for a, row in zip(index["atom_order"], index["files"]["cells"])])
    print(f"recombined cells within a semitone of their atom's majority class: {(err < 1).mean():.3f} of {err.size}"
          f" (per style {np.round((err < 1).mean(0), 2).tolist()}, median error {np.median(err):.2f} semitones)")


if __name__ == "__main__":
    main()
