"""Clustering-based hint selection (``--hints auto``).

Each teacher layer is described by metrics of its activations on a batch of training
images: mean, variance, sparsity (fraction of exact zeros) and its linear CKA similarity
(Kornblith et al., ICML 2019) to every teacher layer. The standardised descriptions are
clustered with k-means; the layer nearest each cluster centre is a hint point, and the
points are returned in network order. :func:`auto_hint_pairs` pairs them with the
student's hidden spiking layers in order; :func:`auto_hint_layers` returns the first pair
(the guided layer is an inner one, as in FitNets), since :func:`deploy.training.distill.distill`
trains one hint pair. Layers that only reshape (flatten) repeat their input and are left out.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans

from deploy.core.errors import DeployError
from deploy.core.net import SpikingNet
from deploy.training.distill.teachers import Teacher, default_hint_layer


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between activations x (n, p) and y (n, q) of the same n samples."""
    x = x.flatten(1).double()
    y = y.flatten(1).double()
    x = x - x.mean(0)
    y = y - y.mean(0)
    num = torch.linalg.matrix_norm(y.T @ x) ** 2
    den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(num / den) if den > 0 else 0.0


def layer_metrics(feats: dict[str, torch.Tensor]) -> tuple[list[str], np.ndarray]:
    """(layer names, (L, 3 + L) descriptions: mean, variance, sparsity, CKA to every layer)."""
    names = list(feats)
    flat = [feats[n].flatten(1).float() for n in names]
    stats = [[float(f.mean()), float(f.var()), float((f == 0).float().mean())] for f in flat]
    cka = [[linear_cka(a, b) for b in flat] for a in flat]
    return names, np.hstack([np.asarray(stats), np.asarray(cka)])


def cluster_layers(names: list[str], metrics: np.ndarray, k: int, seed: int = 0) -> list[str]:
    """The layer nearest each of ``k`` k-means centres of the standardised ``metrics``, in
    the order of ``names``."""
    if not 1 <= k <= len(names):
        raise DeployError(f"cannot pick {k} hint layers from {len(names)} teacher layers")
    z = (metrics - metrics.mean(0)) / np.where(metrics.std(0) > 0, metrics.std(0), 1.0)
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z)
    picks = set()
    for c, centre in enumerate(km.cluster_centers_):
        members = np.flatnonzero(km.labels_ == c)
        picks.add(int(members[np.argmin(((z[members] - centre) ** 2).sum(1))]))
    return [names[i] for i in sorted(picks)]


def select_hints(teacher: Teacher, x: torch.Tensor, k: int, seed: int = 0) -> list[str]:
    """``k`` teacher hint layers from activations on images ``x`` (see the module docstring).
    The logits layer is left out (it is the soft target already)."""
    logits, feats = teacher.forward_features(x)
    kept: dict[str, torch.Tensor] = {}
    for n, f in feats.items():
        same = [f.numel() == k.numel() and torch.equal(f.flatten(), k.flatten()) for k in kept.values()]
        if not any(same) and not (f.numel() == logits.numel() and torch.equal(f.flatten(), logits.flatten())):
            kept[n] = f
    feats = kept
    if not feats:
        raise DeployError(f"teacher '{teacher.name}' exposes no intermediate layers to hint from")
    names, metrics = layer_metrics(feats)
    return cluster_layers(names, metrics, min(k, len(names)), seed)


def auto_hint_pairs(teacher: Teacher, student: SpikingNet, x: torch.Tensor, seed: int = 0
                    ) -> list[tuple[str, str]]:
    """(student layer, teacher layer) pairs: one cluster per hidden spiking layer of the
    student, both sides in network order."""
    g = student.graph
    hidden = [n.name for n in g.nodes if n.kind == "lif" and n is not g.output] or [default_hint_layer(g)]
    picks = select_hints(teacher, x, len(hidden), seed)
    return list(zip(hidden[-len(picks):], picks, strict=True))


def auto_hint_layers(teacher: Teacher, student: SpikingNet, x: torch.Tensor, seed: int = 0
                     ) -> tuple[str, str]:
    """The (student layer, teacher layer) hint of ``--hints auto``: the first of :func:`auto_hint_pairs`."""
    return auto_hint_pairs(teacher, student, x, seed)[0]
