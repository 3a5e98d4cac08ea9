"""The plain VQ autoencoder shared by the MINE and cycle-loss baselines (not a method by itself).

It is V3's autoencoder and content codebook (same Encoder, Decoder and EMAQuantizer) with only the
reconstruction and commitment terms, so that each baseline differs from V3 in exactly one thing:
the term that asks content and style to separate.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from varinv.config import Interval, Options, check_value
from varinv.methods.base import Encoded
from varinv.methods.autoencoder import BackboneConfig, ConvAutoencoder
from varinv.methods.regularisers import matched_atoms
from varinv.nn.backbones import distinct_rows
from varinv.nn.gaussian import reparameterise
from varinv.nn.pose import POSES, warp
from varinv.nn.quantizer import EMAQuantizer


@dataclass
class VQConfig(BackboneConfig):
    n_atoms: int = 10
    w_recon: float = 1.0
    w_commit: float = 0.1
    vq_decay: float = 0.95
    dead_threshold: float = 2.0
    kmeans_iters: int = 10
    # Steps before quantisation starts: until then the decoder reads z_c itself, and at this step
    # the codebook is k-means-initialised from the encoder's z_c. Seeding atoms from a random
    # encoder lets look-alike contents share atoms, and the commitment term then locks that in.
    vq_warmup: int = 0
    # The decoder reads each sample's mean z_s instead of each fragment's own. Style is what a sample's
    # fragments share, so a per-fragment z_s is a side channel through which content detail can reach
    # the decoder without the codebook (look-alike contents sharing an atom while z_s tells them apart).
    style_pool: bool = False
    # A per-fragment continuous "detail" code of d_detail dims (0 = off) beside the atom, for what varies
    # from fragment to fragment but is neither content nor style (position, size, loudness). Without it
    # that variation can only be cut into atoms or leak into z_s. A Gaussian code with at most
    # ``detail_capacity`` nats (KL to N(0, I) above it costs ``w_detail`` per nat), too little to carry
    # the content itself; decoding with the code at 0 renders an atom's prototype.
    d_detail: int = 0
    detail_capacity: float = 1.0
    w_detail: float = 1.0
    # A per-fragment pose read by the encoder and applied to the decoder's output ("none", "time": a shift
    # along the last axis, a spectrogram's time, or "similarity":
    # rotation, scale and shift within bounds, nn/pose.py), so that atoms render their content in one pose
    # and the codebook is not spent on where and how large each fragment draws it. For images: along a
    # spectrogram's frequency axis a shift or scale is a pitch change, i.e. content. "auto": "similarity"
    # for image data, "time" for spectrograms, fixed from the dataset's kind when training starts.
    pose: str = "none"
    # Which atom reconstructs each fragment in training: "encoder" (its z_c's nearest atom, the paper) or
    # "decoder": every atom is rendered in the fragment's style (and, with a pose, in a pose of its own for
    # each atom), each sample's fragments are matched to the atoms that render them best (one-to-one, or
    # with ``match_repeat_cost`` for repeats), and the reconstruction term trains the decoder on those
    # matches only; the encoder learns to predict them (``w_reassign``). With the encoder choosing, a
    # codebook that does not yet separate the contents makes every atom the mean of several, all atoms
    # render one blob, and no atom fits better than another (greek, shapes, handwriting in round 4);
    # when each atom is trained only on what it renders best, small differences between prototypes grow
    # instead, as in k-means, and a per-atom pose aligns each prototype instead of averaging over poses.
    assign: str = "encoder"
    # 0: strictly one-to-one. c > 0: an atom may take more than one fragment of a sample, each extra one at
    # c·n times the batch's mean squared distance to the atoms, so contents that repeat within a sample can
    # keep one atom once they are clearly closer to it than to any other, while fragments that are close
    # to several atoms are still spread over distinct ones. Used by V3's ``w_match`` and by ``assign: decoder``.
    match_repeat_cost: float = 0.0

    RULES = {
        "n_atoms": Interval(int, 1, None, symbol="K"),
        "w_recon": Interval(float, 0, None),
        "w_commit": Interval(float, 0, None),
        "vq_decay": Interval(float, 0, 1, closed="neither"),
        "dead_threshold": Interval(float, 0, None, note="0 = never revive an atom"),
        "kmeans_iters": Interval(int, 0, None),
        "vq_warmup": Interval(int, 0, None),
        "style_pool": bool,
        "d_detail": Interval(int, 0, None),
        "detail_capacity": Interval(float, 0, None, note="nats"),
        "w_detail": Interval(float, 0, None),
        "pose": Options((*POSES, "auto")),
        "assign": Options(("encoder", "decoder")),
        "match_repeat_cost": Interval(float, 0, None),
    }

    def validate(self) -> None:
        super().validate()
        check_value(self.assign == "encoder" or self.d_detail == 0, "model.assign", self.assign,
                    '"encoder" when model.d_detail > 0 (a per-fragment detail code would make every atom '
                    'render once per fragment)')


class VQAutoencoder(ConvAutoencoder):
    """Encoder → (z_c → nearest atom, z_s) → Decoder."""

    def __init__(self, cfg: VQConfig, fragment_shape, seed: int = 0):
        check_value(cfg.pose != "auto", "model.pose", cfg.pose,
                    '"none", "time" or "similarity" ("auto" is fixed from the dataset when training starts)')
        super().__init__(cfg, fragment_shape)
        self.quantizer = EMAQuantizer(
            cfg.d_content,
            cfg.n_atoms,
            decay=cfg.vq_decay,
            dead_threshold=cfg.dead_threshold,
            kmeans_iters=cfg.kmeans_iters,
            seed=seed,
        )

    def extra_dims(self, cfg) -> tuple[int, int]:
        """The style head also gives the detail code's mean and log-variance and the pose; the decoder
        reads the detail code."""
        return 2 * cfg.d_detail + POSES[cfg.pose] * self.n_poses, cfg.d_detail

    @property
    def n_poses(self) -> int:
        """Poses per fragment: one per atom when the decoder assigns atoms, else one."""
        return self.cfg.n_atoms if self.cfg.assign == "decoder" else 1

    def _split_detail(self, zs: torch.Tensor):
        """(style, detail mean, detail log-variance, pose) from the style head's output; absent parts: None."""
        d, n_pose = self.cfg.d_detail, POSES[self.cfg.pose] * self.n_poses
        pose = zs[:, zs.shape[1] - n_pose:] if n_pose else None
        zs = zs[:, :zs.shape[1] - n_pose]
        if not d:
            return zs, None, None, pose
        return zs[:, :-2 * d], zs[:, -2 * d:-d], zs[:, -d:].clamp(-10, 10), pose

    def decoder_input(self, content: torch.Tensor) -> torch.Tensor:
        """The content vector the decoder reads. Under the decoder assignment it is standardised by the
        codebook's mean and spread: the reconstruction no longer reaches z_c, every term left on z_c is
        scale-free, and weight decay shrank z_c until the decoder could not tell the atoms apart (atoms
        0.03 apart, every rendering one blob)."""
        if self.cfg.assign != "decoder":
            return content
        book = self.quantizer.codebook.detach().float()
        mean = book.mean(0)
        spread = (book - mean).pow(2).sum(1).mean().sqrt().clamp_min(1e-6)
        return ((content.float() - mean) / spread).to(content.dtype)

    def decode(self, content, style, coarse: bool = False):
        """Atoms (or z_c) and styles to fragments, the detail code at its prior mean and no pose (the prototype)."""
        content = self.decoder_input(content)
        if self.cfg.d_detail:
            content = torch.cat([content, content.new_zeros(*content.shape[:-1], self.cfg.d_detail)], -1)
        return super().decode(content, style, coarse)

    def codebook(self):
        return self.quantizer.codebook

    def freeze_codebook(self) -> bool:
        self.quantizer.frozen = True  # no k-means init, no EMA updates; the atoms stay as trained
        return True

    def encode(self, x):
        zc, zs, b, length = self._encode_flat(x)
        zs = self._split_detail(zs)[0]
        zq, index, _ = self.quantizer(zc)
        return Encoded(
            content=zc.view(b, length, -1),
            style=self.decoder_style(zs.view(b, length, -1)),  # pooled per sample, as DSAE's static f is
            style_fragments=zs.view(b, length, -1),
            content_q=zq.view(b, length, -1),
            content_index=index.view(b, length),
        )

    def decoder_style(self, zs: torch.Tensor) -> torch.Tensor:
        """The style (B, L, d_s) the decoder reads for samples whose fragments have styles zs (B, L, d_s)."""
        return zs.mean(1, keepdim=True).expand_as(zs) if self.cfg.style_pool else zs

    def quantizing(self, step: int | None) -> bool:
        """False during training steps before ``vq_warmup``."""
        return not (self.training and step is not None and step < self.cfg.vq_warmup)

    def autoencode(self, x: torch.Tensor, step: int | None = None) -> dict[str, torch.Tensor]:
        """One pass over (B, L, C, H, W): flat (B·L, d) latents, the reconstruction and its two terms."""
        zc, zs, b, length = self._encode_flat(x)
        if self.quantizing(step):
            zq, index, commit = self.quantizer(zc)
        else:
            zq, index, commit = zc, torch.zeros(zc.shape[0], dtype=torch.long, device=zc.device), zc.new_zeros(())
        zs, mu, logvar, pose = self._split_detail(zs)
        zs_dec = self.decoder_style(zs.view(b, length, -1)).flatten(0, 1)
        out = {}
        if self.cfg.assign == "decoder" and self.training and self.quantizing(step):
            err = self.render_errors(x.reshape(b * length, *x.shape[2:]), zs_dec, pose)  # (N, K)
            target = matched_atoms(err.detach().view(b, length, -1), self.cfg.match_repeat_cost).flatten()
            target = torch.where(target < 0, err.detach().argmin(1), target)
            recon, out["decoder_target"] = err.gather(1, target[:, None]).mean(), target
        else:
            dec_in = self.decoder_input(zq)
            if mu is not None:
                detail = reparameterise(mu, logvar) if self.training else mu
                kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum(-1).mean()
                out["detail_kl"] = kl
                dec_in = torch.cat([zq, detail], -1)
            if pose is not None and self.n_poses > 1:  # the pose for the atom the encoder chose
                pose = pose.view(pose.shape[0], self.n_poses, -1)[torch.arange(pose.shape[0]), index]
            if pose is not None:
                out["pose"] = pose
            x_hat, coarse = self._render(dec_in, zs_dec, length if self.cfg.style_pool else 0, pose)
            if coarse is not None:
                out["recon_coarse"] = F.mse_loss(coarse.float(), x.flatten(0, 1).float())
            out["x_hat"] = x_hat.view_as(x)
            recon = F.mse_loss(out["x_hat"].float(), x.float())
        return {
            "zc": zc, "zq": zq, "zs": zs, "zs_dec": zs_dec, "index": index, "b": b, "length": length,
            "recon": recon, "commit": commit, **out,
        }

    def _render(self, content, style, run: int, pose):
        """The reconstruction, warped by ``pose`` if any, and the additive part's rendering when it is trained
        (``coarse_rendering``; else None)."""
        def warped(t, p):
            return t if p is None else warp(t, p)

        if not self.coarse_rendering:
            return warped(self.decoder(content, style, run), pose), None
        if self.coarse_detach:  # the additive part learns; the encoder is not asked to fit it
            coarse = self.decoder(content.detach(), style.detach(), run, coarse=True)[1]
            return (warped(self.decoder(content, style, run), pose),
                    warped(coarse, None if pose is None else pose.detach()))
        # both renderings from one decoder pass, warped together as extra channels
        return warped(torch.cat(self.decoder(content, style, run, coarse=True), 1), pose).chunk(2, 1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """As the base, plus each fragment's pose: decoding an atom alone renders its canonical pose."""
        return self.autoencode(x)["x_hat"]

    # Hooks for V3's ``w_coarse`` options: whether autoencode also trains the separable decoder's additive part
    # A0(c) + B0(s) as a rendering of its own (``recon_coarse``), whether that rendering sends no gradient to the
    # encoder, and whether the atoms are judged (``render_errors``) by it instead of the full rendering.
    coarse_rendering = False
    coarse_detach = False
    coarse_judge = False

    def render_errors(self, x: torch.Tensor, zs: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        """(N, K) mean squared error of every atom's rendering against each fragment x (N, C, H, W) in its
        style zs (N, d_s) and, with a pose (N, P·n) of P = 1 or K poses, warped by the fragment's pose (for
        that atom). Each distinct style is decoded once per atom: pooled or sample-mean styles are shared by
        a sample's fragments, and the decoding is most of the cost. Differentiable in zs and the pose. The
        renderings are the additive part's under ``coarse_judge``."""
        n, k = x.shape[0], self.cfg.n_atoms
        first, which = distinct_rows(zs)
        styles = zs[first]
        u = styles.shape[0]
        x_hat = self.decode(self.quantizer.codebook.to(zs.dtype).repeat(u, 1), styles.repeat_interleave(k, 0),
                            self.coarse_judge)
        x_hat = x_hat.view(u, k, *x_hat.shape[1:])[which]  # (N, K, C, H, W)
        if pose is not None:
            pose = pose.reshape(n, -1, POSES[self.cfg.pose]).expand(n, k, -1)
            x_hat = warp(x_hat.flatten(0, 1), pose.reshape(n * k, -1)).view_as(x_hat)
        return (x_hat.float() - x.float()[:, None]).pow(2).flatten(2).mean(2)

    @contextmanager
    def _judging(self):
        """No gradient and the decoder in eval mode, so that judging atoms leaves batch-norm statistics alone."""
        was_training = self.decoder.training
        self.decoder.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.decoder.train(was_training)

    def atom_errors(self, x: torch.Tensor, zs: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        """``render_errors`` under ``_judging``."""
        with self._judging():
            return self.render_errors(x, zs, pose)

    def atom_error(self, x: torch.Tensor, zs: torch.Tensor, pose: torch.Tensor | None, atoms: torch.Tensor) -> torch.Tensor:
        """(N,) mean squared error of atom ``atoms[i]`` rendered in style ``zs[i]`` (and ``pose[i]``, one pose per
        fragment) against x[i] (N, C, H, W), under ``_judging``."""
        with self._judging():
            x_hat = self.decode(self.quantizer.codebook[atoms].to(zs.dtype), zs, self.coarse_judge)
            if pose is not None:
                x_hat = warp(x_hat, pose)
            return (x_hat.float() - x.float()).pow(2).flatten(1).mean(1)

    def best_atoms(self, x: torch.Tensor, zs: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) index of the atom whose decoding with style ``zs`` (and each fragment's ``pose``, if any)
        reconstructs each fragment best; x (N, C, H, W), zs (N, d_s)."""
        return self.atom_errors(x, zs, pose).argmin(1)

    def rendering_agreement(self, x: torch.Tensor) -> torch.Tensor:
        """(B·L,) bool for samples x (B, L, C, H, W): is each fragment's atom (its z_c's nearest) also the
        atom whose rendering in its style and pose reconstructs it best? Label-free: a codebook whose atoms
        all render one blob, or that cuts a nuisance instead of the contents, disagrees with its decoder."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                zc, zs, b, length = self._encode_flat(x)
                _, index, _ = self.quantizer(zc)
                zs, _, _, pose = self._split_detail(zs)
                zs_dec = self.decoder_style(zs.view(b, length, -1)).flatten(0, 1)
                return self.best_atoms(x.reshape(b * length, *x.shape[2:]), zs_dec, pose) == index
        finally:
            self.train(was_training)

    def base_total(self, ae: dict) -> torch.Tensor:
        total = self.cfg.w_recon * ae["recon"] + self.cfg.w_commit * ae["commit"]
        if "detail_kl" in ae:
            total = total + self.cfg.w_detail * F.relu(ae["detail_kl"] - self.cfg.detail_capacity)
        return total
