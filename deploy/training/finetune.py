"""Hardware-aware retraining: training through a target's own differentiable forward.

A target that can be retrained for declares it by providing (see :class:`TrainableTarget`)
``trainable(graph, ...)``, a SpikingNet-like module that computes what the hardware
computes with straight-through gradients (the IMC targets: :mod:`hwmodels.imc.trainable`),
``training_stages(epochs, progressive)``, the resolutions to train at, and
``export_trained(net)``, the deployable Graph. This loop owns the schedule: for each stage
it sets the resolution, calibrates the conversion steps on training samples (optionally
rescaling the thresholds so every layer fires at its float rate, :func:`match_rates`),
optionally fits every layer to its float counterpart (:func:`reconstruct`), then trains
with :func:`deploy.training.snn.fit`.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from deploy.core import ir
from deploy.core.data import Split, augment_shifts, fit_to_model
from deploy.core.errors import DeployError
from deploy.core.net import SpikingNet
from deploy.core.progress import bar as progress_bar
from deploy.training.snn import fit


class TrainableNet(Protocol):
    """The differentiable forward a target provides (a :class:`SpikingNet` subclass)."""

    graph: ir.Graph

    def set_resolution(self, bits: int) -> None: ...

    def calibrate(self, x: torch.Tensor) -> Any: ...

    def calibration_samples(self, wanted: int) -> int: ...


@runtime_checkable
class TrainableTarget(Protocol):
    """A target that supports hardware-aware retraining."""

    name: str

    def trainable(self, graph: ir.Graph, *, noise: bool, learn_steps: bool,
                  learn_scales: bool) -> TrainableNet: ...

    def training_stages(self, epochs: int, progressive: bool) -> list[tuple[int, int]]: ...

    def export_trained(self, net: TrainableNet) -> ir.Graph: ...

    def retrained(self, graph: ir.Graph) -> bool: ...


@torch.no_grad()
def _match_rate(lif: torch.nn.Module, current: torch.Tensor, want: float, iters: int = 14) -> float:
    """Scale ``lif``'s threshold (bisection on its log2, within 2**-6..2**6) so that it fires
    at ``want`` on ``current``; returns the factor applied."""
    base = lif.threshold.clone()
    lo, hi = -6.0, 6.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lif.threshold.copy_(base * 2 ** mid)
        if float(lif(current).mean()) > want:
            lo = mid
        else:
            hi = mid
    factor = 2 ** ((lo + hi) / 2)
    lif.threshold.copy_(base * factor)
    return factor


@torch.no_grad()
def match_rates(net: SpikingNet, reference: SpikingNet, x: torch.Tensor, iters: int = 14) -> dict[str, float]:
    """Scale every LIF layer's threshold, in layer order, so that it fires on ``x`` (through
    ``net``, e.g. the crossbar model) at the rate it fires in ``reference`` (the float model).

    With 1-bit sense amplifiers a layer's output is a sum of binary column decisions, whose gain
    differs from the float layer's; the difference compounds over depth until deep layers and
    the output fall silent, where the surrogate gradient is too weak to recover them. Returns
    the factor applied to each layer's threshold.

    One pass through ``net``, node by node: each LIF layer is matched on the current its
    (already matched) layers before produce, then run. A network with recurrent inputs runs
    step by step, so it is rerun whole after each layer instead.
    """
    _, ref = reference.run(x, record=True)
    factors = {}
    walk = not any(node.recurrent for node in net.graph.nodes)
    values = {"input": net.encode(x)} if walk else {}
    for node in net.graph.nodes:
        want = float(ref[node.name].mean()) if node.kind == "lif" else 0.0
        if node.kind == "lif" and want > 0:
            if not walk:
                _, values = net.run(x, record=True)
            factors[node.name] = _match_rate(net.layers[node.name], values[node.inputs[0]], want, iters)
        if walk:
            values[node.name] = net.apply(node, values)
    return factors


#: values (timesteps x outputs) of one layer's output per reconstruction batch; sets its batch size
RECONSTRUCT_BUDGET = 2 ** 20


def _batch(t_steps: int, out: torch.Tensor) -> int:
    """Samples per reconstruction batch of a layer whose output over all samples is ``out`` (T, N, ...)."""
    return max(1, min(out.shape[1], RECONSTRUCT_BUDGET // (t_steps * out[0, 0].numel())))


def _layer_on(layer: torch.nn.Module, inp: torch.Tensor, idx: torch.Tensor | slice) -> torch.Tensor:
    """A per-frame layer on the samples ``idx`` of ``inp`` (T, N, ...): (T, len(idx), ...)."""
    x = inp[:, idx]
    out = layer(x.flatten(0, 1))
    return out.view(x.shape[0], x.shape[1], *out.shape[1:])


@torch.no_grad()
def _chunked(layer: torch.nn.Module, inp: torch.Tensor, batch: int) -> torch.Tensor:
    """:func:`_layer_on` over all samples, ``batch`` at a time (the crossbar's partial sums of
    every sample at once would not fit in memory)."""
    return torch.cat([_layer_on(layer, inp, slice(i, i + batch)) for i in range(0, inp.shape[1], batch)], 1)


def _fit_layer(net: SpikingNet, node: ir.Node, inp: torch.Tensor, target: torch.Tensor,
               labels: torch.Tensor | None, iters: int, lr: float, g: torch.Generator
               ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Train one synaptic layer of ``net`` alone: its output on ``inp`` (T, N, ...) towards
    ``target``, or, with ``labels``, the readout's cross-entropy through the output neurons.
    Returns its output on all of ``inp`` after training and the record."""
    layer, n = net.layers[node.name], inp.shape[1]
    readout = net.layers[net.graph.nodes[-1].name]
    batch = _batch(inp.shape[0], target)
    variance = float(target.var()) or 1.0
    before = float(F.mse_loss(_chunked(layer, inp, batch), target)) / variance
    opt = torch.optim.Adam([p for p in layer.parameters() if p.requires_grad], lr=lr)
    for _ in range(iters):
        idx = torch.randperm(n, generator=g)[:batch]
        out = _layer_on(layer, inp, idx)
        loss = (F.mse_loss(out, target[:, idx]) if labels is None else
                F.cross_entropy(net.logits(readout(out)), labels[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = _chunked(layer, inp, batch)
    after = float(F.mse_loss(out, target)) / variance
    return out, {"layer": node.name, "nmse_before": round(before, 4), "nmse_after": round(after, 4),
                 "batch": batch, "loss": "mse" if labels is None else "cross-entropy"}


def reconstruct(net: SpikingNet, reference: SpikingNet, x: torch.Tensor, y: torch.Tensor, iters: int = 200,
                lr: float = 1e-3, seed: int = 0, progress: bool = False) -> list[dict[str, Any]]:
    """Fit ``net`` (the target's trainable forward) to ``reference`` (the float network) layer by
    layer, in order, on the samples ``x`` with labels ``y``.

    Every synaptic layer is trained alone (``iters`` Adam steps, all of its parameters: weights,
    scales, conversion steps and trims) so that, on the spikes the target's own earlier layers
    now produce, it outputs what the float layer outputs on the float network's spikes (mean
    squared error): the error of the layers before is corrected rather than compounded. The LIF
    layer it feeds is then set to fire at its float rate (:func:`_match_rate`). The layer that
    feeds the output neurons minimizes the readout's cross-entropy instead. A reconstruction
    step costs one layer's forward and backward, not the whole network's through time, and
    no layer can fall silent (the approach of AdaRound and BRECQ for post-training quantization).
    Each batch holds as many samples as keep the layer's output within :data:`RECONSTRUCT_BUDGET`
    values. Both networks run node by node and a value is dropped once its consumers have run,
    so memory holds a few layers' outputs over all samples. Returns one record per synaptic
    layer: normalized MSE before and after, batch size.
    """
    if any(node.recurrent for node in net.graph.nodes):
        raise DeployError("layer-wise reconstruction supports feed-forward networks only")
    net.eval()
    reference.eval()
    encoded = net.encode(x)
    mine, want = {"input": encoded}, {"input": encoded}      # the target's and the float values
    uses = {name: 0 for name in mine}
    for node in net.graph.nodes:
        uses[node.name] = 0
        for src in node.inputs:
            uses[src] += 1
    output = net.graph.nodes[-1]
    g = torch.Generator().manual_seed(seed)
    records = []
    for node in progress_bar(net.graph.nodes, desc="reconstruct layers", disable=not progress):
        with torch.no_grad():
            want[node.name] = reference.apply(node, want)
        if node.kind in ir.SYNAPSE_KINDS:
            readout = output.inputs == [node.name]
            mine[node.name], rec = _fit_layer(net, node, mine[node.inputs[0]], want[node.name],
                                              y if readout else None, iters, lr, g)
            records.append(rec)
        else:
            rate = float(want[node.name].mean())
            if node.kind == "lif" and node is not output and rate > 0:
                _match_rate(net.layers[node.name], mine[node.inputs[0]], rate)
            with torch.no_grad():
                mine[node.name] = net.apply(node, mine)
        for src in node.inputs:
            uses[src] -= 1
            if uses[src] == 0:
                del mine[src], want[src]
    return records


def _tail_nodes(graph: ir.Graph, layers: int) -> tuple[str, list[ir.Node]]:
    """(the block's input, its nodes): from the ``layers``-th last synaptic layer to the output.
    Raises :class:`DeployError` when the block takes another value from before it (a skip)."""
    synapses = [i for i, node in enumerate(graph.nodes) if node.kind in ir.SYNAPSE_KINDS]
    if not 1 <= layers <= len(synapses):
        raise DeployError(f"--tail must be 1..{len(synapses)} (the synaptic layers of '{graph.name}'), got {layers}")
    if any(node.recurrent for node in graph.nodes):
        raise DeployError("--tail supports feed-forward networks only")
    first = graph.nodes[synapses[-layers]]
    block = graph.nodes[synapses[-layers]:]
    inside = {first.inputs[0]} | {node.name for node in block}
    outside = sorted({src for node in block for src in node.inputs} - inside)
    if len(first.inputs) != 1 or outside:
        raise DeployError(f"--tail {layers}: the block from '{first.name}' also reads "
                          f"'{(outside or first.inputs)[0]}' from before it; choose a block with one input")
    return first.inputs[0], block


@torch.no_grad()
def _values_at(net: SpikingNet, x: torch.Tensor, name: str, batch: int) -> torch.Tensor:
    """The value ``name`` (T, N, ...) of ``net`` on inputs ``x``, ``batch`` samples at a time."""
    parts = []
    for i in range(0, len(x), batch):
        values = {"input": net.encode(x[i:i + batch])}
        for node in net.graph.nodes:
            if name in values:
                break
            values[node.name] = net.apply(node, values)
        parts.append(values[name])
    return torch.cat(parts, 1)


def fit_tail(net: SpikingNet, x: torch.Tensor, y: torch.Tensor, layers: int = 3, epochs: int = 15,
             lr: float = 1e-3, batch_size: int = 32, held_out: float = 0.125, seed: int = 0,
             progress: bool = False) -> dict[str, Any]:
    """Train the last ``layers`` synaptic layers of ``net`` (the target's trainable forward)
    jointly, by the readout's cross-entropy, on the spikes the target's own earlier layers
    produce for ``x``; keep the epoch with the best accuracy on held-out samples.

    The block's input is computed once for every sample (the earlier layers are fixed), so an
    epoch costs the block's forward and backward alone and the block can see many more samples
    than a whole-network pass or :func:`reconstruct` could afford. The last ``held_out`` of the
    samples are not trained on: each epoch is scored on them and the best one (the starting
    point counts as epoch 0) is kept. Returns the record: block layers, samples, per-epoch loss
    and accuracies, the chosen epoch.
    """
    start, block = _tail_nodes(net.graph, layers)
    net.eval()
    n_val = max(1, int(round(len(x) * held_out)))
    if len(x) - n_val < 1:
        raise DeployError(f"--tail needs at least 2 training samples, got {len(x)}")
    inp = _values_at(net, x, start, batch_size)
    fit_x, fit_y, val_x, val_y = inp[:, :-n_val], y[:-n_val], inp[:, -n_val:], y[-n_val:]
    modules = torch.nn.ModuleList(net.layers[node.name] for node in block)
    params = [p for p in modules.parameters() if p.requires_grad]

    def forward(v: torch.Tensor) -> torch.Tensor:
        values = {start: v}
        for node in block:
            values[node.name] = net.apply(node, values)
        return net.logits(values[block[-1].name])

    @torch.no_grad()
    def accuracy(v: torch.Tensor, labels: torch.Tensor) -> float:
        hits = sum(int((forward(v[:, i:i + batch_size]).argmax(-1) == labels[i:i + batch_size]).sum())
                   for i in range(0, v.shape[1], batch_size))
        return hits / len(labels)

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    best = (accuracy(val_x, val_y), 0, copy.deepcopy(modules.state_dict()))
    history = [{"epoch": 0, "held_out_acc": best[0]}]
    for epoch in progress_bar(range(1, epochs + 1), desc=f"tail ({layers} layers)", disable=not progress):
        order, total, hits = torch.randperm(len(fit_y), generator=g), 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            logits = forward(fit_x[:, idx])
            loss = F.cross_entropy(logits, fit_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            hits += int((logits.argmax(-1) == fit_y[idx]).sum())
        acc = accuracy(val_x, val_y)
        history.append({"epoch": epoch, "loss": round(total / len(order), 4),
                        "train_acc": round(hits / len(order), 4), "held_out_acc": acc})
        if acc > best[0]:
            best = (acc, epoch, copy.deepcopy(modules.state_dict()))
    modules.load_state_dict(best[2])
    return {"layers": [node.name for node in block if node.kind in ir.SYNAPSE_KINDS], "samples": len(fit_y),
            "held_out": n_val, "best_epoch": best[1], "held_out_acc": best[0], "history": history}


def keeps_learned_steps(target: TrainableTarget, graph: ir.Graph, epochs: int, progressive: bool) -> bool:
    """Whether :func:`finetune` continues from the conversion steps ``graph`` learned for ``target``
    instead of calibrating: it does when they exist and the schedule has one stage (a progressive
    schedule calibrates every resolution afresh)."""
    return len(target.training_stages(epochs, progressive)) == 1 and target.retrained(graph)


def finetune(graph: ir.Graph, target: TrainableTarget, split: Split, epochs: int = 25, lr: float = 2e-3,
             progressive: bool = False, noise: bool = False, seed: int = 0, batch_size: int = 64,
             learn_steps: bool = True, calib_samples: int = 256, augment: int = 0, learn_scales: bool = True,
             progress: bool = False, monitor_samples: int | None = None,
             match_rates_first: bool = False, reconstruct_iters: int = 0,
             reconstruct_samples: int = 64, tail_layers: int = 0,
             tail_epochs: int = 15) -> tuple[ir.Graph, list[dict[str, Any]]]:
    """Retrain ``graph`` through ``target``'s differentiable forward (its conversion in the loop).

    ``augment``: one-pixel shifted copies of every training image added to the
    training set (0-8, :func:`deploy.core.data.augment_shifts`). ``learn_scales``: learn
    the per-output weight scales, ``learn_steps`` the conversion steps (see
    :mod:`hwmodels.imc.trainable`). The steps are calibrated on the first ``calib_samples``
    training samples, fewer for large layers (the net's ``calibration_samples``).
    ``monitor_samples``: the per-epoch test accuracy of the history is measured on the first
    that many test samples (None: all). ``match_rates_first``: after every calibration (each
    stage of a progressive schedule), rescale the LIF thresholds so that every layer fires at
    its float rate on the calibration samples (:func:`match_rates`). ``reconstruct_iters``: at
    the target's resolution, before training, fit every layer to the float one on the first
    ``reconstruct_samples`` training samples (:func:`reconstruct`, that many steps per layer;
    the records are in the returned graph's ``meta["reconstruction"]``); ``epochs`` may then be 0.
    ``tail_layers``: then train the last that many synaptic layers jointly on the whole training
    split for ``tail_epochs`` epochs, early-stopped on held-out training samples (:func:`fit_tail`;
    record in ``meta["tail"]``). A ``graph`` already retrained for ``target`` keeps its learned
    conversion steps (no calibration) unless the schedule is progressive.

    Returns the retrained graph (deployable on ``target``) and one history record
    per epoch (loss, train/test accuracy, conversion bits of the stage).
    """
    if not isinstance(target, TrainableTarget):
        raise DeployError(f"finetune needs a target with a trainable forward (imc, imc-adc), "
                          f"got '{getattr(target, 'name', target)}'")
    if epochs < (0 if reconstruct_iters or tail_layers else 1):
        raise DeployError(f"--epochs must be >= 1 (or 0 with --reconstruct or --tail), got {epochs}")
    if tail_layers and tail_epochs < 1:
        raise DeployError(f"--tail-epochs must be >= 1, got {tail_epochs}")
    train = augment_shifts(split, augment) if augment else split
    if monitor_samples is not None:
        train = Split(train.name, train.x_train, train.y_train, train.x_test[:monitor_samples],
                      train.y_test[:monitor_samples])
    torch.manual_seed(seed)
    net = target.trainable(graph, noise=noise, learn_steps=learn_steps, learn_scales=learn_scales)
    n_calib = net.calibration_samples(calib_samples)
    calib = fit_to_model(split.x_train[:n_calib], net.graph.input_shape, net.graph.encoding)
    history: list[dict[str, Any]] = []
    stages = target.training_stages(epochs, progressive)
    keep_steps = keeps_learned_steps(target, graph, epochs, progressive)
    rebuilt: list[dict[str, Any]] = []
    tail: dict[str, Any] = {}
    for stage, (bits, n_epochs) in enumerate(stages):
        net.set_resolution(bits)
        net.eval()
        with torch.no_grad():
            if not keep_steps:
                net.calibrate(calib)
            if match_rates_first:
                match_rates(net, SpikingNet(graph), calib)
        last = stage == len(stages) - 1
        if reconstruct_iters and last:
            n = min(reconstruct_samples, len(split.x_train))
            rebuilt = reconstruct(net, SpikingNet(graph), fit_to_model(split.x_train[:n], graph.input_shape,
                                                                       graph.encoding),
                                  split.y_train[:n], iters=reconstruct_iters, seed=seed, progress=progress)
        if tail_layers and last:
            tail = fit_tail(net, fit_to_model(split.x_train, graph.input_shape, graph.encoding), split.y_train,
                            layers=tail_layers, epochs=tail_epochs, seed=seed, progress=progress)
        for rec in fit(net, train, epochs=n_epochs, lr=lr, batch_size=batch_size, seed=seed + len(history),
                       progress=progress, eval_batch_size=batch_size):
            history.append({**rec, "epoch": len(history) + 1, "adc_bits": bits})
    tuned = target.export_trained(net)
    if rebuilt:
        tuned.meta["reconstruction"] = rebuilt
    if tail:
        tuned.meta["tail"] = tail
    return tuned, history
