"""A per-step re-implementation of the original V3 code's training path, for speed comparison only.

Written from the description in shared/reference/papers.md §1.3-1.4 (no code copied): the CSAE
(two ResNet-like CNN stacks → Linear+GELU → content/style heads; an EMA vector quantiser with
k-means init, dead-code expiry, commitment loss and straight-through gradient; a decoder of
Linear+GELU per branch → concat → Linear to a map → nearest-upsample + ResBlocks → output conv),
the V3 loss with MPD computed by materialising (b, n, n, d) difference tensors, and a plain
fp32/NCHW AdamW step. glibc malloc is left at its defaults, as the original would run.

Where the original and our paper config differ in shape, the reference takes our shape so that
both sides do the same arithmetic and hold the same number of parameters:

* strides: ours stop halving a side at 4, so the 48×32 digit ends at 3×4×256 (the original's
  stride-2 stacks end at 3×2×256);
* heads: ours read the whole 1024-d hidden (Linear 1024→512 each); the original splits it into
  two 512-d halves (Linear 512→512 each), 0.5 M fewer parameters and ~0.1 % of the FLOPs;
* decoder ResBlocks use Conv2d (papers.md calls them "transposed ResBlocks"; a stride-1
  transposed conv has the same shape and arithmetic).

``build_reference(cfg, fragment_shape)`` takes our V3Config; ``ReferenceTrainer.step(x)`` runs
one full training step on a (B, L, C, H, W) batch and returns the loss terms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------ architecture


class RefResBlock(nn.Module):
    def __init__(self, c_in, c_out, k, stride):
        super().__init__()
        p = k // 2
        self.conv1 = nn.Conv2d(c_in, c_out, k, stride, p, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, k, 1, p, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if c_in != c_out or tuple(stride) != (1, 1):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.gelu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        res = x if self.shortcut is None else self.shortcut(x)
        return F.gelu(out + res)


def _layer_plan(shape, n_channels, n_layers):
    """Channels double per layer up to n_channels; a side is halved while it is > 4 (as ours)."""
    _, h, w = shape
    chans = [max(8, n_channels // 2 ** (n_layers - 1 - i)) for i in range(n_layers)]
    strides, sizes = [], [(h, w)]
    for _ in range(n_layers):
        sh, sw = (2 if h > 4 else 1), (2 if w > 4 else 1)
        h, w = math.ceil(h / sh), math.ceil(w / sw)
        strides.append((sh, sw))
        sizes.append((h, w))
    return chans, strides, sizes


def _stack(c_in, chans, strides, k, blocks):
    layers = []
    for c, s in zip(chans, strides):
        layers.append(RefResBlock(c_in, c, k, s))
        layers += [RefResBlock(c, c, k, (1, 1)) for _ in range(blocks - 1)]
        c_in = c
    return nn.Sequential(*layers)


class RefEncoder(nn.Module):
    def __init__(self, shape, n_channels, n_layers, blocks, k, d_hidden, d_c, d_s):
        super().__init__()
        chans, strides, sizes = _layer_plan(shape, n_channels, n_layers)
        half = n_layers // 2
        self.cnn_1 = _stack(shape[0], chans[:half], strides[:half], k, blocks)
        self.cnn_2 = _stack(chans[half - 1] if half else shape[0], chans[half:], strides[half:], k, blocks)
        flat = chans[-1] * sizes[-1][0] * sizes[-1][1]
        self.linear = nn.Linear(flat, d_hidden)
        self.linear_c = nn.Linear(d_hidden, d_c)
        self.linear_s = nn.Linear(d_hidden, d_s)

    def forward(self, x):
        h = self.cnn_2(self.cnn_1(x))
        h = F.gelu(self.linear(torch.flatten(h, 1)))
        return self.linear_c(h), self.linear_s(h)


class RefDecoder(nn.Module):
    def __init__(self, shape, n_channels, n_layers, blocks, k, d_hidden, d_c, d_s):
        super().__init__()
        chans, _, sizes = _layer_plan(shape, n_channels, n_layers)
        self.c0, self.hw0 = chans[-1], sizes[-1]
        half = d_hidden // 2
        self.linear_c = nn.Linear(d_c, half)
        self.linear_s = nn.Linear(d_s, d_hidden - half)
        self.linear = nn.Linear(d_hidden, self.c0 * self.hw0[0] * self.hw0[1])
        stages, c_in = [], chans[-1]
        for c, size in zip(chans[::-1][1:] + [chans[0]], sizes[::-1][1:]):
            blocks_ = [nn.Upsample(size=size, mode="nearest"), RefResBlock(c_in, c, k, (1, 1))]
            blocks_ += [RefResBlock(c, c, k, (1, 1)) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*blocks_))
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.out = nn.Conv2d(chans[0], shape[0], k, 1, k // 2)

    def forward(self, zc, zs):
        h = torch.cat([F.gelu(self.linear_c(zc)), F.gelu(self.linear_s(zs))], dim=-1)
        h = F.gelu(self.linear(h)).view(-1, self.c0, *self.hw0)
        return self.out(self.stages(h))


# ------------------------------------------------------------------ vector quantiser


class RefVQ(nn.Module):
    """EMA VQ in the manner of vector_quantize_pytorch's EuclideanCodebook (heads = 1):
    negative cdist → argmax, one-hot, einsum lookup, EMA of counts and sums with Laplace
    smoothing, dead-code expiry from batch samples, commitment MSE(x, sg[q]), straight-through."""

    def __init__(self, dim, codebook_size, decay, threshold_ema_dead_code, kmeans_iters=10, eps=1e-5):
        super().__init__()
        self.k, self.decay, self.eps, self.threshold = codebook_size, decay, eps, threshold_ema_dead_code
        self.kmeans_iters = kmeans_iters
        self.register_buffer("initted", torch.tensor([False]))
        self.register_buffer("cluster_size", torch.zeros(1, codebook_size))
        self.register_buffer("embed_avg", torch.zeros(1, codebook_size, dim))
        self.register_buffer("embed", torch.zeros(1, codebook_size, dim))

    @torch.no_grad()
    def _kmeans_init(self, flat):  # flat (1, N, d)
        samples = flat[0]
        n = samples.shape[0]
        means = samples[torch.randperm(n)[: self.k]] if n >= self.k else samples[torch.randint(0, n, (self.k,))]
        for _ in range(self.kmeans_iters):
            buckets = (-torch.cdist(samples, means)).argmax(-1)
            bins = torch.bincount(buckets, minlength=self.k)
            new = torch.zeros_like(means).scatter_add_(0, buckets[:, None].expand(-1, samples.shape[1]), samples)
            new = new / bins.clamp(min=1)[:, None]
            means = torch.where((bins == 0)[:, None], means, new)
        self.embed.copy_(means[None])
        self.embed_avg.copy_(means[None])
        self.cluster_size.copy_(bins[None].float())
        self.initted.fill_(True)

    @torch.no_grad()
    def _expire_codes(self, flat):
        expired = self.cluster_size < self.threshold
        if not expired.any():
            return
        samples = flat[0]
        n_exp = int(expired.sum())
        pick = samples[torch.randint(0, samples.shape[0], (n_exp,))]
        self.embed[expired] = pick
        self.cluster_size[expired] = self.threshold
        self.embed_avg[expired] = pick * self.threshold

    def forward(self, x):  # x (B, L, d)
        shape = x.shape
        flat = x.reshape(1, -1, shape[-1])  # (heads, N, d)
        if self.training and not bool(self.initted):
            self._kmeans_init(flat.detach())
        embed = self.embed.detach()
        dist = -torch.cdist(flat, embed, p=2)
        ind = dist.argmax(-1)  # (1, N)
        onehot = F.one_hot(ind, self.k).type(x.dtype)
        quantize = torch.einsum("hnc,hcd->hnd", onehot, embed)
        if self.training:
            with torch.no_grad():
                f = flat.detach()
                self.cluster_size.mul_(self.decay).add_(onehot.sum(1), alpha=1 - self.decay)
                embed_sum = torch.einsum("hnd,hnc->hcd", f, onehot)
                self.embed_avg.mul_(self.decay).add_(embed_sum, alpha=1 - self.decay)
                total = self.cluster_size.sum(-1, keepdim=True)
                smoothed = (self.cluster_size + self.eps) / (total + self.k * self.eps) * total
                self.embed.copy_(self.embed_avg / smoothed[..., None])
                self._expire_codes(f)
        quantize = quantize.reshape(shape)
        commit = F.mse_loss(quantize.detach(), x)
        quantize = x + (quantize - x).detach()
        return quantize, ind.reshape(shape[:-1]), commit


class RefCSAE(nn.Module):
    def __init__(self, cfg, shape):
        super().__init__()
        args = (shape, cfg.n_channels, cfg.n_layers, cfg.blocks_per_layer, cfg.kernel, cfg.d_hidden)
        self.encoder = RefEncoder(*args, cfg.d_content, cfg.d_style)
        self.vq = RefVQ(cfg.d_content, cfg.n_atoms, cfg.vq_decay, cfg.dead_threshold, cfg.kmeans_iters)
        self.decoder = RefDecoder(*args, cfg.d_content, cfg.d_style)

    def forward(self, x):  # (B, L, C, H, W)
        b, n = x.shape[:2]
        zc, zs = self.encoder(x.reshape(b * n, *x.shape[2:]))
        zc, zs = zc.reshape(b, n, -1), zs.reshape(b, n, -1)
        zq, ind, commit = self.vq(zc)
        x_hat = self.decoder(zq.reshape(b * n, -1), zs.reshape(b * n, -1)).reshape(x.shape)
        return x_hat, zc, zq, ind, commit, zs


# ------------------------------------------------------------------ loss


def ref_mpd(x):
    """MPD by expanding to (b, n, n, d) (or (n, n, d)), stacking and taking the norm of the difference."""
    if x.dim() == 2:
        n, d = x.shape
        pair = torch.stack([x.unsqueeze(0).expand(n, n, d), x.unsqueeze(1).expand(n, n, d)], dim=0)
        return torch.norm(pair[0] - pair[1], dim=-1).sum(0).sum(0) / (n * (n - 1))
    b, n, d = x.shape
    pair = torch.stack([x.unsqueeze(1).expand(b, n, n, d), x.unsqueeze(2).expand(b, n, n, d)], dim=1)
    return torch.norm(pair[:, 0] - pair[:, 1], dim=-1).sum(1).sum(1) / (n * (n - 1))


def ref_v3_loss(x_hat, zc, zq, commit, zs, x, cfg, eps=1e-5):
    recon = F.mse_loss(x_hat, x)
    vc_frag = torch.mean(ref_mpd(zc) / 2 + ref_mpd(zq) / 2, dim=0)
    vc_samp = ref_mpd(zc.mean(1)) / 2 + ref_mpd(zq.mean(1)) / 2
    vs_frag = torch.mean(ref_mpd(zs), dim=0)
    vs_samp = ref_mpd(zs.mean(1))
    r = cfg.relativity
    content = F.relu(r - vc_frag / (vc_samp + eps)) / r
    style = F.relu(r - vs_samp / (vs_frag + eps)) / r
    sample = F.relu(r - vs_samp / (vc_samp + eps)) / r
    fragment = F.relu(r - vc_frag / (vs_frag + eps)) / r
    terms = {"recon": recon, "content": content, "style": style, "sample": sample, "fragment": fragment, "commit": commit}
    weights = {
        "recon": cfg.w_recon, "content": cfg.w_content, "style": cfg.w_style,
        "sample": cfg.w_sample, "fragment": cfg.w_fragment, "commit": cfg.w_commit,
    }
    total = 0
    for k, w in weights.items():
        total = total + w * terms[k]
    if torch.isnan(total):
        raise ValueError("Loss is NaN!")
    if torch.isinf(total):
        raise ValueError("Loss is Inf!")
    terms["total"] = total
    return terms


# ------------------------------------------------------------------ training step


def build_reference(cfg, shape) -> RefCSAE:
    return RefCSAE(cfg, shape)


class ReferenceTrainer:
    """model + AdamW (same hyper-parameters as ours), fp32, NCHW, default allocator."""

    def __init__(self, cfg, shape, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.1):
        self.cfg = cfg
        self.model = build_reference(cfg, shape)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay)
        self.model.train()

    def step(self, x: torch.Tensor) -> dict:
        x_hat, zc, zq, _, commit, zs = self.model(x)
        losses = ref_v3_loss(x_hat, zc, zq, commit, zs, x, self.cfg)
        self.opt.zero_grad()
        losses["total"].backward()
        self.opt.step()
        return losses
