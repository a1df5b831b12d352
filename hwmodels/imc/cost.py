"""Energy, latency, memory and area of a mapped network, driven by simulated activity.

Per synaptic layer and inference the simulation reports (``LayerActivity.extra``)
reads (input vectors applied), array reads, column conversions, row
activations (active input rows x arrays) and the summed conductance of the
active cells. Energy per component:

- ``array``: NeuroSim convention (default): bit-line and word-line wire
  charging ``C V_read^2`` (C = 0.2 fF/um x wire length), the cell current
  being inside the converter's ``0.0972/R`` term. ``physical``: the cell
  current ``V_read^2 * G * t_pulse`` for the 10 ns read pulse instead.
- ``conversion``: ``(8.4147 uW (L-1) + 0.0972 G_col) * t`` per column conversion,
  t = 1 ns (1-bit SA) or 10 ns (flash ADC).
- ``switch_matrix``: per active row and mux phase (an ADC shared by M columns
  reads the array M times); ``encoder``, ``shift_add``, ``input_shift_add`` per
  conversion; ``lif``: dynamic power x 5 ns per neuron update; ``buffer`` and
  ``interconnect`` per bit moved (unrolled input vectors in, spikes out);
  ``digital``: pooling, residual adds, per-timestep affine; ``leakage`` of the
  LIF units over the run.

Latency: consecutive reads of a layer are pipelined (fetch, convert, shift-add,
LIF), so a layer's time per step is reads x the slowest stage plus the fill;
layers are pipelined over timesteps: ``sum_l step_l + (T - 1) * max_l step_l``.

Memory: the deployed graph's own (:func:`deploy.core.metrics.layer_memory`, weights
at the crossbar's precision) plus, per synaptic layer, ``crossbar_cells`` (the
cells used minus the weights and scales they hold) and ``unused_cells`` (the
rest of the layer's arrays).
"""

from __future__ import annotations

import math

import numpy as np

from deploy.core import ir
from deploy.core.metrics import Activity, LayerActivity, array_bytes, layer_memory
from hwmodels.base import Cost, LayerCost
from hwmodels.imc.mapping import ImcMapping, LayerMap
from hwmodels.spec import Spec

COUNTERS = ("reads", "array_reads", "conversions", "row_activations", "active_cells", "cell_current_units")


def expected_counters(lm: LayerMap, rate: float, timesteps: int) -> dict[str, float]:
    """Counters of one inference when every input is active with probability ``rate``
    (bit-planes of analog inputs at 1/2)."""
    r = 0.5 if lm.analog else rate
    reads = lm.positions * timesteps * lm.planes
    rows = r * lm.ideal_counts["row_activations"] * timesteps * lm.planes
    return {"reads": reads, "array_reads": reads * lm.arrays, "conversions": reads * lm.row_tiles * lm.columns,
            "row_activations": rows * lm.col_tiles, "active_cells": rows * lm.columns,
            "cell_current_units": r * lm.ideal_counts["digit_sum"] * timesteps * lm.planes}


def _per_bits(spec: Spec, sa_key: str, adc_key: str, bits: int) -> float:
    """A per-conversion figure known at 1 bit (SA) and 5 bits, linear in between/beyond."""
    lo, hi = spec[sa_key], spec[adc_key]
    return float(lo + (hi - lo) * (bits - 1) / 4)


