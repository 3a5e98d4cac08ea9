"""The generalisation suite: domains no method was tuned on, each with a floor and a ceiling.

    python benchmarks/generalisation/suite.py data                 # generate every missing domain
    python benchmarks/generalisation/suite.py floor                # k-means floor -> results file
    python benchmarks/generalisation/suite.py grid --tag recipe --methods v3,tsdsae,supervised --seeds 0,1,2
    python benchmarks/generalisation/suite.py table --tags recipe         # per-run rows beside the floor
    python benchmarks/generalisation/suite.py matrix --tags abl-base,abl-nce   # domains x tags, passes marked
    python benchmarks/generalisation/suite.py matrix --tags r25t,ceil25t/supervised   # a peer's cells: TAG/METHOD
    python benchmarks/generalisation/suite.py matrix --tags r31+r32/v3-cn64n1d   # one variant, over two grids
    python benchmarks/generalisation/suite.py grid --tag explore-a --domains letters,speech --seeds 0 \\
        --set model.film=true --variant a: --variant b:model.style_pool=true   # two variants side by side
    python benchmarks/generalisation/suite.py grid --tag r37 --split val --also-split test --seeds 0,1,2
        # chosen on val; the same trainings' test scores in cells/suite-r37-test/ (matrix --tags r37-test)

``grid`` writes ``runs/suite-<tag>/grid.yaml`` and runs it with ``varinv benchmark`` (resumable, 2 processes
× 1 thread; finished cells are recorded in ``benchmarks/results/cells/suite-<tag>/``). Every domain runs with
the same method config (``configs/<method>.yaml``) and sets only its data path, K (= number of content
classes), steps and batch size. The three project benchmarks are domains too (``--domains phonenums,...``),
with the data paths their own configs use.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True)
class Domain:
    k: int  # content classes = codebook size
    steps: int
    batch: int = 32
    script: str | None = None  # generator in this folder; None: a project benchmark (`varinv data ...`)
    path: str | None = None  # data folder (default data/gen/<name>)
    repeats: bool = False  # contents repeat within a sample

    def data_path(self, name: str) -> str:
        return self.path or f"data/gen/{name}"


# Twice round 20's steps since round 25 (round 20's step takes half the time; greek and fmsynth need them), which
# keeps a training within about 20 minutes on one core beside another run, except InsNotes, whose 2,000 steps took
# 29 minutes on the 2-core Xeon (2026-12-06 timings, 2026-12-06-generalisation-explore25.md).
DOMAINS = {
    "handwriting": Domain(10, 3000, script="handwriting.py"),
    "letters": Domain(10, 3000, script="letters.py"),
    "shapes": Domain(10, 3000, script="shapes.py", repeats=True),
    "textures": Domain(10, 3000, script="textures.py"),
    "greek": Domain(10, 3000, script="greek.py", repeats=True),
    "speech": Domain(10, 1600, script="speech.py", repeats=True),
    "fluidr3": Domain(12, 1600, script="fluidr3.py", repeats=True),
    "fmsynth": Domain(12, 1600, script="fmsynth.py"),
    "phonenums": Domain(10, 3000, path="data/phonenums-10k"),
    "insnotes": Domain(12, 1000, path="data/insnotes"),
    "waveforms": Domain(21, 2400, batch=12, path="data/waveforms"),
}
SUITE = [n for n, d in DOMAINS.items() if d.script]
BENCH_DATA = {  # the project benchmarks' generation commands
    "phonenums": ["data", "phonenums", "--out", "data/phonenums-10k", "--size", "10000", "--seed", "0"],
    "insnotes": ["data", "insnotes", "--out", "data/insnotes"],
    "waveforms": ["data", "waveforms", "--out", "data/waveforms"],
}


def _names(arg: str | None) -> list[str]:
    names = SUITE if not arg else [n.strip() for n in arg.split(",") if n.strip()]
    bad = [n for n in names if n not in DOMAINS]
    if bad:
        sys.exit(f"error: unknown domain(s) {bad}; known: {', '.join(DOMAINS)}")
    return names


def cmd_data(a) -> None:
    for name in _names(a.domains):
        d = DOMAINS[name]
        out = ROOT / d.data_path(name)
        if (out / "manifest.json").exists():
            print(f"{name}: {out} exists")
            continue
        if d.script:
            cmd = [sys.executable, str(HERE / d.script), "--out", str(out)]
        else:
            cmd = [sys.executable, "-m", "varinv", *BENCH_DATA[name]]
        print(f"{name}: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)


def floor(path: Path, k: int, seed: int = 0, n_components: int = 32, max_train: int = 20000) -> dict:
    """k-means (K clusters) on PCA of per-fragment-normalised inputs, fitted on train, scored on test with
    the evaluator's core metrics (z_c = z_s = the PCA features, atoms = the clusters)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    from varinv.data.store import open_dataset
    from varinv.eval.evaluate import core_metrics

    ds = open_dataset(path)

    def feats(split):
        x = np.asarray(split.x, dtype=np.float32).reshape(-1, int(np.prod(ds.fragment_shape)))
        x = x - x.mean(1, keepdims=True)
        return x / (x.std(1, keepdims=True) + 1e-6)

    rng = np.random.default_rng(seed)
    train = feats(ds.split("train"))
    train = train[rng.choice(len(train), size=min(max_train, len(train)), replace=False)]
    pca = PCA(n_components=min(n_components, train.shape[1]), random_state=seed).fit(train)
    km = KMeans(k, n_init=4, random_state=seed).fit(pca.transform(train))
    test = ds.split("test")
    z = pca.transform(feats(test)).astype(np.float32)
    emb = {"zc": z, "zs": z, "content": np.asarray(test.content).reshape(-1),
           "style": np.asarray(test.style_per_fragment).reshape(-1), "recon_mse": float("nan")}
    metrics, _, _ = core_metrics(emb, km.predict(z), k, len(ds.content_names), n_eval=1000, seed=seed)
    return {key: metrics[key] for key in ("codebook_purity", "one_to_one_accuracy", "prauc_zc_content",
                                          "prauc_zs_style")}


