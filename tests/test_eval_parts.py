"""The registry of evaluation parts (varinv.eval.parts): its shape, the consumers that read it, and a
toy part registered in a test reaching metrics.json and the CLI summary with no other file touched."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from conftest import TOY_CFG, run_varinv, train_toy_run
from varinv.eval import parts as P
from varinv.eval.parts import Headline

# The lists each consumer held before the registry: their outputs (CLI summary, bench CSV columns,
# report table, demo line, `varinv pretrained`) must not change.
CLI_KEYS = ["codebook_purity", "one_to_one_accuracy", "prauc_zc_content", "prauc_zs_style", "prauc_zs_content",
            "prauc_zc_style", "atoms_used", "recon_mse"]
REPORT_COLUMNS = [
    ("prauc_zc_content", "PR-AUC z<sub>c</sub> · content", "up"),
    ("prauc_zs_style", "PR-AUC z<sub>s</sub> · style", "up"),
    ("prauc_zc_style", "PR-AUC z<sub>c</sub> · style", "down"),
    ("prauc_zs_content", "PR-AUC z<sub>s</sub> · content", "down"),
    ("codebook_purity", "codebook purity", "up"),
    ("one_to_one_accuracy", "one-to-one accuracy", "up"),
    ("atoms_used", "atoms used", ""),
    ("recon_mse", "recon. MSE", "down"),
]


def test_registry_shape():
    assert P.names() == ("core", "ood", "probes", "mi", "swap", "judged", "eer")
    for part in P.REGISTRY:
        assert isinstance(part.NAME, str) and callable(part.run)
        for row in part.HEADLINE:
            assert isinstance(row, Headline) and row.direction in ("up", "down", "")
    keys = [r.key for r in P.headline_rows()]
    assert len(keys) == len(set(keys))
    assert P.top_level(P.get("core")) and not P.top_level(P.get("eer"))
    assert [P.no_grad(P.get(n)) for n in P.names()] == [True, False, True, True, False, False, True]
    with pytest.raises(KeyError, match="eer"):
        P.get("nonsense")


def test_consumers_read_the_registry_with_their_old_output():
    from varinv import bench, demo
    from varinv.report import collect

    assert [r.key for r in P.headline_rows()] == CLI_KEYS
    assert [r.key for r in P.headline_rows(["eer"])] == []
    assert collect.METRIC_COLUMNS == REPORT_COLUMNS
    assert bench.METRICS == CLI_KEYS + ["train_seconds", "n_parameters"]
    assert demo._HEADLINE == (("codebook_purity", "purity"), ("one_to_one_accuracy", "one-to-one"),
                              ("prauc_zc_content", "PR-AUC z_c/content"), ("prauc_zs_style", "PR-AUC z_s/style"))
    assert {r.key for r in P.headline_rows() if r.score} == {
        "codebook_purity", "one_to_one_accuracy", "prauc_zc_content", "prauc_zs_style", "prauc_zc_style",
        "prauc_zs_content"}  # what `varinv pretrained` describes


def test_metric_value_reads_dotted_keys():
    m = {"a": 1, "b": {"c": {"d": 2}}, "x.y": 3, "n": None}
    assert P.metric_value(m, "a") == 1 and P.metric_value(m, "b.c.d") == 2 and P.metric_value(m, "x.y") == 3
    assert P.metric_value(m, "b.z") is None and P.metric_value(m, "a.b", "gone") == "gone"
    assert P.metric_value(m, "n", "gone") is None  # a null metric is present


def test_one_atom_order_and_one_metric_error():
    from varinv.eval import factors, metrics as M, probes

    assert factors.MetricInputError is M.MetricInputError
    with pytest.raises(M.MetricInputError):
        probes.probe_table({"z_c": np.zeros((4, 2))}, {"z_s": np.zeros((4, 2))}, {"c": np.zeros(4, int)},
                           {"c": np.zeros(4, int)})
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(0, 4, (9, 5)) * (rng.random((9, 1)) > 0.3)
        # the order recombination grids used before they called metrics.atom_order
        purity = counts.max(1) / np.maximum(counts.sum(1), 1)
        legacy = np.lexsort((-purity, counts.argmax(1), counts.sum(1) == 0))
        assert M.atom_order(counts).tolist() == legacy.tolist()
        assert M.ordered_confusion(counts)[1].tolist() == legacy.tolist()


# ----------------------------------------------------------------------------------------- a toy part
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_toy_run(tmp_path_factory.mktemp("parts"), steps=2, ckpt_every=1)[0]


def _toy_part(fail: bool = False) -> types.ModuleType:
    toy = types.ModuleType("toy_part")
    toy.NAME = "toy"
    toy.HEADLINE = (Headline("toy.score", "toy score", "up"),)

    def run(ctx):
        if fail:
            raise RuntimeError("toy broke")
        return {"score": 0.25, "n_atoms": ctx.k}

    toy.run = run
    return toy


def test_a_registered_part_reaches_metrics_and_the_cli_summary(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr(P, "REGISTRY", [*P.REGISTRY, _toy_part()])
    code, out, err = run_varinv(monkeypatch, capsys, "evaluate", tiny_run, "--what", "core,toy", "--no-tsne")
    assert code == 0, err
    summary = json.loads(out[:out.rindex("}") + 1])
    assert list(summary)[:len(CLI_KEYS) + 1] == CLI_KEYS + ["toy.score"]
    assert summary["toy.score"] == 0.25 and "toy" in summary["eval_seconds_by_part"]
    m = json.loads((tiny_run / "metrics.json").read_text())
    assert m["toy"] == {"score": 0.25, "n_atoms": TOY_CFG["model"]["n_atoms"]} and "codebook_purity" in m

    # --what picks it alone (no core keys in the summary); --all includes it
    code, out, err = run_varinv(monkeypatch, capsys, "evaluate", tiny_run, "--what", "toy")
    summary = json.loads(out[:out.rindex("}") + 1])
    assert code == 0 and "toy.score" in summary and "codebook_purity" not in summary
    from varinv.eval.evaluate import parse_parts

    assert parse_parts(None, all_=True)[-1] == "toy"


def test_a_failing_part_is_reported_and_the_others_still_run(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr(P, "REGISTRY", [*P.REGISTRY, _toy_part(fail=True)])
    code, out, err = run_varinv(monkeypatch, capsys, "evaluate", tiny_run, "--what", "toy,eer")
    assert code == 1 and "toy: RuntimeError: toy broke" in err
    m = json.loads((tiny_run / "metrics.json").read_text())
    assert "eer" in m and m["errors"] == {"toy": "RuntimeError: toy broke"}


def test_no_plots_skips_the_plot_files(tiny_run):
    from varinv.eval.evaluate import evaluate

    plots = tiny_run / "plots"
    for f in plots.glob("*"):
        f.unlink()
    m = evaluate(tiny_run, what=["core", "mi"], plots=False, write=False)
    assert "codebook_purity" in m and "plot" not in m["mi"] and not list(plots.glob("*"))
