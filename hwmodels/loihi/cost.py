"""Energy, latency and memory of a mapped network from its activity.

Energy per inference, per layer, from the counters of
:mod:`hwmodels.loihi.activity` and the per-operation figures of the spec:
synaptic ops, neuron updates (active / inactive), spike messages inside a
tile plus east-west / north-south mesh hops. Without counters (assumed-rate
activity) they are estimated from spikes and input events with the
placement's mean fan-out, messages and hops per spike, and every neuron
update counts as active.

Latency: all cores work in parallel within a step, then synchronize. A
layer's time per step is its operations divided over its cores; a step
lasts as long as the slowest layer, plus the routing of the longest message
path and the barrier (interpolated linearly in the number of tiles between
the spec's 1-tile and 32-tile figures, extrapolated beyond). An inference
takes ``timesteps + depth`` steps (the pipeline fills once).

Memory: the model's own (:func:`deploy.core.metrics.layer_memory`) plus named
overheads: ``requantization`` (each synaptic layer's dense weights at the
connection's weight bits, its scales folded into the threshold),
``synapse_format`` (the synaptic memory of nonzero synapses, convolutions
unrolled, minus those dense weights) and ``state_registers`` (24-bit ``u`` and
``v`` per neuron instead of the model's state).
"""

from __future__ import annotations

import numpy as np

from deploy.core import ir
from deploy.core.metrics import Activity, array_bytes, layer_memory
from hwmodels.base import Cost, LayerCost
from hwmodels.loihi.network import INPUT, LoihiNetwork
from hwmodels.loihi.partition import Placement, conn_key
from hwmodels.spec import Spec

PJ, NS = 1e-12, 1e-9


def _routing(la, pl: Placement, source: str, prefix: str, events: float) -> tuple[float, float, float]:
    keys = [f"{prefix}messages", f"{prefix}hops_ew", f"{prefix}hops_ns"]
    if all(k in la.extra for k in keys):
        return tuple(la.extra[k] for k in keys)  # type: ignore[return-value]
    if source not in pl.messages:
        return 0.0, 0.0, 0.0
    return tuple(events * float(np.mean(v)) for v in (pl.messages[source], pl.hops_ew[source], pl.hops_ns[source]))  # type: ignore[return-value]


def estimate(spec: Spec, graph: ir.Graph, net: LoihiNetwork, pl: Placement, activity: Activity,
             notes: list[str]) -> Cost:
    """Per-layer costs of one inference."""
    s = spec
    t_steps = activity.timesteps
    layers = {n.name: LayerCost(n.name, n.kind) for n in graph.nodes}
    mem = layer_memory(graph)
    for lc in layers.values():
        lc.set_memory(mem[lc.name].total)
    busy: dict[str, float] = {}                     # per population: core time per inference (s)
    n_cores = {p.name: sum(pc["population"] == p.name for pc in pl.per_core) for p in net.populations}
    for pop in net.populations:
        la, lc = activity.layers[pop.name], layers[pop.name]
        active = la.extra.get("neuron_updates_active", pop.size * t_steps)
        inactive = la.extra.get("neuron_updates_inactive", 0.0)
        msgs, ew, ns = _routing(la, pl, pop.name, "spike_", la.spikes)
        lc.energy_j["neuron_updates"] = (active * s["e_neuron_active_pj"] + inactive * s["e_neuron_inactive_pj"]) * PJ
        lc.energy_j["spike_routing"] = (msgs * s["e_spike_tile_pj"] + ew * s["e_hop_ew_pj"] + ns * s["e_hop_ns_pj"]) * PJ
        _add_memory(lc, {"state_registers": pop.size * 2 * s["state_bits"] / 8 - mem[pop.name].state})
        t_neuron = (active * s["t_neuron_active_ns"] + inactive * s["t_neuron_inactive_ns"]
                    + msgs * s["t_spike_tile_ns"]) * NS
        busy[pop.name] = busy.get(pop.name, 0.0) + t_neuron
        lc.latency_s = t_neuron / n_cores[pop.name]
        cores = [pc for pc in pl.per_core if pc["population"] == pop.name]
        lc.resources = {"cores": len(cores), "neurons": pop.size,
                        "max_neurons_per_core": max(pc["neurons"] for pc in cores),
                        "max_input_axons_per_core": max(pc["in_axons"] for pc in cores),
                        "max_output_axons_per_core": max(pc["out_axons"] for pc in cores),
                        "synaptic_memory_bytes": float(sum(pc["syn_bytes"] for pc in cores)),
                        "vth": pop.vth, "du": pop.du, "dv": pop.dv, "bias_exp": pop.bias_exp,
                        "start_step": pop.start, "spike_messages": msgs, "hops_ew": ew, "hops_ns": ns,
                        "quantization_error": dict(pop.error)}
    counted: set[str] = set()                       # synapse nodes whose weights are re-quantized
    for conn in net.connections:
        la, lc = activity.layers[conn.name], layers[conn.name]
        key = conn_key(conn)
        ops = la.extra.get("synaptic_ops")
        if ops is None:
            fan = pl.fanout[key]
            ops = la.input_events * float(fan.mean()) if fan.size else 0.0
        lc.energy_j["synaptic_ops"] = lc.energy_j.get("synaptic_ops", 0.0) + ops * s["e_syn_op_pj"] * PJ
        t_syn = ops * s["t_syn_op_ns"] * NS
        if conn.source == INPUT:
            msgs, _, _ = _routing(la, pl, INPUT, "input_", la.input_events)
            lc.energy_j["input_messages"] = msgs * s["e_spike_tile_pj"] * PJ
            t_syn += msgs * s["t_spike_tile_ns"] * NS
        syn_mem = pl.synapses[key] * conn.num_weight_bits / 8
        syn_over = _synapse_overheads(graph, conn, syn_mem, counted)
        for name in conn.nodes:
            node = graph[name]
            if node.kind in ir.SYNAPSE_KINDS and name not in counted:
                counted.add(name)
                _add_memory(layers[name], {"requantization": node.weight.size * conn.num_weight_bits / 8
                                           - array_bytes(node, "weight") - array_bytes(node, "weight_scale")})
        _add_memory(lc, syn_over)
        busy[conn.target] = busy.get(conn.target, 0.0) + t_syn
        lc.latency_s += t_syn / n_cores[conn.target]
        res = lc.resources.setdefault("connections", [])
        res.append({"from": conn.source, "to": conn.target, "process": _process(conn), "synapses": pl.synapses[key],
                    "synaptic_memory_bytes": syn_mem, "weight_exp": conn.weight_exp,
                    "num_weight_bits": conn.num_weight_bits, "delay": conn.delay, "graded_input": conn.graded,
                    "synaptic_ops": ops, "weight_error": conn.error.get("weight", 0.0)})
    step = {name: b / (t_steps * n_cores[name]) for name, b in busy.items()}
    steps = net.steps
    route = _route_time(spec, pl)
    barrier = _barrier(spec, pl.tiles)
    compute = max(step.values(), default=0.0)
    breakdown = {"compute": steps * compute, "routing": steps * route, "barrier_sync": steps * barrier}
    assumptions = assumptions_for(spec, net, pl) + list(notes)
    total = float(sum(breakdown.values()))
    critical = max(step, key=step.get) if step else None
    note = (f"cores run in parallel and synchronize every step: total = {steps} steps x (slowest layer's "
            f"time per step, {critical}: {_time(compute)} + routing {_time(route)} + barrier "
            f"{_time(barrier)}) = {_time(total)}; a layer's latency is its work per inference "
            "divided over its cores, and the layers overlap in time")
    return Cost(layers=[layers[n.name] for n in graph.nodes], latency_s=total,
                latency_breakdown_s=breakdown, assumptions=assumptions, pipelined=True,
                critical_layer=critical, latency_note=note)


