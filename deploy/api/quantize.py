"""``deploy.quantize``: the precision search (a thin wrapper over :func:`quant.search.search`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deploy.core import progress as bars
from deploy.core.errors import DataError, DeployError

SCHEME_CHOICES = {"ptq": ("ptq",), "qat": ("qat",), "both": ("ptq", "qat")}
#: rounding modes of :mod:`quant.quantizers` (named here so the CLI's help does not import torch)
ROUNDING = ("truncation", "nearest", "stochastic")


def parse_bits(text: str, option: str) -> list[int]:
    """``"2..16"``, ``"2,4,8"`` or ``"4"`` (mixable: ``"2..4,8"``) as a list of bit widths."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        m = re.fullmatch(r"(-?\d+)\s*\.\.\s*(-?\d+)", part)
        if m:
            out.extend(range(int(m.group(1)), int(m.group(2)) + 1))
        elif re.fullmatch(r"-?\d+", part):
            out.append(int(part))
        else:
            raise DeployError(f"{option}: cannot read {part!r} (use e.g. 2..16 or 2,4,8)")
    if not out:
        raise DeployError(f"empty search space: {option} {text!r} holds no bit widths")
    return out


def parse_rounding(text: str) -> list[str]:
    """``"all"`` or a comma list of rounding modes."""
    if text.strip() == "all":
        return list(ROUNDING)
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes:
        raise DeployError("empty search space: --rounding names no rounding mode")
    for m in modes:
        if m not in ROUNDING:
            raise DeployError(f"--rounding: unknown mode {m!r} (choose from all, {', '.join(ROUNDING)})")
    return modes


def load_split(name: str, graph, seed: int, fixed_encoding: bool = False, samples: int | None = None):
    """The dataset a search evaluates on (a name or a data file), shaped to the model; event frames
    on a direct model that did not fix its encoding switch ``graph.encoding`` to events. Synthetic
    events hold ``samples`` test samples (64 by default), the ones ``deploy compile`` draws."""
    from deploy import userdata

    if name == "none":
        raise DataError(f"model '{graph.name}': no data to evaluate the quantized model on "
                        "(use --data digits|mnist|events)")
    return userdata.split_for(graph, name, seed, n_test=samples or 64, fixed_encoding=fixed_encoding)


def quantize(model: Any, out: str | Path | None = None, *, data: str = "digits", max_acc_drop: float = 1.0,
             max_memory: float | None = None, max_cores: int | None = None, max_latency: float | None = None,
             max_energy: float | None = None, weight_bits: str = "2..16", neuron_bits: str = "4..24",
             rounding: str = "all", scheme: str = "both", per_layer: bool = False, granularity: str = "channel",
             target: str | None = None, objective: str | None = None, samples: int | None = None,
             qat_epochs: int = 3, onnx: bool = False, seed: int = 0, split_seed: int = 0,
             trust_pickle: bool = False, weights: str | None = None, dt: float | None = None,
             encoding: str | None = None, timesteps: int | None = None, progress: bool | None = None):
    """Search weight/neuron precision, rounding and scheme of ``model`` and return the
    :class:`quant.search.SearchResult`; with ``out``, also write search.json, model.pt and
    pareto.png there (``onnx``: the chosen synapses as QCDQ ONNX too).

    Units: ``max_acc_drop`` in accuracy points, ``max_memory`` in KB (1024 B), ``max_latency``
    in seconds and ``max_energy`` in joules per inference on ``target``; bit widths as ``2..16``
    or ``2,4,8``."""
    from deploy.cli_options import check, load
    from hwmodels import get_target
    from quant.search import search

    check(dt, encoding, timesteps)
    if scheme not in SCHEME_CHOICES:
        raise DeployError(f"--scheme must be ptq, qat or both, got {scheme!r}")
    if granularity not in ("channel", "tensor"):
        raise DeployError(f"--granularity must be channel or tensor, got {granularity!r}")
    ws, ns = parse_bits(weight_bits, "--weight-bits"), parse_bits(neuron_bits, "--neuron-bits")
    modes = parse_rounding(rounding)
    graph = load(model, trust_pickle, weights, dt=dt, encoding=encoding, timesteps=timesteps)
    split = load_split(data, graph, split_seed, fixed_encoding=encoding is not None, samples=samples)
    tgt = get_target(target) if target else None
    result = search(graph, split, max_acc_drop=max_acc_drop,
                    max_memory=None if max_memory is None else max_memory * 1024, weight_bits=ws,
                    neuron_bits=ns, rounding=modes, schemes=SCHEME_CHOICES[scheme], per_layer=per_layer,
                    per_channel=granularity == "channel", target=tgt, objective=objective, samples=samples,
                    qat_epochs=qat_epochs, seed=seed, progress=bars.enabled() if progress is None else progress,
                    max_cores=max_cores, max_latency=max_latency, max_energy=max_energy)
    result.split_seed = split_seed
    if out is not None:
        result.save(out, onnx=onnx, seed=seed)
    return result
