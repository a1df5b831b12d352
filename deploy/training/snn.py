"""A small training loop for spiking networks (BPTT with surrogate gradients)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deploy.core.data import Split, fit_to_model
from deploy.core.progress import bar as progress_bar
from deploy.core.repro import reproducible

#: loss_fn(net, logits, y, out, x) -> scalar; default cross-entropy on the readout logits
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def count_loss(net: nn.Module, logits: torch.Tensor, y: torch.Tensor, out: torch.Tensor,
               x: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the readout (spike counts or mean membrane)."""
    return F.cross_entropy(logits, y)


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``net`` on (x, y); x is reshaped to the model input."""
    net.eval()
    x = fit_to_model(x, net.graph.input_shape, net.graph.encoding)
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((net.logits(net(x[i:i + batch_size])).argmax(-1) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


@reproducible
def fit(net: nn.Module, split: Split, epochs: int = 20, lr: float = 2e-3, batch_size: int = 64,
        loss_fn: LossFn | None = None, seed: int = 0, progress: bool = True,
        weight_decay: float = 0.0, eval_batch_size: int = 256) -> list[dict[str, float]]:
    """Train ``net`` (a SpikingNet or anything with ``.graph``, ``logits`` and ``run``) on ``split``.

    Returns one record per epoch: loss, train and test accuracy (the latter evaluated
    ``eval_batch_size`` samples at a time). Adam with a cosine schedule; the shuffling is seeded.
    """
    loss_fn = loss_fn or count_loss
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = fit_to_model(split.x_train, net.graph.input_shape, net.graph.encoding)
    y = split.y_train
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr,
                           weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    history = []
    bar = progress_bar(range(epochs), desc="train epochs", disable=not progress)
    for epoch in bar:
        net.train()
        perm = torch.randperm(len(x), generator=g)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            out, _ = net.run(xb, generator=g)
            logits = net.logits(out)
            loss = loss_fn(net, logits, yb, out, xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(-1) == yb).sum())
            seen += len(idx)
        sched.step()
        test_acc = evaluate(net, split.x_test, split.y_test, batch_size=eval_batch_size)
        rec = {"epoch": epoch + 1, "loss": total / seen, "train_acc": correct / seen, "test_acc": test_acc}
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", test=f"{test_acc:.3f}")
    return history
