"""EMA vector quantiser with k-means initialisation and dead-code replacement.

Written here rather than taken from vector-quantize-pytorch so that every setting is explicit and
stable across versions, and so that the EMA statistics can be all-reduced under DDP (the codebook
then follows the global batch, whatever the number of processes).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if _dist():
        dist.all_reduce(t)
    return t


def _all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate a (N, d) tensor over ranks (no gradient: used for codebook statistics only)."""
    if not _dist():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding then Lloyd iterations; returns (k, d) centres."""
    n = x.shape[0]
    idx = torch.randint(n, (1,), generator=generator)
    centres = [x[idx]]
    d2 = torch.cdist(x, centres[0]).squeeze(1) ** 2
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        idx = torch.multinomial(p, 1, generator=generator)
        centres.append(x[idx])
        d2 = torch.minimum(d2, torch.cdist(x, x[idx]).squeeze(1) ** 2)
    return lloyd(x, torch.cat(centres), iters)[0]


def lloyd(x: torch.Tensor, c: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``iters`` Lloyd iterations of the (k, d) centres c over x (n, d); returns the centres and each
    centre's count at its last assignment (a centre without points stays where it was)."""
    counts = torch.zeros(c.shape[0], dtype=x.dtype, device=x.device)
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        counts = torch.bincount(assign, minlength=c.shape[0]).to(x.dtype)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        c = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], c)
    return c, counts


class EMAQuantizer(nn.Module):
    """Nearest-atom quantisation of (N, d) vectors with a straight-through gradient.

    decay: EMA decay of the atom statistics. dead_threshold: an atom whose EMA count (fragments per
    batch) falls below it is re-seeded from a random vector of the current batch.
    """

    def __init__(
        self,
        dim: int,
        n_atoms: int,
        decay: float = 0.95,
        dead_threshold: float = 2.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        eps: float = 1e-5,
        seed: int = 0,
    ):
        super().__init__()
        self.dim, self.n_atoms, self.decay, self.eps = dim, n_atoms, decay, eps
        self.dead_threshold, self.kmeans_init, self.kmeans_iters = dead_threshold, kmeans_init, kmeans_iters
        self.register_buffer("codebook", torch.randn(n_atoms, dim) * 0.1)
        self.register_buffer("cluster_size", torch.zeros(n_atoms))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self.register_buffer("rng_state", torch.Generator().manual_seed(seed).get_state())
        self.frozen = False
        self.renew_share = 0.0  # > 0: ``enable_renewal`` was called
        self.renew_pending = False

    def enable_renewal(self, share: float) -> None:
        """Keep each atom's utility and distortion (``track``) and, at a step the owner marks with
        ``renew_pending``, move the least useful atom into the most distorted one (``_renew``) if its
        utility is below ``share`` of the mean. The statistics are buffers, so a resumed run continues them."""
        self.renew_share = share
        self.register_buffer("utility", torch.zeros(self.n_atoms))
        self.register_buffer("distortion", torch.zeros(self.n_atoms))
        self.register_buffer("renewals", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def track(self, index: torch.Tensor, errors: torch.Tensor) -> None:
        """EMA of each atom's utility, by how much its fragments' error would grow without it (the next best
        atom's error minus its own), and distortion, its fragments' error; ``errors`` (N, K) are the errors of
        every atom's rendering of fragments whose atoms are ``index`` (N,), the same rows on every process.
        A duplicated atom has almost no utility: its twin renders its fragments as well (the ELBG criterion
        of Patané and Russo, 2001)."""
        own = errors.gather(1, index[:, None])[:, 0]
        other = errors.scatter(1, index[:, None], float("inf")).min(1).values
        util = errors.new_zeros(self.n_atoms).index_add_(0, index, other - own)
        dist = errors.new_zeros(self.n_atoms).index_add_(0, index, own)
        self.utility.mul_(self.decay).add_(util.to(self.utility), alpha=1 - self.decay)
        self.distortion.mul_(self.decay).add_(dist.to(self.distortion), alpha=1 - self.decay)

    @torch.no_grad()
    def _renew(self, x: torch.Tensor, index: torch.Tensor) -> None:
        """Split the most distorted atom d in two by 2-means over its fragments of the (global) batch,
        one half taken by the least useful atom u, when u's utility is below ``renew_share`` of the mean."""
        u = int(self.utility.argmin())
        if not self.utility[u] < self.renew_share * self.utility.mean():
            return
        d = int(self.distortion.masked_fill(torch.arange(self.n_atoms, device=x.device) == u, -float("inf")).argmax())
        pool, owner = _all_gather_rows(x), _all_gather_rows(index[:, None])[:, 0]
        members = pool[owner == d]
        if members.shape[0] < 2:
            return
        far = members[(members - self.codebook[d]).pow(2).sum(1).argmax()]
        c, counts = lloyd(members, torch.stack([self.codebook[d], far]), max(1, self.kmeans_iters))
        size = self.cluster_size[d] * counts.clamp(min=1) / counts.clamp(min=1).sum()
        for atom, centre, n in ((d, c[0], size[0]), (u, c[1], size[1])):
            self.codebook[atom] = centre
            self.cluster_size[atom] = n
            self.embed_sum[atom] = centre * n
        # both start again from the mean utility and half the distortion, so neither is picked at once again
        self.utility[[u, d]] = self.utility.mean()
        self.distortion[[u, d]] = self.distortion[d] / 2
        self.renewals += 1

    def _generator(self) -> torch.Generator:
        g = torch.Generator()  # a CPU generator, also for a model on a GPU: the same draws on every device
        g.set_state(self.rng_state.cpu())
        return g

    @torch.no_grad()
    def _init(self, x: torch.Tensor) -> None:
        g = self._generator()
        x = _all_gather_rows(x)
        c = kmeans(x.cpu(), self.n_atoms, self.kmeans_iters, g)
        self.codebook.copy_(c)
        self.embed_sum.copy_(c)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)
        self.rng_state.copy_(g.get_state())

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distances (N, K)."""
        return (x.pow(2).sum(1, keepdim=True) - 2 * x @ self.codebook.t() + self.codebook.pow(2).sum(1)[None]).clamp(
            min=0
        )

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, index: torch.Tensor) -> None:
        onehot = F.one_hot(index, self.n_atoms).to(x.dtype)
        counts = _all_reduce(onehot.sum(0))
        sums = _all_reduce(onehot.t() @ x)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.n_atoms * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self._replace_dead(x)

    @torch.no_grad()
    def _replace_dead(self, x: torch.Tensor) -> None:
        dead = self.cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        g = self._generator()
        pool = _all_gather_rows(x)
        pick = torch.randint(pool.shape[0], (n_dead,), generator=g).to(pool.device)
        self.codebook[dead] = pool[pick]
        self.embed_sum[dead] = pool[pick] * self.dead_threshold
        self.cluster_size[dead] = self.dead_threshold
        self.rng_state.copy_(g.get_state())

    def forward(self, x: torch.Tensor):
        """x (N, d) → (quantised with straight-through gradient (N, d), index (N,), commitment loss)."""
        x32 = x.float()
        if self.training and not bool(self.initted) and not self.frozen:
            self._init(x32.detach())
        index = self.distances(x32.detach()).argmin(1)
        q = self.codebook[index]
        if self.training and not self.frozen:
            self._ema_update(x32.detach(), index)
            if self.renew_pending:
                self._renew(x32.detach(), index)
        self.renew_pending = False
        commit = F.mse_loss(x32, q.detach())
        return x + (q - x).detach(), index, commit
