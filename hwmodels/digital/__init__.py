"""A conventional digital SNN accelerator: the baseline every target is compared against.

Energy per effective synaptic operation = one add (AC, spike input) or one
multiply-add (MAC, analog input) at the weight precision + reading the weight
from SRAM; per neuron and timestep one multiply (leak), two adds (input,
threshold compare) and a state read and write; a per-timestep affine (folded
BatchNorm through time) is one multiply-add per value. Latency: ``pe_count`` operations
per cycle, layers one after another, every timestep.

Simulation is bit-true: a graph that carries fixed-point neuron formats
(``graph.meta["quant"]``, written by :mod:`quant`) runs through
:func:`quant.neurons.quantized_net`, the integer arithmetic the precision
search evaluates; a graph without them runs in float32.
"""

from __future__ import annotations

import numpy as np
import torch

from deploy.core import ir
from deploy.core.metrics import Activity, layer_memory
from hwmodels.base import Cost, LayerCost, Target, simulate_float


def fixed_point(graph: ir.Graph) -> bool:
    """True when ``graph`` records fixed-point neuron formats (a quantized checkpoint)."""
    return bool((graph.meta.get("quant") or {}).get("neurons"))


def simulation_note(graph: ir.Graph) -> str:
    """The report's assumption line on how the digital target simulated ``graph``."""
    if not fixed_point(graph):
        return "arithmetic: float32 (the model records no fixed-point neuron formats)"
    q = graph.meta["quant"]
    cfg = q.get("config") or {}
    bits = sorted({f["bits"] for f in q["neurons"].values()})
    return (f"arithmetic: bit-true fixed point, the integer arithmetic of quant's fixed-point network "
            f"({'/'.join(map(str, bits))}-bit neuron registers, {cfg.get('rounding', 'nearest')} rounding"
            f"{', stochastic draws seeded by the stored formats' if cfg.get('rounding') == 'stochastic' else ''}"
            "), weights at their stored precision")


class DigitalTarget(Target):
    name = "digital"
    spec_name = "digital"
    description = "conventional digital SNN accelerator (SRAM weights, event-driven accumulate units)"
    supported_kinds = Target.supported_kinds | {"timescale"}
    bit_true = True
    runs_on_device = True

    def simulate(self, mapping, x: torch.Tensor, batch_size: int = 128,
                 generator: torch.Generator | None = None, progress: bool = False,
                 device: str | torch.device = "cpu") -> Activity:
        """Bit-true for a quantized graph (:func:`quant.neurons.quantized_net`), float32 otherwise;
        on ``device``."""
        graph = mapping.graph
        if not fixed_point(graph):
            return simulate_float(graph, x, batch_size, generator, progress, device)
        from quant.evaluate import fixed_point_activity

        return fixed_point_activity(graph, x, batch_size, generator, progress, device)

    def simulates_float(self, mapping) -> bool:
        return not fixed_point(mapping.graph)

    def _arith(self, bits: int) -> tuple[float, float]:
        """(add, multiply) energy in pJ at a precision: int8 figures up to 8 bits, fp32 above."""
        s = self.spec
        if bits <= 8:
            return s["e_add_int8_pj"], s["e_mult_int8_pj"]
        if bits <= 16:
            return s["e_add_int32_pj"], s["e_mult_int8_pj"] * 4
        return s["e_add_fp32_pj"], s["e_mult_fp32_pj"]

    def cost(self, mapping, activity: Activity) -> Cost:
        graph: ir.Graph = mapping.graph
        s = self.spec
        shapes, memory = graph.shapes(), layer_memory(graph)   # weights + neuron params + state, no overhead
        sram = s["e_sram_read_pj_per_bit"]
        cycle = 1.0 / s["clock_hz"]
        pes = s["pe_count"]
        layers, latency = [], 0.0
        for node in graph.nodes:
            la = activity.layers[node.name]
            lc = LayerCost(node.name, node.kind)
            lc.set_memory(memory[node.name].total)
            ops = 0.0
            if node.kind in ir.SYNAPSE_KINDS:
                bits = node.precision.get("weight", 32)
                add, mult = self._arith(bits)
                per_op = add if la.binary_input else add + mult
                lc.energy_j["synaptic_ops"] = la.synops_effective * per_op * 1e-12
                lc.energy_j["weight_reads"] = la.synops_effective * bits * sram * 1e-12
                ops = la.synops_effective
                lc.resources = {"weight_bits": bits, "op_type": la.op_type}
            elif node.kind in ir.NEURON_KINDS:
                bits = node.precision.get("membrane", 32)
                add, mult = self._arith(bits)
                updates = int(np.prod(shapes[node.name])) * activity.timesteps
                lc.energy_j["neuron_updates"] = updates * (mult + 2 * add) * 1e-12
                lc.energy_j["state_access"] = updates * 2 * bits * sram * 1e-12
                ops = updates
                lc.resources = {"state_bits": bits}
            elif node.kind == "timescale":  # per-timestep affine (folded BNTT): one multiply-add per value
                add, mult = self._arith(32)
                ops = int(np.prod(shapes[node.name])) * activity.timesteps
                lc.energy_j["scaling"] = ops * (mult + add) * 1e-12
            lc.latency_s = np.ceil(ops / pes) * cycle if ops else 0.0
            latency += lc.latency_s
            layers.append(lc)
        for lc in layers:  # SRAM retention leakage of each layer's memory over the whole inference
            if lc.memory_bytes:
                lc.energy_j["leakage"] = s["leakage_w_per_kb"] * lc.memory_bytes / 1024 * latency
        return Cost(layers=layers, latency_s=latency,
                    latency_breakdown_s={"compute": latency},
                    assumptions=[simulation_note(graph),
                                 f"{pes} accumulate units at {s['clock_hz'] / 1e6:g} MHz, layers in sequence",
                                 "one SRAM weight read per effective synaptic operation",
                                 "int8 arithmetic for precisions up to 8 bits, fp32 above 16 bits"])
