"""Judged generation (the DSAE protocol, papers.md §3): a supervised judge scores recombined fragments.

The judge is a content and style classifier of single fragments trained on the training split
(:class:`varinv.eval.classifier.FragmentClassifier`, cached in ``RUN/eval_cache``); it is independent of
the evaluated method. DSAE fixes one latent and *samples* the other from its prior; V3 and most peers
have no prior over their latents, so the other latent is sampled from the **empirical aggregate
posterior**: the latents of another evaluation sample drawn uniformly (a donor j != i, whatever its
classes; :func:`varinv.eval.swap.donors_any`). Swaps are fragment-aligned (fragment t of the result
uses fragment t of each source), the decoder being fed ``model.decoder_content(enc)``.

Fixed content (``fixed_content``): x̃_i = decode(content of i, style of donor j), for every fragment.

* ``disagreement``: fraction of fragments whose judged content differs from the **source** content
  label (i's content at that position). Lower is better; 0 = content fully kept.
* ``kl``: KL(p̂ ‖ p_data) in nats, where p̂ is the distribution of the judge's style predictions
  (hard argmax labels, counted over all generated fragments) and p_data the style-label distribution
  of the evaluated fragments. Near 0 when the swapped-in styles come out with the data's style mix;
  large when generations collapse onto a few styles.
* ``donor_agreement``: fraction of fragments judged to have the donor's style (the swap worked).

Fixed style (``fixed_style``): x̃_i = decode(contents of donor j, style of i).

* ``disagreement``: fraction of fragments whose judged style differs from i's style label.
* ``kl``: KL(judged content distribution ‖ data content distribution).
* ``donor_agreement``: fraction judged to have the donor's content at that position.

``judge`` reports the judge's own accuracy on the real evaluation fragments and on plain
reconstructions (the ceiling for everything above). KL uses ``p log(p / q)`` with 0 log 0 = 0 and
q floored at ``eps`` (1e-12) where it is zero (a judged class absent from the data).
"""

from __future__ import annotations

import numpy as np
import torch

from varinv.eval.metrics import MetricInputError
from varinv.eval.swap import donors_any, sample_labels

__all__ = ["label_distribution", "kl_divergence", "disagreement_rate", "judged_scores", "judged_generation"]


def label_distribution(labels, n_classes: int) -> np.ndarray:
    """Empirical distribution ``(n_classes,)`` of integer labels in [0, n_classes) (negatives ignored)."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    y = y[y >= 0]
    if y.size and y.max() >= n_classes:
        raise MetricInputError(f"labels must lie in [0, {n_classes}), got max {y.max()}")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def kl_divergence(p, q, eps: float = 1e-12) -> float:
    """KL(p ‖ q) = Σ p log(p / q) in nats, 0 log 0 = 0, q floored at ``eps``.

    >>> round(kl_divergence([0.5, 0.5], [0.25, 0.75]), 6)
    0.143841
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise MetricInputError(f"distributions differ in shape: {p.shape} vs {q.shape}")
    pos = p > 0
    return float(np.sum(p[pos] * (np.log(p[pos]) - np.log(np.maximum(q[pos], eps)))))


def disagreement_rate(judged, source) -> float:
    """Fraction of positions where the judged label differs from the source label."""
    judged, source = np.asarray(judged).reshape(-1), np.asarray(source).reshape(-1)
    if judged.shape != source.shape or judged.size == 0:
        raise MetricInputError(f"judged {judged.shape} and source {source.shape} must be equal, non-empty")
    return float(np.mean(judged != source))


def judged_scores(judged_kept, source_kept, judged_other, data_other, n_other: int, donor_other=None) -> dict:
    """Scores of one generation case from arrays of fragment labels.

    ``judged_kept``/``source_kept``: judged and source labels of the **kept** factor;
    ``judged_other``: judged labels of the **swapped** factor; ``data_other``: that factor's labels on
    the data (for p_data); ``donor_other``: the donor's labels of it (optional).
    """
    out = {
        "disagreement": disagreement_rate(judged_kept, source_kept),
        "kl": kl_divergence(label_distribution(judged_other, n_other), label_distribution(data_other, n_other)),
    }
    if donor_other is not None:
        out["donor_agreement"] = float(np.mean(np.asarray(judged_other).reshape(-1)
                                               == np.asarray(donor_other).reshape(-1)))
    return out


@torch.no_grad()
def _judge(judge, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    c, s = judge(x.reshape(-1, *x.shape[-3:]).float())
    lead = x.shape[:-3]
    return c.argmax(-1).reshape(lead).numpy(), s.argmax(-1).reshape(lead).numpy()


def judged_generation(model, judge, lat: dict, x_real: torch.Tensor | None, content, style, n_content: int,
                      n_style: int, seed: int = 0, batch_size: int = 64) -> dict:
    """Both generation cases for samples with latents ``lat`` (:func:`varinv.eval.swap.encode_samples`),
    fragment content labels ``content`` (R, L) and style labels ``style`` (R,) or (R, L)."""
    judge.eval()
    content = np.asarray(content, dtype=np.int64)
    r, length = content.shape
    style_f = np.asarray(style, dtype=np.int64)
    style_f = np.repeat(sample_labels(style_f)[:, None], length, 1) if style_f.ndim == 1 else style_f
    donor = donors_any(r, seed)
    if r < 2:
        raise MetricInputError("judged generation needs at least two samples")
    d = torch.from_numpy(donor)
    dec, zs = lat["dec"], lat["zs"]

    def run(c, s):
        jc, js = np.empty((r, length), np.int64), np.empty((r, length), np.int64)
        for st in range(0, r, batch_size):  # decode a chunk of samples, judge it, keep only the labels
            x = model.decode(c[st:st + batch_size], s[st:st + batch_size])
            jc[st:st + x.shape[0]], js[st:st + x.shape[0]] = _judge(judge, x)
        return jc, js

    model.eval()
    fc_c, fc_s = run(dec, zs[d])  # fixed content, donor style
    fs_c, fs_s = run(dec[d], zs)  # fixed style, donor content
    rec_c, rec_s = run(dec, zs)  # reconstructions
    out = {
        "fixed_content": judged_scores(fc_c, content, fc_s, style_f, n_style, donor_other=style_f[donor]),
        "fixed_style": judged_scores(fs_s, style_f, fs_c, content, n_content, donor_other=content[donor]),
        "judge": {
            "content_accuracy_recon": float(np.mean(rec_c == content)),
            "style_accuracy_recon": float(np.mean(rec_s == style_f)),
        },
        "n_samples": int(r),
    }
    if x_real is not None:
        jc, js = [], []
        for st in range(0, r, batch_size):
            a, b = _judge(judge, x_real[st:st + batch_size])
            jc.append(a)
            js.append(b)
        out["judge"]["content_accuracy_real"] = float(np.mean(np.concatenate(jc) == content))
        out["judge"]["style_accuracy_real"] = float(np.mean(np.concatenate(js) == style_f))
    return out
