"""Hardware-aware retraining for the IMC targets.

The network is trained through the target's own crossbar forward
(:class:`hwmodels.imc.crossbar.CrossbarSynapse` in training mode): weights
rounded to the target's precision and bit-sliced with straight-through
gradients, every column's partial sum converted by the sense amplifier (or
ADC) with a straight-through gradient, the conversion step of every column
group learned with an LSQ gradient, and every column's reference trimmed by a
learned offset (its SA reference is ``step / 2 - trim``). With ``learn_scales``
(the default) every output's weight scale is learned too (LSQ-style gradient,
straight through the clipping) instead of following ``max|w| / qmax``: with
1-bit sense amplifiers the scale is the output's gain, and the codes no longer
jump when the largest weight moves. Optionally the device
non-idealities are sampled afresh at every step (``noise``), and a
progressive schedule lowers the conversion resolution step by step down to
the target's (e.g. 4 -> 3 -> 2 -> 1 bit for the ADC-less target), recalibrating
the steps at every stage.

The result is a Graph whose weights are exactly the deployed codes
(``weight = code * weight_scale``, ``precision["weight"]``) and whose
``meta["imc"]`` holds the learned steps and trims, which the target uses when mapping.
"""

from __future__ import annotations

from typing import Any

import torch

from deploy import ir
from deploy.data import Split, augment_shifts, fit_to_model
from deploy.errors import DeployError
from deploy.snn.net import SpikingNet
from deploy.snn.train import fit
from hwmodels.imc import ImcTarget
from hwmodels.imc.crossbar import CrossbarNet, CrossbarSynapse
from hwmodels.imc.mapping import ImcMapping

#: at most this many partial-sum values in one calibration pass (about 256 MB in float32)
PSUM_BUDGET = 2 ** 26


def schedule(target_bits: int, epochs: int, progressive: bool, stages: int = 4) -> list[tuple[int, int]]:
    """[(conversion bits, epochs)]: one stage at the target's bits, or ``stages`` stages
    from ``target_bits + stages - 1`` down to ``target_bits`` (later stages get the remainder)."""
    if not progressive or epochs < 2:
        return [(target_bits, epochs)]
    n = min(stages, epochs)
    per, extra = divmod(epochs, n)
    bits = list(range(target_bits + n - 1, target_bits - 1, -1))
    return [(b, per + (1 if i >= n - extra else 0)) for i, b in enumerate(bits)]


@torch.no_grad()
def match_rates(net: SpikingNet, reference: SpikingNet, x: torch.Tensor, iters: int = 14) -> dict[str, float]:
    """Scale every LIF layer's threshold, in layer order, so that it fires on ``x`` (through
    ``net``, e.g. the crossbar model) at the rate it fires in ``reference`` (the float model).

    With 1-bit sense amplifiers a layer's output is a sum of binary column decisions, whose gain
    differs from the float layer's; the difference compounds over depth until deep layers and
    the output fall silent, where the surrogate gradient is too weak to recover them. Returns
    the factor applied to each layer's threshold.
    """
    _, ref = reference.run(x, record=True)
    factors = {}
    for node in net.graph.nodes:
        want = float(ref[node.name].mean()) if node.kind == "lif" else 0.0
        if node.kind != "lif" or want <= 0:
            continue
        _, values = net.run(x, record=True)
        current, lif = values[node.inputs[0]], net.layers[node.name]
        base = lif.threshold.clone()
        lo, hi = -6.0, 6.0                                   # log2 of the factor
        for _ in range(iters):
            mid = (lo + hi) / 2
            lif.threshold.copy_(base * 2 ** mid)
            if float(lif(current).mean()) > want:
                lo = mid
            else:
                hi = mid
        factors[node.name] = 2 ** ((lo + hi) / 2)
        lif.threshold.copy_(base * factors[node.name])
    return factors