def _time(t: float) -> str:
    return f"{t * 1e9:.4g} ns" if t < 1e-6 else f"{t * 1e6:.4g} us"


def _add_memory(lc: LayerCost, overheads: dict[str, float]) -> None:
    """Add named overheads to a layer's memory (its base stays the model's)."""
    merged = dict(lc.memory_overhead_bytes)
    for key, b in overheads.items():
        merged[key] = merged.get(key, 0.0) + b
    lc.set_memory(lc.memory_base_bytes or 0.0, merged)


def _synapse_overheads(graph: ir.Graph, conn, syn_mem: float, counted: set[str]) -> dict[str, float]:
    """``synapse_format``: the synaptic memory of a connection (nonzero synapses x weight bits, a
    convolution unrolled over its output positions, pooling folded in) minus its layers' dense
    weights at the same bits, which the ``requantization`` column already holds."""
    dense = sum(graph[n].weight.size for n in conn.nodes
                if graph[n].kind in ir.SYNAPSE_KINDS and n not in counted)
    return {"synapse_format": syn_mem - dense * conn.num_weight_bits / 8}


def _process(conn) -> str:
    if conn.kind == "conv":
        return "Conv"
    return "DelayDense" if conn.delay else "Dense"


def _route_time(spec: Spec, pl: Placement) -> float:
    ew = max((float(np.max(v / np.maximum(pl.messages[k], 1))) for k, v in pl.hops_ew.items() if v.size), default=0.0)
    ns = max((float(np.max(v / np.maximum(pl.messages[k], 1))) for k, v in pl.hops_ns.items() if v.size), default=0.0)
    return (ew * spec["t_hop_ew_ns"] + ns * spec["t_hop_ns_ns"]) * NS


def _barrier(spec: Spec, tiles: int) -> float:
    lo, hi, n = spec["t_barrier_min_ns"], spec["t_barrier_max_ns"], spec["barrier_max_tiles"]
    return (lo + (hi - lo) * (max(tiles, 1) - 1) / (n - 1)) * NS


def assumptions_for(spec: Spec, net: LoihiNetwork, pl: Placement) -> list[str]:
    out = [
        f"{spec.name}: per-operation energies and times as in the spec ({spec.constants['e_syn_op_pj'].source})",
        "layer latency: the layer's work per inference divided over its cores; the total is steps x the "
        "slowest core's time per step (synaptic ops + neuron updates + spike sends) + routing + barrier",
        f"{pl.cores} core(s) on {pl.chips} chip(s), {pl.tiles} tile(s); an inference takes {net.timesteps} "
        f"input steps + {net.steps - net.timesteps} pipeline steps (one per synaptic layer)",
        "barrier time interpolated linearly in tiles between the 1-tile and 32-tile figures",
        "a neuron update is 'active' when the compartment received synaptic input or fired that step",
        "synaptic memory: nonzero synapses x weight bits (dense synapse format, convolutions unrolled, "
        "no index or delay fields)",
        "no static or leakage power (not in the per-operation table); no on-chip learning",
    ]
    if net.graded_input:
        out.append(f"direct encoding: analog input quantized to {net.input_scale + 1} levels "
                   f"(x_q = round(x * {net.input_scale})) and sent from the host as graded messages, "
                   "costed as tile-local spikes without mesh hops")
    if pl.chips > 1:
        out.append("chips joined into one mesh east-west; chip-to-chip links costed as ordinary hops")
    if spec.name == "loihi2":
        out.append("Loihi 2 energy and time use Loihi 1 per-operation figures as a proxy (no public "
                   "Loihi 2 per-operation data); core limits are Loihi 2's (8192 neurons, 192 KB)")
    return out