def cmd_floor(a) -> None:
    rows = {}
    for name in _names(a.domains):
        d = DOMAINS[name]
        rows[name] = floor(ROOT / d.data_path(name), d.k)
        print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items()}), flush=True)
    today = datetime.date.today().isoformat()
    out = ROOT / "benchmarks/results" / f"{today}-generalisation-floor.md"
    lines = [f"# Generalisation suite: the k-means floor ({today})", "",
             "`python benchmarks/generalisation/suite.py floor`: k-means with K = number of content classes on "
             "the 32 leading principal components of per-fragment-normalised inputs (fit on train, scored on "
             "test by the evaluator's core metrics, seed 0). The PR-AUC columns score the PCA features themselves.",
             "", "| domain | K | purity | one-to-one | PR-AUC(PCA, content) | PR-AUC(PCA, style) |", "|---|---|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {DOMAINS[name].k} | {m['codebook_purity']:.3f} | {m['one_to_one_accuracy']:.3f} | "
                     f"{m['prauc_zc_content']:.3f} | {m['prauc_zs_style']:.3f} |")
    out.write_text("\n".join(lines) + "\n")
    (out.with_suffix(".json")).write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {out}")


def method_sets(method: str, name: str, d: Domain, steps: int) -> list[str]:
    """What a peer needs per domain beyond path, K, steps and batch: TS-DSAE's second stage starts a third
    of the way in (as in its InsNotes config), the supervised ceiling needs the class counts."""
    if method == "tsdsae":
        return [f"model.switch_step={steps // 3}"]
    if method != "supervised":
        return []
    from varinv.data.store import open_dataset

    ds = open_dataset(ROOT / d.data_path(name))
    return [f"model.n_content_classes={len(ds.content_names)}", f"model.n_style_classes={len(ds.style_names)}"]


def cmd_grid(a) -> None:
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    seeds = [int(s) for s in a.seeds.split(",")]
    variants = [("", [])]
    if a.variant:  # "name:key=value,key=value"; cells of one domain run side by side
        variants = [(v.split(":", 1)[0], [x for x in v.split(":", 1)[1].split(",") if x]) for v in a.variant]
    cells = []
    for name in _names(a.domains):
        d = DOMAINS[name]
        steps = int(d.steps * a.steps_scale)
        for method in methods:
            for variant, extra in variants:
                sets = [f"data.path={d.data_path(name)}", f"train.steps={steps}", f"train.batch_size={d.batch}",
                        *method_sets(method, name, d, steps), *(a.set or []), *extra]
                cells.append({"config": f"configs/{method}.yaml", "k": [d.k], "set": sets,
                              "name": f"{name}-{method}" + (f"-{variant}" if variant else "")})
    grid = {"name": f"suite-{a.tag}", "out": f"runs/suite-{a.tag}", "parallel": a.parallel, "seeds": seeds,
            **({"split": a.split} if a.split else {}), **({"also_split": a.also_split} if a.also_split else {}),
            "cells": cells}
    path = ROOT / "runs" / f"suite-{a.tag}" / "grid.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    print(f"wrote {path} ({len(cells) * len(seeds)} runs)", flush=True)
    if not a.dry_run:
        subprocess.run([sys.executable, "-m", "varinv", "benchmark", str(path)], check=True, cwd=ROOT)


