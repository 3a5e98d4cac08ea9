"""A label-free health check: did the content vocabulary and the style space form?

Everything here comes from the run itself, never from labels, so it works on a user's unlabelled data:

* the V3 hinge terms over the last tenth of the training log (met when their mean is <= ``HINGE_MET``):
  content and fragment for the vocabulary, style for the style space;
* atom usage: atoms holding at least a fifth of a uniform share, and the perplexity of the usage;
* rendering agreement (models with a codebook and a decoder): the share of fragments whose atom is also
  the atom that, rendered in the fragment's style and pose, reconstructs it best. Where it is known it
  decides whether the vocabulary formed (>= ``MIN_AGREEMENT``), and the hinges and margin are only
  reported. On 16 calibration runs (benchmarks/results/2026-12-03-generalisation-explore6.md) every run
  with purity >= 0.99 but one had 0.95-1.00, every run with purity <= 0.73 had 0.41-0.92;
* atom margin: each fragment's distance to its nearest atom over that to the second nearest, averaged.
  A vocabulary puts fragments near one atom and far from the rest; a codebook that merely cuts a
  continuum (position, scale) leaves many near the borders. On the first suite runs it separated every
  run with purity >= 0.87 (margins 0.22-0.32) from every run with purity <= 0.51 (0.41-0.75);
* reconstruction: the share of the fragments' variance that the training reconstructions explain (1 - the
  recon term over the last tenth of the log / the variance of the checked fragments). Below
  ``MIN_RECON_EXPLAINED`` the decoder never learnt to render, and the other content signals mean nothing:
  decoder-guided reassignment teaches the encoder to agree with an untrained decoder's preferences.
  Recipe runs explain 0.57 (fmsynth) to 0.61 (shapes) although their purity is only 0.70-0.85: a floor
  for "the decoder renders", not a test of the vocabulary;
* exclusive atoms: pairs of atoms that share a sample less than ``MAX_COOCCURRENCE`` times as often as
  contents drawn independently would, where at least ``MIN_SHARED`` shared samples were due: one content
  split in two by style (shapes: filled and outline crescents in two atoms that never met in a sample, every
  other pair at 0.85-1.03; benchmarks/results/2026-12-07-generalisation-explore33.md). A failed content verdict;
* style spread: mean pairwise distance of the sample-mean styles over the mean within-sample distance
  (the ratio the style hinge asks to be >= r);
* content in style: the share of the within-sample variation of z_s (each fragment's z_s minus its
  sample's mean) that the fragment's atom explains (eta squared). Style should not change with the
  content, so a high share means content detail can reach the decoder through z_s instead of the
  codebook. Reported, not yet a verdict: it is scale-free, and a toy run whose atoms are right already
  shows 0.5 (tests/test_health.py), so its threshold waits for calibration on real runs.

``assess`` returns the numbers and the verdicts; ``warning`` turns a failed verdict into one line with the
likely remedy. Thresholds: benchmarks/results/2026-12-02-generalisation-explore.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from varinv.runs import TRAIN_LOG_FILE

HINGE_MET = 0.1
MIN_PERPLEXITY_SHARE = 0.5  # of K
MAX_ATOM_MARGIN = 0.35
MIN_AGREEMENT = 0.93
MIN_RECON_EXPLAINED = 0.25
MAX_COOCCURRENCE = 0.25
MIN_SHARED = 8.0  # zero shared samples where 8 were due: Poisson chance e^-8
HINGES = ("content", "style", "sample", "fragment")


def read_log(run: Path) -> list[dict]:
    path = Path(run) / TRAIN_LOG_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mpd(x: np.ndarray) -> float:
    """Mean pairwise Euclidean distance of the rows of x (n, d), ordered pairs i != j."""
    n = len(x)
    if n < 2:
        return 0.0
    sq = (x * x).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0))
    return float(d.sum() / (n * (n - 1)))


def eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    """Share of the total variance of values (n, d) explained by the group means (groups (n,))."""
    centred = values - values.mean(0)
    total = float((centred**2).sum())
    if total <= 0:
        return 0.0
    between = 0.0
    for g in np.unique(groups):
        sel = groups == g
        between += sel.sum() * float((centred[sel].mean(0) ** 2).sum())
    return between / total


def exclusive_atoms(index: np.ndarray, n_atoms: int) -> list[list]:
    """[atom, atom, ratio, shared samples due] for each pair of atoms that share the samples of index (R, L) less
    than ``MAX_COOCCURRENCE`` times as often as independence predicts, where at least ``MIN_SHARED`` were due."""
    used = np.zeros((len(index), n_atoms))
    np.put_along_axis(used, np.asarray(index), 1.0, axis=1)
    presence = used.sum(0)
    expected = np.outer(presence, presence) / max(len(index), 1)  # shared samples if contents were independent
    ratio = (used.T @ used) / np.maximum(expected, 1e-9)
    i, j = np.nonzero(np.triu((ratio < MAX_COOCCURRENCE) & (expected >= MIN_SHARED), 1))
    return [[int(a), int(b), round(float(ratio[a, b]), 3), round(float(expected[a, b]), 1)] for a, b in zip(i, j)]


def atom_margin(zc: np.ndarray, atoms: np.ndarray) -> float:
    """Mean over fragments zc (N, d) of the distance to the nearest atom (K, d) over the second nearest."""
    d = np.sqrt(np.maximum(((zc[:, None, :] - atoms[None]) ** 2).sum(-1), 0))
    d.sort(1)
    return float((d[:, 0] / (d[:, 1] + 1e-12)).mean())


def assess(log: list[dict], index: np.ndarray | None, zs: np.ndarray, n_atoms: int,
           zc: np.ndarray | None = None, atoms: np.ndarray | None = None, agreement: float | None = None,
           data_var: float | None = None) -> dict:
    """index (R', L) atoms (None: no codebook) of R' >= R samples, zs (R, L, Ds) the fragments' own (unpooled) styles
    of the first R; log: train_log rows; zc (R, L, Dc) and the atoms (K, Dc) give the atom margin; ``agreement``:
    the rendering agreement; ``data_var``: the mean squared deviation of the fragments from their mean, per element."""
    out: dict = {"n_atoms": int(n_atoms)}
    tail = log[-max(1, len(log) // 10):] if log else []
    hinges = {h: float(np.mean([row[h] for row in tail])) for h in HINGES if tail and all(h in row for row in tail)}
    if hinges:
        out["hinges"] = hinges
    zs = np.asarray(zs, dtype=np.float64)
    within = float(np.mean([_mpd(s) for s in zs]))
    out["style_ratio"] = _mpd(zs.mean(1)) / (within + 1e-12)
    if index is not None:
        index = np.asarray(index)
        counts = np.bincount(index.reshape(-1), minlength=n_atoms)
        p = counts / counts.sum()
        nz = p[p > 0]
        out["atoms_used"] = int((p >= 0.2 / n_atoms).sum())
        out["atom_perplexity"] = float(math.exp(-(nz * np.log(nz)).sum()))
        resid = (zs - zs.mean(1, keepdims=True)).reshape(-1, zs.shape[-1])
        out["content_in_style"] = eta_squared(resid, index[:len(zs)].reshape(-1))
        out["exclusive_atoms"] = exclusive_atoms(index.reshape(len(index), -1), n_atoms)
    if zc is not None and atoms is not None and len(atoms) > 1:
        out["atom_margin"] = atom_margin(np.asarray(zc, np.float64).reshape(-1, atoms.shape[-1]), np.asarray(atoms))
    if agreement is not None:  # it decides; the hinges and the margin are then only reported
        out["rendering_agreement"] = float(agreement)
        content_ok = agreement >= MIN_AGREEMENT
    else:
        content_ok = (hinges.get("content", 0.0) <= HINGE_MET and hinges.get("fragment", 0.0) <= HINGE_MET
                      and out.get("atom_margin", 0.0) <= MAX_ATOM_MARGIN)
    if index is not None:
        content_ok = (content_ok and out["atom_perplexity"] >= MIN_PERPLEXITY_SHARE * n_atoms
                      and not out["exclusive_atoms"])
    if data_var and tail and all("recon" in row for row in tail):
        out["recon_explained"] = 1 - float(np.mean([row["recon"] for row in tail])) / data_var
        content_ok = content_ok and out["recon_explained"] >= MIN_RECON_EXPLAINED
    # Only the style hinge (z_s spread across samples over within): the sample hinge compares the styles
    # with the content's scale (or, under content_reference "shuffled", with random groups' content means),
    # which a formed style need not reach (InsNotes under C1: z_s·style 0.964 with the sample hinge at 0.66).
    style_ok = hinges.get("style", 0.0) <= HINGE_MET
    out["content_formed"] = bool(content_ok)
    out["style_formed"] = bool(style_ok)
    out["ok"] = bool(content_ok and style_ok)
    return out


def warning(h: dict) -> str | None:
    """One line naming what did not form and the likely remedy, or None for a healthy run."""
    if h["ok"]:
        return None
    problems, remedies = [], []
    hinges = h.get("hinges", {})
    if not h["content_formed"]:
        if "rendering_agreement" in h:  # it decides; the hinges and margin are then only reported
            if h["rendering_agreement"] < MIN_AGREEMENT:
                problems.append(f"only {h['rendering_agreement']:.0%} of fragments are rendered best by their own atom")
        else:
            if hinges.get("content", 0.0) > HINGE_MET or hinges.get("fragment", 0.0) > HINGE_MET:
                problems.append(f"content hinge unmet ({hinges.get('content', 0):.2f})")
            if h.get("atom_margin", 0.0) > MAX_ATOM_MARGIN:
                problems.append(f"fragments lie between atoms (margin {h['atom_margin']:.2f})")
        if h.get("recon_explained", 1.0) < MIN_RECON_EXPLAINED:
            problems.append(f"reconstructions explain only {max(h['recon_explained'], 0):.0%} of the fragments' variance")
        if "atom_perplexity" in h and h["atom_perplexity"] < MIN_PERPLEXITY_SHARE * h["n_atoms"]:
            problems.append(f"atom perplexity {h['atom_perplexity']:.1f} of K = {h['n_atoms']}")
        for a, b, ratio, _ in h.get("exclusive_atoms", [])[:3]:
            problems.append(f"atoms {a} and {b} share samples {ratio:.0%} as often as independent contents would "
                            "(one content split by style?)")
        if h.get("exclusive_atoms"):
            remedies.append("ignore the atom pairs if those contents never share a sample by design")
        remedies.append("train longer (train.steps) or check that contents vary within each sample")
    if not h["style_formed"]:
        problems.append(f"style hinge unmet ({hinges.get('style', 0):.2f}, style spread ratio {h['style_ratio']:.1f})")
        remedies.append("use a larger train.batch_size (the across-sample statistics need many samples)")
    what = ("the content vocabulary" if not h["content_formed"] else "the style space") + " did not form"
    if not h["content_formed"] and not h["style_formed"]:
        what = "neither the content vocabulary nor the style space formed"
    return f"warning: {what} ({'; '.join(problems)}); try: {'; '.join(dict.fromkeys(remedies))}"