class CostModel:
    """Costs one :class:`ImcMapping` with its spec."""

    def __init__(self, mapping: ImcMapping, spec: Spec):
        self.m, self.s, self.cfg = mapping, spec, mapping.config
        s = spec
        self.cycle = 1.0 / s["clock_hz"]
        self.pitch = s["cell_size_f"] * s["feature_size_m"]
        self.g_on, self.g_off = 1.0 / s["r_on_ohm"], 1.0 / s["r_off_ohm"]
        self.d_g = (self.g_on - self.g_off) / (self.cfg.levels_per_cell - 1)
        self.bits = self.cfg.adc_bits
        self.t_conv = s["sa_latency_s"] if self.bits == 1 else s["flash_latency_s"]
        self.phases = min(self.cfg.adc_share, self.cfg.cols)
        self.area = self.area_um2()
        self.hop_m = math.sqrt(sum(self.area.values()) * 1e-12) / 2

    # -- per-layer pieces ----------------------------------------------------------
    def counters(self, lm: LayerMap, la: LayerActivity, timesteps: int) -> tuple[dict[str, float], bool]:
        if all(k in la.extra for k in COUNTERS):
            return {k: la.extra[k] for k in COUNTERS}, True
        return expected_counters(lm, la.input_rate, timesteps), False

    def synapse_energy(self, lm: LayerMap, c: dict[str, float], timesteps: int) -> dict[str, float]:
        s, cfg = self.s, self.cfg
        v2 = s["v_read_v"] ** 2
        c_bl = cfg.rows * self.pitch * s["c_wire_f_per_m"]
        c_wl = cfg.cols * self.pitch * s["c_wire_f_per_m"]
        g_total = c["cell_current_units"] * self.d_g + c["active_cells"] * self.g_off
        fixed = c["conversions"] * s["sa_power_per_level_w"] * (2 ** self.bits - 1) * self.t_conv
        e = {"array": c["conversions"] * c_bl * v2 + c["row_activations"] * self.phases * c_wl * v2}
        if cfg.read_energy == "physical":
            e["array"] += v2 * g_total * s["t_read_pulse_s"]
            e["conversion"] = fixed
        else:
            e["conversion"] = fixed + s["sa_power_per_siemens"] * g_total * self.t_conv
        e["switch_matrix"] = c["row_activations"] * self.phases * s["e_switch_row_j"]
        e["encoder"] = c["conversions"] * _per_bits(s, "e_encoder_sa_j", "e_encoder_flash5_j", self.bits)
        e["shift_add"] = c["conversions"] * _per_bits(s, "e_shift_add_sa_j", "e_shift_add_adc5_j", self.bits)
        if lm.planes > 1:
            e["input_shift_add"] = c["conversions"] * s["e_input_shift_add_j"]
        bits_moved = c["reads"] * lm.rows_used + lm.positions * lm.outputs * timesteps
        e["buffer"] = bits_moved * s["e_buffer_bit_j"]
        e["interconnect"] = bits_moved * s["c_wire_f_per_m"] * s["vdd_v"] ** 2 * self.hop_m
        return e

    def step_time(self, lm: LayerMap) -> tuple[float, str, float]:
        """(time per timestep, bounding stage, pipeline fill) of one synaptic layer."""
        s = self.s
        stages = {"conversion": self.phases * self.t_conv,
                  "lif": s["lif_latency_s"] / lm.planes,
                  "shift_add": self.cycle,
                  "buffer": math.ceil(lm.rows_used / s["buffer_bus_bits"]) * self.cycle}
        bound = max(stages, key=stages.get)
        fill = sum(stages.values()) - stages[bound] + s["lif_latency_s"]
        reads = lm.positions * lm.planes
        return reads * stages[bound] + fill, bound, fill

    def area_um2(self) -> dict[str, float]:
        s, cfg = self.s, self.cfg
        arrays = sum(lm.arrays for lm in self.m.layers.values())
        per_array = (cfg.cols if self.bits == 1 else
                     math.ceil(cfg.cols / self.phases) * (2 ** self.bits - 1)) * s["comparator_area_um2"]
        return {"arrays": arrays * cfg.rows * cfg.cols * (self.pitch * 1e6) ** 2,
                "conversion": arrays * per_array,
                "lif": sum(lm.outputs for lm in self.m.layers.values()) * s["lif_area_um2"]}

    # -- whole network -------------------------------------------------------------
    def cost(self, activity: Activity) -> Cost:
        graph, s = self.m.graph, self.s
        shapes, t_steps = graph.shapes(), activity.timesteps
        mem = layer_memory(graph)
        area = self.area
        layers, steps, measured = [], {}, True
        for node in graph.nodes:
            la = activity.layers[node.name]
            lc = LayerCost(node.name, node.kind)
            n_out = int(np.prod(shapes[node.name]))
            if node.name in self.m.layers:
                lm = self.m.layers[node.name]
                c, sim = self.counters(lm, la, t_steps)
                measured &= sim
                lc.energy_j = self.synapse_energy(lm, c, t_steps)
                step, bound, fill = self.step_time(lm)
                steps[node.name] = (step, bound, fill)
                lc.latency_s = step * t_steps
                lc.set_memory(mem[node.name].total, self.memory_overheads(node, lm))
                lc.resources = {"arrays": lm.arrays, "row_tiles": lm.row_tiles, "col_tiles": lm.col_tiles,
                                "cells": lm.arrays * self.cfg.rows * self.cfg.cols, "cells_used": lm.cells_used,
                                "utilisation": round(lm.utilisation(self.cfg.rows, self.cfg.cols), 4),
                                "weight_bits": lm.slicing.bits, "columns_per_output": lm.slicing.groups,
                                "input_planes": lm.planes, "bound_by": bound,
                                **{k: round(v, 3) for k, v in c.items()}}
            elif node.kind in ir.NEURON_KINDS:
                lc.energy_j["lif"] = n_out * t_steps * s["lif_power_dynamic_w"] * s["lif_latency_s"]
                lc.set_memory(mem[node.name].total)
                lc.resources = {"neuron_updates": n_out * t_steps}
            else:
                lc.energy_j["digital"] = self._digital(node, shapes, n_out) * t_steps
                lc.set_memory(mem[node.name].total)
            layers.append(lc)
        total, breakdown = self._pipeline(steps, t_steps)
        units = sum(lm.outputs for lm in self.m.layers.values())
        layers[-1].energy_j["leakage"] = units * s["lif_power_leak_w"] * total
        critical, note = self.latency_note(steps, t_steps, total)
        return Cost(layers=layers, latency_s=total, latency_breakdown_s=breakdown,
                    area_mm2=sum(area.values()) * 1e-6, assumptions=self.assumptions(measured),
                    pipelined=True, critical_layer=critical, latency_note=note)

    def memory_overheads(self, node: ir.Node, lm: LayerMap) -> dict[str, float]:
        """What a synaptic layer stores on the crossbar beyond its weights at the deployed precision:
        ``crossbar_cells`` (the cells holding the codes, with polarities and bit-slices, minus the
        weights and per-output scales they replace) and ``unused_cells`` (the rest of its arrays)."""
        bpc, cfg = self.cfg.bits_per_cell, self.cfg
        cells = lm.cells_used * bpc / 8
        replaced = array_bytes(node, "weight") + array_bytes(node, "weight_scale")
        return {"crossbar_cells": cells - replaced,
                "unused_cells": (lm.arrays * cfg.rows * cfg.cols - lm.cells_used) * bpc / 8}

    @staticmethod
    def latency_note(steps: dict[str, tuple[float, str, float]], t_steps: int,
                     total: float) -> tuple[str | None, str]:
        """(critical layer, sentence): how the pipelined total follows from the layer steps."""
        if not steps:
            return None, "no synaptic layer: no crossbar latency"
        slowest = max(steps, key=lambda k: steps[k][0])
        fill = sum(v[0] for v in steps.values())
        return slowest, (f"layers pipelined over timesteps: total = one step of every synaptic layer "
                         f"({fill * 1e9:.4g} ns) + {t_steps - 1} x the slowest step ({slowest}, "
                         f"{steps[slowest][0] * 1e9:.4g} ns) = {total * 1e9:.4g} ns; a layer's latency is "
                         f"{t_steps} x its step, so the layer latencies add up to more than the total")

    def _digital(self, node: ir.Node, shapes, n_out: int) -> float:
        """Energy per timestep of pooling, residual adds and the per-timestep affine."""
        s = self.s
        if node.kind == "pool2d":
            return n_out * (node.kernel_size[0] * node.kernel_size[1] - 1) * s["e_add_j"]
        if node.kind == "add":
            return n_out * (len(node.inputs) - 1) * s["e_add_j"]
        if node.kind == "timescale":
            return n_out * (s["e_mult_j"] + s["e_add_j"])
        return 0.0

    def _pipeline(self, steps: dict[str, tuple[float, str, float]], t_steps: int) -> tuple[float, dict[str, float]]:
        if not steps:
            return 0.0, {}
        slowest = max(steps, key=lambda k: steps[k][0])
        total = sum(v[0] for v in steps.values()) + (t_steps - 1) * steps[slowest][0]
        out: dict[str, float] = {}
        for name, (step, bound, fill) in steps.items():
            weight = step + (t_steps - 1) * step * (name == slowest)
            out[bound] = out.get(bound, 0.0) + weight * (step - fill) / step
            out["pipeline_fill"] = out.get("pipeline_fill", 0.0) + weight * fill / step
        return total, out

    def assumptions(self, measured: bool) -> list[str]:
        cfg, s = self.cfg, self.s
        conv = ("1-bit current-mode sense amplifier per column" if self.bits == 1 else
                f"{self.bits}-bit flash ADC shared by {self.phases} columns (the array is read once per mux phase)")
        read = ("array read energy in NeuroSim's convention: bit/word-line wire charging only, the cell "
                "current is inside the converter's 0.0972/R_col power term for the conversion time"
                if cfg.read_energy == "neurosim" else
                f"array read energy physical: V_read^2 * G * {s['t_read_pulse_s'] * 1e9:g} ns per active cell, "
                "converter energy without its 1/R_col term")
        out = [f"{cfg.rows}x{cfg.cols} RRAM arrays, {cfg.bits_per_cell} bit(s)/cell, {cfg.signed} signed weights, "
               f"{conv}", read,
               "conv rows tiled on whole kernel windows; analog inputs as "
               f"{cfg.input_bits} bit-planes (one read each) with a digital input shift-add",
               "reads pipelined within a layer (fetch | convert | shift-add | LIF), layers pipelined over "
               "timesteps; one 5 ns LIF unit per output channel",
               "buffers and interconnect: every read fetches its unrolled input vector, spikes are written back; "
               "interconnect hop = half the edge of the modelled area",
               "area covers arrays, converters and LIF units (no buffers, shift-adders or interconnect); leakage "
               "only of the LIF units",
               "encoder and shift-add energies known at 1 and 5 bits, linear in the bit width elsewhere"]
        if not measured:
            out.append("array activity estimated from the input spike rate (no simulation counters)")
        if cfg.nonideal.any:
            out.append(f"non-idealities: {cfg.nonideal}")
        return out + list(self.m.notes)
