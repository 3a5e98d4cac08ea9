"""The page's paper link and "how to cite" block, from the project's CITATION.cff.

The file is read from the source tree (an editable install) when it is there; otherwise the copy of
its essentials below is used, so an installed wheel still credits the V3 paper. Every field reaches
the page through ``esc`` (HTML escaping).
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["load_citation", "paper_html", "cite_html", "V3_ARXIV"]

V3_ARXIV = "https://arxiv.org/abs/2407.03824"

_V3 = {
    "type": "conference-paper",
    "title": "Unsupervised Disentanglement of Content and Style via Variance-Invariance Constraints",
    "authors": [{"family-names": "Wu", "given-names": "Yuxuan"}, {"family-names": "Wang", "given-names": "Ziyu"},
                {"family-names": "Raj", "given-names": "Bhiksha"}, {"family-names": "Xia", "given-names": "Gus"}],
    "year": 2025,
    "conference": {"name": "The Thirteenth International Conference on Learning Representations (ICLR 2025)"},
    "url": V3_ARXIV,
    "repository-code": "https://github.com/Irislucent/variance-versus-invariance",
}
_FALLBACK = {
    "message": "If you use varinv, please cite it as below, and cite the papers of the methods you use "
               "(listed under references: V3 and the peer methods varinv re-implements).",
    "title": "varinv: unsupervised content-style disentanglement of sequential data",
    "authors": [{"name": "The varinv contributors"}],
    "version": "0.1.0",
    "license": "BSD-3-Clause",
    "references": [_V3],
}


def load_citation(path: Path | None = None) -> dict:
    """CITATION.cff as a dict (the source tree's, or ``path``), else the built-in copy."""
    cands = [path] if path is not None else [Path(__file__).resolve().parents[3] / "CITATION.cff"]
    for p in cands:
        try:
            doc = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict) and doc.get("title"):
            return doc
    return _FALLBACK


def _authors(authors, short: bool = False) -> str:
    out = []
    for a in authors or []:
        if not isinstance(a, dict):
            continue
        if a.get("family-names"):
            out.append(a["family-names"] if short else f'{a.get("given-names", "")} {a["family-names"]}'.strip())
        elif a.get("name"):
            out.append(str(a["name"]))
    return ", ".join(out)


def _v3(doc: dict) -> dict:
    for r in doc.get("references") or []:
        if isinstance(r, dict) and "variance-invariance" in str(r.get("title", "")).lower():
            return r
    return _V3


def _link(url, text: str, esc) -> str:
    url = str(url or "")
    if not url.startswith(("https://", "http://")):
        return esc(text)
    return f'<a href="{esc(url)}" rel="noopener">{esc(text)}</a>'


def _venue(ref: dict) -> str:
    conf = ref.get("conference") or {}
    name = str(conf.get("name", "") if isinstance(conf, dict) else conf)
    if "(" in name and name.endswith(")"):  # "The Thirteenth ... (ICLR 2025)" → "ICLR 2025"
        name = name[name.rindex("(") + 1:-1]
    return name


def paper_html(doc: dict, esc) -> str:
    """One line for the page header: the V3 paper, linked, and a link to the citation block."""
    r = _v3(doc)
    return (f'<p class="paper">Method: <b>V3</b> — {esc(_authors(r.get("authors"), short=True))}, '
            f'“{_link(r.get("url") or V3_ARXIV, r.get("title", ""), esc)}”, {esc(_venue(r))} '
            f'(<a href="{esc(V3_ARXIV)}" rel="noopener">arXiv:2407.03824</a>). '
            f'<a href="#cite">How to cite</a></p>')


def _bibtex_paper(r: dict) -> str:
    names = " and ".join(f'{a.get("family-names", "")}, {a.get("given-names", "")}'.strip(", ")
                         for a in r.get("authors") or [] if isinstance(a, dict))
    return ("@inproceedings{wu2025v3,\n"
            f"  title     = {{{r.get('title', '')}}},\n"
            f"  author    = {{{names}}},\n"
            f"  booktitle = {{{(r.get('conference') or {}).get('name', '')}}},\n"
            f"  year      = {{{r.get('year', '')}}},\n"
            f"  eprint    = {{2407.03824}},\n"
            f"  archivePrefix = {{arXiv}}\n}}")


def _bibtex_software(doc: dict) -> str:
    return ("@software{varinv,\n"
            f"  title   = {{{doc.get('title', '')}}},\n"
            f"  author  = {{{_authors(doc.get('authors'))}}},\n"
            f"  version = {{{doc.get('version', '')}}},\n"
            f"  license = {{{doc.get('license', '')}}}\n}}")


def cite_html(doc: dict, esc) -> str:
    """The footer block: CITATION.cff's message, the software entry, the V3 paper, BibTeX and the
    other references."""
    r = _v3(doc)
    soft = (f'{esc(_authors(doc.get("authors")))}. <i>{esc(doc.get("title", ""))}</i>'
            + (f', version {esc(doc["version"])}' if doc.get("version") else "")
            + (f', {esc(doc["license"])}' if doc.get("license") else "") + ".")
    paper = (f'{esc(_authors(r.get("authors")))}. “{_link(r.get("url") or V3_ARXIV, r.get("title", ""), esc)}”. '
             f'{esc((r.get("conference") or {}).get("name", ""))}, {esc(r.get("year", ""))}. '
             f'<a href="{esc(V3_ARXIV)}" rel="noopener">arXiv:2407.03824</a>'
             + (f' · code: {_link(r["repository-code"], r["repository-code"], esc)}' if r.get("repository-code") else "")
             + ".")
    others = []
    for o in doc.get("references") or []:
        if not isinstance(o, dict) or o is r:
            continue
        venue = (o.get("conference") or {}).get("name", "") if isinstance(o.get("conference"), dict) else ""
        others.append(f'<li>{esc(_authors(o.get("authors"), short=True))} ({esc(o.get("year", ""))}). '
                      f'{_link(o.get("url"), o.get("title", ""), esc)}. {esc(venue)}.</li>')
    other_html = (f'<details><summary>Papers of the peer methods varinv re-implements ({len(others)})</summary>'
                  f'<ul>{"".join(others)}</ul></details>') if others else ""
    return f"""<section class="cite" id="cite">
  <h2>How to cite</h2>
  <p>{esc(str(doc.get("message", "")).strip())}</p>
  <ul>
    <li><b>The V3 paper:</b> {paper}</li>
    <li><b>This software:</b> {soft}</li>
  </ul>
  <details><summary>BibTeX</summary><pre>{esc(_bibtex_paper(r))}

{esc(_bibtex_software(doc))}</pre></details>
  {other_html}
</section>"""