def export(net: CrossbarNet, target: ImcTarget) -> ir.Graph:
    """The trained network as a Graph with quantized weights, the learned conversion steps
    and the LIF thresholds (rescaled by :func:`match_rates` when it ran)."""
    graph = net.graph.copy()
    for node in graph.nodes:
        if isinstance(node, ir.LIF):
            t = net.layers[node.name].threshold.detach().numpy().astype("float32")
            node.threshold = float(t) if t.ndim == 0 else t
    steps, trims = {}, {}
    for node in graph.synapses():
        m: CrossbarSynapse = net.layers[node.name]
        with torch.no_grad():
            q, scale = m.quantized_weight()
        shape = (-1,) + (1,) * (q.dim() - 1)
        node.weight = (torch.round(q) * scale.view(shape)).numpy().astype("float32")
        node.weight_scale = scale.numpy().astype("float32")
        node.precision = {**node.precision, "weight": m.sl.bits}
        if m.bias is not None:
            node.bias = m.bias.detach().numpy().astype("float32")
        steps[node.name] = [float(v) for v in m.step.detach().clamp(min=1e-4)]
        trims[node.name] = [float(v) for v in m.trim.detach()]
    cfg = target.config
    graph.meta["imc"] = {"target": target.name, "adc_bits": cfg.adc_bits, "rows": cfg.rows,
                         "bits_per_cell": cfg.bits_per_cell, "signed": cfg.signed, "steps": steps,
                         "trims": trims}
    return graph.validate()


def calibration_samples(mapping: ImcMapping, timesteps: int, wanted: int, budget: int = PSUM_BUDGET) -> int:
    """How many samples calibrate the steps: ``wanted``, fewer when the largest layer's partial
    sums (all columns, positions, timesteps and bit-planes) would exceed ``budget`` values."""
    per_sample = max((lm.planes * timesteps * lm.row_tiles * lm.columns * lm.positions
                      for lm in mapping.layers.values()), default=1)
    return max(1, min(wanted, budget // per_sample))


def finetune(graph: ir.Graph, target: ImcTarget, split: Split, epochs: int = 25, lr: float = 2e-3,
             progressive: bool = False, noise: bool = False, seed: int = 0, batch_size: int = 64,
             learn_steps: bool = True, calib_samples: int = 256, augment: int = 0, learn_scales: bool = True,
             progress: bool = False, monitor_samples: int | None = None,
             match_rates_first: bool = False) -> tuple[ir.Graph, list[dict[str, Any]]]:
    """Retrain ``graph`` with ``target``'s partial-sum quantization in the forward pass.

    ``augment``: one-pixel shifted copies of every training image added to the
    training set (0-8, :func:`deploy.data.augment_shifts`). ``learn_scales``: learn
    the per-output weight scales (see the module docstring). The steps are calibrated
    on the first ``calib_samples`` training samples, fewer for large layers
    (:func:`calibration_samples`). ``monitor_samples``: the per-epoch test accuracy
    of the history is measured on the first that many test samples (None: all).
    ``match_rates_first``: after every calibration (each stage of a progressive schedule),
    rescale the LIF thresholds so that every layer fires at its float rate on the
    calibration samples (:func:`match_rates`).

    Returns the retrained graph (deployable on ``target``) and one history record
    per epoch (loss, train/test accuracy, conversion bits of the stage).
    """
    if not isinstance(target, ImcTarget):
        raise DeployError(f"finetune needs an IMC target (imc or imc-adc), got '{getattr(target, 'name', target)}'")
    if epochs < 1:
        raise DeployError(f"--epochs must be >= 1, got {epochs}")
    train = augment_shifts(split, augment) if augment else split
    if monitor_samples is not None:
        train = Split(train.name, train.x_train, train.y_train, train.x_test[:monitor_samples],
                      train.y_test[:monitor_samples])
    torch.manual_seed(seed)
    mapping = target.map(graph)
    net = CrossbarNet(mapping, target.off_units, mode="train", noise=noise, learn_steps=learn_steps,
                     learn_scales=learn_scales)
    n_calib = calibration_samples(mapping, net.graph.timesteps, calib_samples)
    calib = fit_to_model(split.x_train[:n_calib], net.graph.input_shape, net.graph.encoding)
    history: list[dict[str, Any]] = []
    for bits, n_epochs in schedule(target.config.adc_bits, epochs, progressive):
        net.set_adc_bits(bits)
        net.eval()
        with torch.no_grad():
            net.calibrate(calib)
            if match_rates_first:
                match_rates(net, SpikingNet(graph), calib)
        for rec in fit(net, train, epochs=n_epochs, lr=lr, batch_size=batch_size, seed=seed + len(history),
                       progress=progress, eval_batch_size=batch_size):
            history.append({**rec, "epoch": len(history) + 1, "adc_bits": bits})
    net.set_adc_bits(target.config.adc_bits)
    return export(net, target), history
