"""`varinv report`: a self-contained static demo site from run or benchmark folders.

The site is one ``index.html`` (our own CSS and JavaScript inlined, no library, no network) plus
assets beside it, all linked relatively so the folder opens from disk::

    site/index.html
    site/<dataset>/examples/example_<i>.{png,jpg}[, .wav]
    site/<dataset>/<method>_K<k>/confusion.svg, latents.js, recombine.{png,jpg}, audio/*.wav
    site/<dataset>/<method>_K<k>/swaps/swap_<a>_<b>.png[, .wav]   content of test sample a, style of b
    site/<dataset>/swaps/sample_<i>.png[, .wav]                   the samples those swaps are made from
    site/results/*.csv                       results tables found in benchmark folders

Per dataset the page shows example data, a codebook-size (K) selector, per method the confusion
matrix and interactive 3-D t-SNE views of z_c (with the atoms) and z_s, the two recombination
traversals driven by selectors, swaps of real test samples (the content of A in the style of B, made
with ``varinv.api``'s ``transfer``), and the metrics table (mean ± std over seeds, n seeds). The header
links the V3 paper and the footer holds the project's citation (CITATION.cff). A piece that does not
exist (a method not run for some K, a run not evaluated) is shown as such, never as a broken image.

Longer than our ~450-line guide on purpose: each function writes one part of the one page, its HTML and
the assets that HTML links, through the shared ``_Site``; split by part, markup and asset paths that
must agree would sit in different modules.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

from varinv.report import assets as A
from varinv.report import cite as C
from varinv.report import swaps as SW
from varinv.report.confusion import confusion_svg
from varinv.report.collect import (
    METRIC_COLUMNS,
    Group,
    ReportError,
    RunInfo,
    aggregate,
    find_runs,
    group_runs,
    method_title,
    read_run,
    resolve_dataset_path,
)
from varinv.runs import MODEL_FILE

__all__ = ["build_site", "ReportError"]

_STATIC = Path(__file__).parent / "static"
_MARKER = ".varinv-report"
_DATASET_TITLES = {
    "phonenums": ("PhoneNums", "digits and colours"),
    "insnotes": ("InsNotes", "pitches and timbres"),
    "waveforms": ("Waveforms", "frequencies and waveforms"),
}
# generators that say nothing of the data (user folders): the folder name is the title
_GENERIC_GENERATORS = {"", "user", "folder", "images", "audio", "arrays"}
_ATOM_WAV = re.compile(r"atom_?(\d+)")
_STYLE_WAV = re.compile(r"style_?(\d+)")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-") or "x"


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def dataset_title(generator: str, name: str) -> tuple[str, str]:
    """(human title, subtitle) of a dataset: the benchmark's title for a known generator, however it is
    spelled (``phonenums``, ``varinv.data.phonenums``) or for a folder named after one
    (``phonenums_small``); a generator module of another name, title-cased (``my_pkg.bird_songs`` →
    ``Bird Songs``); else the folder name as it is. Plain text: escape it for HTML."""
    gen = str(generator or "").strip()
    key = re.split(r"[.:/]", gen)[-1].lower() if gen else ""
    if key in _DATASET_TITLES:
        return _DATASET_TITLES[key]
    low = name.lower()
    for k, v in _DATASET_TITLES.items():
        if low == k or (low.startswith(k) and not low[len(k)].isalnum()):
            return v
    if key and key not in _GENERIC_GENERATORS and "." in gen:
        words = [w for w in re.split(r"[_\-\s]+", key) if w]
        if words:
            return " ".join(w[:1].upper() + w[1:] for w in words), ""
    return name, ""


_SLOT = re.compile(r"\{\{([A-Z]+)\}\}")


def fill_template(template: str, values: dict[str, str]) -> str:
    """Replace each ``{{NAME}}`` of ``template`` in one pass: inserted text is never scanned again, so a
    name such as ``{{NAV}}`` inside the data stays as it is. An unknown slot is left unchanged."""
    return _SLOT.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def script_json(obj) -> str:
    """JSON that is safe inside a <script> element: <, > and & as \\u escapes (no </script>, no <!--)."""
    text = json.dumps(obj, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise ReportError(f"{out} exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not (out / _MARKER).exists():
            raise ReportError(
                f"{out} exists and holds files that are not a varinv report; choose another --out "
                "or empty it first (a previous report folder is replaced)"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / _MARKER).write_text("made by `varinv report`; the whole folder is replaced on the next build\n")


class _Site:
    def __init__(self, out: Path, audio_budget_mb: float):
        self.out = out
        self.budget = A.AudioBudget(int(audio_budget_mb * 1024 * 1024))
        self.warnings: list[str] = []

    def rel(self, p: Path) -> str:
        return p.relative_to(self.out).as_posix()


def _open_dataset(run: RunInfo):
    from varinv.data.store import open_dataset
    from varinv.errors import VarinvError

    path = resolve_dataset_path(run)
    if path is None:
        return None
    try:
        return open_dataset(path)
    except VarinvError:
        return None


def _model_meta(run: RunInfo) -> dict | None:
    """The run's model.json (kind, fragment shape, names of its training data), or None."""
    try:
        meta = json.loads((run.path / MODEL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _atom_rows(group_run: RunInfo, tiles: dict, content_names: list[str]) -> list[tuple[int, str]]:
    """Atoms in the confusion-matrix row order (argmax class, then purity), each with a label such as
    ``'3' 95%`` (its majority class and the share of its fragments in that class)."""
    from varinv.eval.metrics import ordered_confusion

    counts = (group_run.metrics or {}).get("confusion_counts")
    ids = sorted(tiles)
    labels = {a: "" for a in ids}
    if counts:
        m = np.asarray(counts, dtype=np.float64)
        if m.ndim == 2 and m.shape[0] > max(ids):
            _, order = ordered_confusion(m)
            rank = {int(a): i for i, a in enumerate(order)}
            ids.sort(key=lambda a: rank.get(a, len(rank) + a))
            for a in ids:
                row = m[a]
                if row.sum() > 0:
                    c = int(row.argmax())
                    name = content_names[c] if c < len(content_names) else str(c)
                    labels[a] = f"{name} {100 * row[c] / row.sum():.0f}%"
                else:
                    labels[a] = "unused"
    return [(a, labels[a]) for a in ids]


def _recombination(site: _Site, g: Group, run: RunInfo, ds, gdir: Path, content_names: list[str],
                   jobs: list[dict]) -> dict | None:
    shape_hw = None
    spec = False
    style_names: list[str] = []
    if ds is not None:
        fs = ds.fragment_shape  # (C, H, W)
        shape_hw = (int(fs[-2]), int(fs[-1]))
        spec = ds.manifest.get("kind") == "spectrogram"
        split = (run.config.get("data") or {}).get("eval_split", "test")
        try:
            style_names = ds.split(split).style_names if split in ds.splits else ds.style_names
        except Exception:  # noqa: BLE001 - the file names still carry the style names
            style_names = ds.style_names
    elif (meta := _model_meta(run)) is not None and len(meta.get("fragment_shape") or []) == 3:
        shape_hw = (int(meta["fragment_shape"][-2]), int(meta["fragment_shape"][-1]))
        spec = meta.get("kind") == "spectrogram"
        style_names = list(meta.get("style_names") or [])
    got = A.read_strips(run.recombine, shape_hw)
    if got is None:
        if run.has_recombine:
            site.warnings.append(f"{run.path}: recombination strips have an unexpected layout; left out")
        return None
    tiles, styles = got
    styles = [(i, style_names[i] if 0 <= i < len(style_names) else n) for i, n in styles]
    rows = _atom_rows(run, tiles, content_names)
    grey = all(np.array_equal(t[..., 0], t[..., 1]) and np.array_equal(t[..., 1], t[..., 2])
               for row in tiles.values() for t in row)
    sprite = A.save_sprite([tiles[a] for a, _ in rows], gdir / "recombine", grey=grey)
    h, w = next(iter(tiles.values()))[0].shape[:2]
    zy = float(np.clip(96.0 / h, 0.25, 3.0))
    zx = zy * (2.0 if spec and w < h else 1.0)
    rec = {
        "sprite": site.rel(sprite), "h": h, "w": w, "dh": round(h * zy), "dw": round(w * zx),
        "atoms": [{"id": a, "label": lab} for a, lab in rows],
        "styles": [{"i": i, "name": n} for i, n in styles],
        "cell_audio": {}, "row_audio": {}, "col_audio": {},
    }
    band = A._band_hz(shape_hw[0]) if (spec and shape_hw) else None
    row_of = {a: r for r, (a, _) in enumerate(rows)}
    col_of = {i: c for c, (i, _) in enumerate(styles)}
    for f in sorted(run.recombine.rglob("*.wav")) if run.recombine.is_dir() else []:
        a, s = _ATOM_WAV.search(f.stem), _STYLE_WAV.search(f.stem)
        r = row_of.get(int(a.group(1))) if a else None
        c = col_of.get(int(s.group(1))) if s else None
        if r is not None and c is not None:
            slot, key, rank = "cell_audio", f"{r},{c}", 1
        elif r is not None:
            slot, key, rank = "row_audio", str(r), 0
        elif c is not None:
            slot, key, rank = "col_audio", str(c), 2
        else:
            continue
        jobs.append({"rank": rank, "src": f, "dst": gdir / "audio" / f"{slot.split('_')[0]}_{key.replace(',', '_')}.wav", "rec": rec, "slot": slot, "key": key,
                     "band": band})
    return rec


def _encode_audio(site: _Site, jobs: list[dict], budget: A.AudioBudget) -> None:
    """Copy the recombination WAVs most worth hearing first (the atom-fixed traversals, small K, V3),
    as 16-bit PCM when all fit the budget, else 8-bit; what does not fit is left out and said so."""
    plans = []
    for j in jobs:
        plan = A.wav_plan(j["src"], band_hz=j["band"])
        if plan is not None:
            plans.append((j, plan))
    bits = 16 if sum(p.size(16) for _, p in plans) <= budget.left else 8
    plans.sort(key=lambda jp: (jp[0]["rank"], jp[0]["order"], jp[0]["src"].name))
    for j, plan in plans:
        rec = j["rec"]
        if budget.take(plan.size(bits)) and A.reencode_wav(j["src"], j["dst"], plan, bits) is not None:
            rec[j["slot"]][j["key"]] = site.rel(j["dst"])
        else:
            rec["audio_left_out"] = rec.get("audio_left_out", 0) + 1


def _kstr(k) -> str:
    return str(k) if k is not None else "?"


def _fmt(v: float, key: str) -> str:
    if key == "atoms_used":
        return f"{v:.1f}" if abs(v - round(v)) > 1e-9 else f"{int(round(v))}"
    if key == "recon_mse":
        return f"{v:.4f}" if v < 1 else f"{v:.3g}"
    return f"{v:.3f}"


def _metrics_table(ds_id: str, groups: list[Group], ks: list, methods: list[str]) -> str:
    agg = {(g.method, g.k): (g, aggregate(g)) for g in groups}
    best: dict[tuple, float] = {}
    for key, _, direction in METRIC_COLUMNS:
        if not direction:
            continue
        for k in ks:
            vals = [a[key]["mean"] for (m, kk), (_, a) in agg.items() if kk == k and key in a]
            if len(vals) > 1 and max(vals) > min(vals):
                best[(key, k)] = max(vals) if direction == "up" else min(vals)
    head = "".join(
        f'<th>{title}{" ↑" if d == "up" else " ↓" if d == "down" else ""}</th>' for _, title, d in METRIC_COLUMNS
    )
    rows = []
    for k in ks:
        for m in methods:
            cls = f'class="k-row" data-k="{_esc(_kstr(k))}"'
            name = f'<td class="mname">{_esc(method_title(m))}</td><td>{_esc(_kstr(k))}</td>'
            if (m, k) not in agg:
                rows.append(f'<tr {cls}>{name}<td>—</td><td class="missing-cell" colspan="{len(METRIC_COLUMNS)}">'
                            f"not run for K={_esc(_kstr(k))}</td></tr>")
                continue
            g, a = agg[(m, k)]
            seeds = (f'<td class="seeds" title="{_esc("seeds " + ", ".join(str(s) for s in g.seeds))}">'
                     f"{len(g.seeds)}</td>")
            if not a:
                rows.append(f'<tr {cls}>{name}{seeds}<td class="missing-cell" '
                            f'colspan="{len(METRIC_COLUMNS)}">not evaluated (run <code>varinv evaluate</code>)</td></tr>')
                continue
            cells = []
            for key, _, _ in METRIC_COLUMNS:
                if key not in a:
                    cells.append('<td class="na">—</td>')
                    continue
                v = a[key]
                txt = _fmt(v["mean"], key) + (f' <span class="sd">± {_fmt(v["std"], key)}</span>' if v["n"] > 1 else "")
                b = best.get((key, k))
                strong = b is not None and abs(v["mean"] - b) < 1e-12
                cells.append(f'<td class="{"best" if strong else ""}">{txt}</td>')
            rows.append(f'<tr {cls}>{name}{seeds}{"".join(cells)}</tr>')
    return (f'<div class="table-scroll"><table class="metrics" id="{ds_id}-metrics"><thead><tr><th>Method</th>'
            f'<th>K</th><th title="number of seeds (hover a number for the list)">seeds (n)</th>{head}'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _figure(item: dict | None, caption: str = "") -> str:
    if not item:
        return ""
    audio = (f'<audio controls preload="none" src="{_esc(item["audio"])}"></audio>' if item.get("audio") else "")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (f'<figure class="swap"><img src="{_esc(item["img"])}" alt="{_esc(item.get("alt", "sample"))}" '
            f'loading="lazy">{audio}{cap}</figure>')


def _swaps(site: _Site, ds, groups: list[Group], ks: list, methods: list[str], ddir: Path,
           content_names: list[str], budget: A.AudioBudget) -> str:
    """Markup of the swaps panel: per K a table, rows = (A, B) pairs of test samples, one column per
    method holding the content of A decoded in the style of B (from the group's picture run)."""
    if ds is None:
        return '<p class="missing">Dataset not found on this machine: no swaps of real samples.</p>'
    kind = "spectrogram" if ds.manifest.get("kind") == "spectrogram" else "image"
    got = SW.eval_split(ds, groups[0].picture_run.config)
    if got is None:
        return '<p class="missing">The dataset has no samples to swap.</p>'
    _, split = got
    pairs = SW.pick_pairs(split.style, SW.N_PAIRS_AUDIO if kind == "spectrogram" else SW.N_PAIRS_IMAGE)
    if not pairs:
        return '<p class="missing">The dataset has too few samples to swap.</p>'
    results: dict[tuple, tuple] = {}
    for g in groups:
        run = g.picture_run
        gdir = ddir / f"{_slug(g.method)}_K{g.k if g.k is not None else 'x'}"
        data = None if (run.path / MODEL_FILE).is_file() else resolve_dataset_path(run)
        results[(g.method, g.k)] = SW.group_swaps(run.path, data, split, pairs, gdir, site.rel, budget)
    if not any(r[0] for r in results.values()):
        why = next(iter(results.values()))[1]
        return (f'<p class="missing">No swaps: no run of this dataset could be loaded ({_esc(why)}); '
                "the report needs the runs' checkpoints.</p>")
    params = dict(ds.manifest.get("params") or {})
    samples = SW.render_samples(ds, split, pairs, ddir / "swaps", site.rel, budget, params, content_names)
    blocks = []
    for i, k in enumerate(ks):
        head = "".join(f"<th>{_esc(method_title(m))}</th>" for m in methods)
        rows = []
        for n, (a, b) in enumerate(pairs):
            sa, sb = dict(samples[a]), dict(samples[b])
            sa["alt"], sb["alt"] = f"sample A{n + 1}", f"sample B{n + 1}"
            cells = [f"<td>{_figure(x, '<b>' + _esc(x['style']) + '</b> · ' + _esc(x['content']))}</td>"
                     for x in (sa, sb)]
            for m in methods:
                res = results.get((m, k))
                if res is None:
                    cells.append(f'<td class="na">not run for K={_esc(_kstr(k))}</td>')
                elif res[0] is None:
                    cells.append(f'<td class="na" title="{_esc(res[1])}">no model</td>')
                else:
                    item = dict(res[0][n], alt=f"{method_title(m)}: content of A{n + 1} in the style of B{n + 1}")
                    cells.append(f"<td>{_figure(item)}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
        blocks.append(
            f'<div class="swaps table-scroll" data-k="{_esc(_kstr(k))}"{"" if i == 0 else " hidden"}>'
            f'<table class="swaps {_esc(kind)}"><thead><tr><th>A (content from)</th><th>B (style from)</th>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div>')
    return "".join(blocks)


def _dataset_section(site: _Site, name: str, groups: list[Group], budget: A.AudioBudget) -> tuple[str, dict]:
    ds_id = "ds-" + _slug(name)
    ddir = site.out / _slug(name)
    ds = None
    for g in groups:
        for r in g.runs:
            ds = ds or _open_dataset(r)
    meta = None  # without the dataset, what the runs' model.json files recorded of it
    if ds is None:
        meta = next((m for g in groups for r in g.runs if (m := _model_meta(r)) is not None), None)
    generator = (ds.manifest.get("generator") if ds is not None else (meta or {}).get("dataset_generator")) or ""
    plain_title, subtitle = dataset_title(generator, name)
    if plain_title != name:
        title = f"{_esc(plain_title)} <span class=\"dsname\">({_esc(name)})</span>"
    else:
        title = _esc(plain_title)
    kind = (ds.manifest.get("kind") if ds is not None else (meta or {}).get("kind")) or "image"
    content_names = list(ds.content_names if ds is not None else (meta or {}).get("content_names") or [])
    style_names = list(ds.style_names if ds is not None else (meta or {}).get("style_names") or [])
    if not content_names or not style_names:  # dataset not found: take the names the latents carry
        for g in groups:
            p = g.picture_run.plots / "latents.json"
            if p.is_file():
                try:
                    d = json.loads(p.read_text())
                    content_names = content_names or list(d.get("content_names") or [])
                    style_names = style_names or list(d.get("style_names") or [])
                except (OSError, ValueError):
                    pass

    ks = sorted({g.k for g in groups if g.k is not None}) or [None]
    methods = []
    for g in groups:
        if g.method not in methods:
            methods.append(g.method)
    ks_rank = {k: i for i, k in enumerate(ks)}

    examples = []
    if ds is not None:
        try:
            examples = A.example_images(ds, ddir / "examples", site.rel, budget)
        except Exception as e:  # noqa: BLE001 - the rest of the page is still worth having
            site.warnings.append(f"{name}: example data could not be rendered ({e})")

    # per (method, K): the pictures of the chosen seed
    cells: dict[str, dict] = {}
    jobs: list[dict] = []
    for g in groups:
        run = g.picture_run
        gdir = ddir / f"{_slug(g.method)}_K{g.k if g.k is not None else 'x'}"
        gdir.mkdir(parents=True, exist_ok=True)
        cell: dict = {"seed": run.seed, "seeds": g.seeds, "run": run.path.name,
                      "evaluated": run.metrics is not None}
        svg = confusion_svg((run.metrics or {}).get("confusion_counts"), content_names)
        if svg is not None:
            dst = gdir / "confusion.svg"
            dst.write_text(svg)
            cell["confusion"] = site.rel(dst)
        elif run.has_confusion:
            dst = gdir / "confusion.svg"
            shutil.copyfile(run.plots / "confusion.svg", dst)
            cell["confusion"] = site.rel(dst)
        script = A.latents_script(f"{ds_id}|{g.method}|{_kstr(g.k)}", run.plots / "latents.json",
                                  run.plots / "latents_zs.json")
        if script:
            (gdir / "latents.js").write_text(script)
            cell["latents"] = site.rel(gdir / "latents.js")
        n_jobs = len(jobs)
        rec = _recombination(site, g, run, ds, gdir, content_names, jobs)
        for j in jobs[n_jobs:]:
            j["order"] = (ks_rank.get(g.k, 99), methods.index(g.method))
        if rec:
            cell["recomb"] = rec
        cells[f"{g.method}|{_kstr(g.k)}"] = cell
    _encode_audio(site, jobs, budget)
    swaps_html = _swaps(site, ds, groups, ks, methods, ddir, content_names, budget)

    n_runs = sum(len(g.runs) for g in groups)
    meta = {"id": ds_id, "name": name, "title": plain_title, "kind": kind, "ks": [_kstr(k) for k in ks],
            "methods": [{"key": m, "title": method_title(m)} for m in methods],
            "content_names": content_names, "style_names": style_names, "cells": cells}

    # -- markup -----------------------------------------------------------------------------------
    if examples:
        figs = []
        for ex in examples:
            audio = (f'<audio controls preload="metadata" src="{_esc(ex["audio"])}"></audio>'
                     if ex.get("audio") else "")
            figs.append(f'<figure class="example {_esc(kind)}"><img src="{_esc(ex["img"])}" alt="example sample" '
                        f'loading="lazy">{audio}<figcaption><b>{_esc(ex["style"])}</b> · {_esc(ex["content"])}'
                        f"</figcaption></figure>")
        ex_html = f'<div class="examples {_esc(kind)}">{"".join(figs)}</div>'
    else:
        where = groups[0].runs[0].dataset_path or "?"
        ex_html = (f'<p class="missing">Dataset not found on this machine ({_esc(where)}): no example data. '
                   "Build the report where the dataset lives.</p>")
    k_radios = "".join(
        f'<label><input type="radio" name="{ds_id}-k" value="{_esc(_kstr(k))}"{" checked" if i == 0 else ""}> '
        f"K={_esc(_kstr(k))}</label>" for i, k in enumerate(ks)
    )
    view_rows = []
    trav_rows = []
    for m in methods:
        mt = _esc(method_title(m))
        first = cells.get(f"{m}|{_kstr(ks[0])}", {})
        src = first.get("confusion")
        img = (f'<img class="confusion" data-method="{_esc(m)}" alt="codebook confusion matrix of {mt}" '
               f'title="click to enlarge" tabindex="0" role="button" '
               + (f'src="{_esc(src)}"' if src else 'hidden') + ">")
        full = (f'<a class="cf-full" href="{_esc(src or "")}" target="_blank"{"" if src else " hidden"}>'
                "full size ↗</a>")
        view_rows.append(
            f'<tr data-method="{_esc(m)}"><td class="mname">{mt}<div class="seedinfo"></div></td>'
            f'<td class="cf" data-label="Confusion matrix P(class | atom)"><div class="cf-box">{img}</div>{full}'
            f'<div class="missing" hidden></div></td>'
            f'<td class="lat" data-label="Content latent z_c (✕ = atoms)">'
            f'<canvas class="scatter" data-method="{_esc(m)}" data-space="zc"></canvas>'
            f'<div class="missing" hidden></div></td>'
            f'<td class="lat" data-label="Style latent z_s">'
            f'<canvas class="scatter" data-method="{_esc(m)}" data-space="zs"></canvas>'
            f'<div class="missing" hidden></div></td></tr>'
        )
        trav_rows.append(f'<tr data-method="{_esc(m)}"><td class="mname">{mt}</td>'
                         f'<td class="strip" data-method="{_esc(m)}"></td></tr>')
    csum = f"{len(content_names)} content classes" if content_names else "content classes unknown"
    ssum = f"{len(style_names)} styles" if style_names else "styles unknown"
    section = f"""
<section class="dataset" id="{ds_id}" data-ds="{ds_id}">
  <h2>{title}{f' <span class="sub">— learning {_esc(subtitle)}</span>' if subtitle else ''}</h2>
  <p class="lead">{_esc(kind)} data, {csum}, {ssum}; {len(methods)} method(s), K ∈ {{{_esc(', '.join(_kstr(k) for k in ks))}}},
     {n_runs} run(s). Pictures show one seed per method × K (seed 0 where there is one); the table averages all seeds.</p>
  <div class="panel">
    <h3>Example data</h3>
    {ex_html}
  </div>
  <div class="panel">
    <div class="controls"><span class="ctl">Codebook size:</span> <span class="k-select">{k_radios}</span></div>
    <h3>Codebook confusion matrices and latent spaces</h3>
    <div class="controls"><span class="ctl">Colour points by:</span>
      <label><input type="radio" name="{ds_id}-colour" value="content" checked> content</label>
      <label><input type="radio" name="{ds_id}-colour" value="style"> style</label>
      <span class="hint">drag a plot to rotate it, shift + scroll to zoom, double-click to reset; hover a point for its labels</span></div>
    <table class="views">
      <colgroup><col class="c-method"><col class="c-cf"><col class="c-lat"><col class="c-lat"></colgroup>
      <thead><tr><th>Method</th><th>Codebook confusion matrix P(class | atom)</th>
        <th>Content latent z<sub>c</sub> (✕ = codebook atoms)</th><th>Style latent z<sub>s</sub></th></tr></thead>
      <tbody>{"".join(view_rows)}
      <tr class="legend-row"><td>Legend</td><td class="cf-legend"><span class="grad"></span> 0 → 1</td>
        <td colspan="2"><div class="legend"></div></td></tr></tbody>
    </table>
    <h3>Content–style recombination</h3>
    <p class="note">Decoder outputs for (codebook atom, mean style vector of a style class). Content indices
      follow the confusion matrix's row order; each is labelled with its majority class and purity.</p>
    <div class="controls traverse">
      <label>Fix content index, traverse all styles: <select class="fix-content"></select></label>
      <span class="or">or</span>
      <label>Fix style, traverse all content indices: <select class="fix-style"></select></label>
    </div>
    <table class="traversal"><tbody>{"".join(trav_rows)}</tbody></table>
  </div>
  <div class="panel">
    <h3>Swaps of real samples</h3>
    <p class="note">Test samples A and B; each method column decodes the content of A (fragment by fragment:
      its codebook atoms where the method has a codebook) in the style of B (the mean of B's style vectors),
      as <code>varinv transfer</code>
      does. The same pairs for every method; the table follows the codebook size chosen above.</p>
    {swaps_html}
  </div>
  <div class="panel">
    <h3>Metrics (mean ± std over seeds)</h3>
    <p class="note">↑ higher is better, ↓ lower is better; the best mean per K is in bold.
      PR-AUC pairs: z<sub>c</sub> should retrieve content and z<sub>s</sub> style; the cross pairs should stay low.</p>
    {_metrics_table(ds_id, groups, ks, methods)}
  </div>
</section>"""
    return section, meta


def build_site(paths, out: str | Path = "site", audio_budget_mb: float = 20.0, log=print) -> Path:
    """Build the site for run/benchmark folders ``paths`` into ``out``; returns the index.html path."""
    t0 = time.time()
    if not paths:
        raise ReportError("give at least one run or benchmark folder")
    if not audio_budget_mb >= 0:
        raise ReportError(f"--audio-budget-mb = {audio_budget_mb} must be >= 0 (0 leaves all audio out)")
    run_dirs, csvs = find_runs(paths)
    runs = [read_run(p) for p in run_dirs]
    out = Path(out)
    for p in paths:
        pr, orr = Path(p).resolve(), out.resolve()
        if orr == pr or orr in pr.parents:
            raise ReportError(f"--out {out} holds the input folder {p}; choose another output folder")
    _prepare_out(out)
    site = _Site(out, audio_budget_mb)
    by_ds = group_runs(runs)
    sections, metas = [], []
    order = {n: i for i, n in enumerate(_DATASET_TITLES)}
    def rank(name: str) -> int:
        return next((i for n, i in order.items() if name.lower().startswith(n)), len(order))

    items = sorted(by_ds.items(), key=lambda kv: (rank(kv[0]), kv[0]))
    for i, (name, groups) in enumerate(items):
        share = A.AudioBudget(site.budget.left // (len(items) - i))  # leftovers pass to later datasets
        s, m = _dataset_section(site, name, groups, share)
        site.budget.left -= share.spent
        site.budget.skipped += share.skipped
        sections.append(s)
        metas.append(m)
    csv_links = []
    for c in csvs:
        dst = out / "results" / f"{_slug(c.parent.name)}_{c.name}"
        dst.parent.mkdir(exist_ok=True)
        shutil.copyfile(c, dst)
        csv_links.append(f'<a href="{_esc(site.rel(dst))}">{_esc(c.parent.name + "/" + c.name)}</a>')
    nav = " · ".join(f'<a href="#{m["id"]}">{_esc(m["title"])}</a>' for m in metas)
    citation = C.load_citation()
    run_list = "".join(
        f"<li>{_esc(r.dataset_name)} · {_esc(method_title(r.method))} · K={_esc(r.k)} · seed {r.seed}: "
        f"<code>{_esc(r.path.name)}</code>{'' if r.metrics else ' (not evaluated)'}</li>"
        for r in sorted(runs, key=lambda r: (r.dataset_name, r.method, r.k or 0, r.seed))
    )
    page = fill_template((_STATIC / "template.html").read_text(), {
        "CSS": (_STATIC / "report.css").read_text(),
        "JS": (_STATIC / "report.js").read_text(),
        "MANIFEST": script_json({"datasets": metas}),
        "NAV": nav,
        "PAPER": C.paper_html(citation, _esc),
        "CITE": C.cite_html(citation, _esc),
        "CSV": ("Results tables: " + ", ".join(csv_links)) if csv_links else "",
        "RUNS": run_list,
        "NRUNS": str(len(runs)),
        "SECTIONS": "\n".join(sections),
    })
    index = out / "index.html"
    index.write_text(page)
    if site.budget.skipped:
        site.warnings.append(f"{site.budget.skipped} audio clip(s) left out to keep the site under its audio budget "
                             f"({audio_budget_mb:g} MB; raise it with --audio-budget-mb)")
    for w in site.warnings:
        log(f"warning: {w}")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"report: {len(runs)} run(s), {len(metas)} dataset(s), {size / 1e6:.1f} MB in {time.time() - t0:.0f} s")
    return index