def floor_prauc() -> dict[str, float]:
    """{domain: the k-means floor's PR-AUC(z_c·content)} from the results files (the newest file wins)."""
    out = {}
    for path in sorted((ROOT / "benchmarks/results").glob("*-generalisation-floor.json")):
        out.update({d: m["prauc_zc_content"] for d, m in json.loads(path.read_text()).items()})
    return out


def cmd_table(a) -> None:
    """Per-run rows of the recorded cells of grids ``--tags`` beside the floor, as Markdown on stdout."""
    results = ROOT / "benchmarks/results"
    floor = floor_prauc()
    cols = ("codebook_purity", "prauc_zc_content", "prauc_zs_style", "prauc_zs_content", "prauc_zc_style")
    print("| run | seed | purity | PR-AUC z_c·content | z_s·style | z_s·content | z_c·style | floor z_c | health | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tag in a.tags.split(","):
        for rec in sorted((results / "cells" / f"suite-{tag}").glob("*.json")):
            m = json.loads(rec.read_text())
            name = rec.stem.rsplit("-K", 1)[0]
            floor_zc = floor.get(name.split("-")[0], float("nan"))
            health = "ok" if m.get("health", {}).get("ok") else "flag"
            print(f"| {tag}/{name} | {m['seed']} | " + " | ".join(f"{m[c]:.3f}" for c in cols)
                  + f" | {floor_zc:.3f} | {health} | {m['train_seconds']:.0f} |")


# Issue 15's acceptance per domain: medians over seeds of these, each against its bound.
BARS = {"codebook_purity": (">=", 0.90), "prauc_zc_content": (">=", 0.85), "prauc_zs_style": (">=", 0.80),
        "prauc_zs_content": ("<=", 0.30), "prauc_zc_style": ("<=", 0.30)}


def passes(m: dict) -> bool:
    from varinv.bench import meets

    return all(meets(m[k], target) for k, target in BARS.items())


def tag_medians(tag: str, method: str = "v3") -> dict[str, dict]:
    """{domain: medians of the BARS metrics over the recorded seeds of grid ``tag``, plus "seeds"} (``method``'s
    cells; ``v3-NAME`` for one variant's). ``tag`` may join grids with "+" (one candidate's seeds run in two rounds)."""
    by_domain: dict[str, list[dict]] = {}
    for one in tag.split("+"):
        for rec in sorted((ROOT / "benchmarks/results/cells" / f"suite-{one}").glob(f"*-{method}-*.json")):
            by_domain.setdefault(rec.stem.split("-")[0], []).append(json.loads(rec.read_text()))
    return {d: {**{k: float(np.median([m[k] for m in ms])) for k in BARS}, "seeds": len(ms)}
            for d, ms in by_domain.items()}


def cmd_matrix(a) -> None:
    """Domains × grid tags (e.g. an ablation, one tag per component off; ``TAG/METHOD`` for a peer's cells, V3's
    otherwise): purity / PR-AUC(z_c) / PR-AUC(z_s) medians, bold where every bar of BARS holds, per tag how many
    suite domains and benchmarks pass, and the k-means floor's PR-AUC(z_c)."""
    tags = [t.strip() for t in a.tags.split(",") if t.strip()]
    cols = {t: tag_medians(*t.split("/", 1)) for t in tags}
    names = [n for n in DOMAINS if any(n in c for c in cols.values())]
    floor = floor_prauc()
    print("| domain | " + " | ".join(tags) + " | floor PR-AUC(z_c) |")
    print("|---|" + "---|" * (len(tags) + 1))
    for n in names:
        cells = []
        for t in tags:
            m = cols[t].get(n)
            if m is None:
                cells.append("–")
                continue
            text = " / ".join(f"{m[k]:.3f}" for k in ("codebook_purity", "prauc_zc_content", "prauc_zs_style"))
            seeds = f" ({m['seeds']})" if m["seeds"] > 1 else ""
            cells.append((f"**{text}**" if passes(m) else text) + seeds)
        print(f"| {n} | " + " | ".join(cells) + (f" | {floor[n]:.3f} |" if n in floor else " | – |"))
    counts = []
    for t in tags:
        c = cols[t]
        suite = [n for n in SUITE if n in c]
        bench = [n for n in DOMAINS if n not in SUITE and n in c]
        counts.append(f"{sum(passes(c[n]) for n in suite)}/{len(suite)} suite, "
                      f"{sum(passes(c[n]) for n in bench)}/{len(bench)} benchmarks")
    print("| passing | " + " | ".join(counts) + " | |")


def cmd_diagnose(a) -> None:
    """Where a codebook fails, on the validation split: overall purity against purity within each style.
    High purity within styles with low overall purity means each style permutes the atoms its own way
    (the vocabulary formed but is not shared); low purity within styles means it never formed. Then z_c's
    geometry: its spread (the passing domains' 20-60; a collapsed code's 0.1), the health check's atom margin
    (near 1: z_c sits between atoms that draw alike), and how often a fragment's nearest neighbour in z_c among
    other samples shares its content, and has another style."""
    from scipy.spatial.distance import cdist

    import varinv
    from varinv.api import encode_dataset
    from varinv.data.store import open_dataset
    from varinv.eval.health import atom_margin
    from varinv.eval.metrics import many_to_one_accuracy

    def purity(atom, label):  # fraction of fragments whose atom's majority class is theirs
        return many_to_one_accuracy(atom, label, int(atom.max()) + 1, int(label.max()) + 1)

    for run in a.runs:
        model = varinv.load_model(run)
        ds = open_dataset(model.cfg.data.path)
        arr = encode_dataset(model, ds, ["val"])
        atom, content, style = arr["atom"], arr["content"], arr["style"]
        within = [purity(atom[style == s], content[style == s]) for s in np.unique(style)]
        print(f"{run}: purity {purity(atom, content):.3f}; within styles median {np.median(within):.3f} "
              f"(min {min(within):.3f}, max {max(within):.3f}); atoms per style "
              f"{np.median([len(np.unique(atom[style == s])) for s in np.unique(style)]):.0f}")
        # z_c's geometry on the first 2,000 fragments (their pairwise distances held in memory)
        zc, sample, content, style = (arr[k][:2000] for k in ("zc", "sample", "content", "style"))
        zc = zc.astype(np.float64)
        d = cdist(zc, zc, "sqeuclidean")
        d[sample[:, None] == sample[None]] = np.inf
        nn = d.argmin(1)
        print(f"  z_c spread {np.sqrt(zc.var(0).sum()):.3g}; atom margin "
              f"{atom_margin(zc, model.module.codebook().detach().double().numpy()):.2f}; "
              f"nearest neighbour same content {(content[nn] == content).mean():.3f}, "
              f"other style {(style[nn] != style).mean():.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, fn in (("data", cmd_data), ("floor", cmd_floor), ("grid", cmd_grid), ("table", cmd_table),
                     ("matrix", cmd_matrix), ("diagnose", cmd_diagnose)):
        s = sub.add_parser(name)
        s.set_defaults(fn=fn)
        if name == "diagnose":
            s.add_argument("runs", nargs="+", help="run folders")
            continue
        if name in ("table", "matrix"):
            s.add_argument("--tags", required=True, help="comma-separated grid tags, e.g. x1,x2")
            continue
        s.add_argument("--domains", help=f"comma-separated (default: the suite: {','.join(SUITE)})")
        if name == "grid":
            s.add_argument("--tag", required=True)
            s.add_argument("--methods", default="v3")
            s.add_argument("--seeds", default="0")
            s.add_argument("--parallel", type=int, default=2)
            s.add_argument("--steps-scale", type=float, default=1.0, help="multiply each domain's steps (exploration)")
            s.add_argument("--set", action="append", help="override for every cell, e.g. model.style_pool=true")
            s.add_argument("--variant", action="append",
                           help="NAME:key=value,... a variant trained beside the others (repeatable)")
            s.add_argument("--split", help="score every cell on this split (default test; choose settings on val)")
            s.add_argument("--also-split", help="score every training on this split too (cells/suite-TAG-SPLIT/)")
            s.add_argument("--dry-run", action="store_true", help="write the grid file only")
    a = p.parse_args(argv)
    a.fn(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
