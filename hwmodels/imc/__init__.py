"""RRAM crossbar in-memory computing: ADC-less (``imc``) and N-bit ADC (``imc-adc``) targets.

``ImcTarget``: one 1-bit sense amplifier per column (Apolinario et al.; Saxena
et al., DATE'22). ``ImcAdcTarget``: the high-precision baseline, an N-bit flash
ADC (default 5) shared by M columns (default 8). Both share ``specs/imc.yaml``
and the options of :mod:`hwmodels.imc.config`; ``deploy.training.finetune``
retrains a model with the target's partial-sum quantization.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from deploy.core import ir
from deploy.core.device import simulate_on
from deploy.core.metrics import Activity
from hwmodels.base import Cost, Target, Violation
from hwmodels.imc.config import ImcConfig, parse_options
from hwmodels.imc.cost import CostModel
from hwmodels.imc.crossbar import CrossbarNet
from hwmodels.imc.mapping import ImcMapping, check_graph, learned_steps, map_graph
from hwmodels.imc.nonideal import off_units
from hwmodels.spec import Spec

SPEC_KEYS = ("feature_size_m", "cell_size_f", "r_on_ohm", "r_off_ohm", "v_read_v", "t_read_pulse_s",
             "c_wire_f_per_m", "vdd_v", "clock_hz", "max_bits_per_cell", "max_adc_bits", "sa_power_per_level_w",
             "sa_power_per_siemens", "sa_latency_s", "flash_latency_s", "comparator_area_um2", "e_encoder_sa_j",
             "e_encoder_flash5_j", "e_shift_add_sa_j", "e_shift_add_adc5_j", "e_input_shift_add_j",
             "e_switch_row_j", "lif_area_um2", "lif_latency_s", "lif_power_dynamic_w", "lif_power_leak_w",
             "e_buffer_bit_j", "buffer_bus_bits", "e_add_j", "e_mult_j")


class ImcTarget(Target):
    """ADC-less crossbar: each column's partial sum binarized by a 1-bit sense amplifier."""

    name = "imc"
    spec_name = "imc"
    description = "RRAM crossbar IMC, ADC-less: one 1-bit sense amplifier per column (65 nm, NeuroSim figures)"
    supported_kinds = Target.supported_kinds | {"timescale"}
    adc = False
    options_schema = None   # validated by hwmodels.imc.config.parse_options
    bit_true = True   # simulate() runs the crossbar's partial-sum conversions itself
    float_simulation = False
    runs_on_device = True   # simulate() only; calibration runs on the CPU

    def __init__(self, spec: Spec | None = None, options: Mapping[str, Any] | None = None):
        super().__init__(spec, options)
        self.spec.require(SPEC_KEYS)
        self.config: ImcConfig = parse_options(self.options, self.spec, self.adc)

    @property
    def off_units(self) -> float:
        return off_units(self.spec["r_on_ohm"], self.spec["r_off_ohm"], self.config.levels_per_cell)

    def check(self, graph: ir.Graph) -> list[Violation]:
        super().check(graph)
        return check_graph(graph, self.config)

    def map(self, graph: ir.Graph) -> ImcMapping:
        super().map(graph)
        return map_graph(graph, self.config, self.adc)

    def network(self, mapping: ImcMapping, floor: bool = False) -> CrossbarNet:
        """The functional simulator of a mapping (a SpikingNet with crossbar synapses); ``floor``:
        the same tiled partial sums without conversion (ideal ADC, the speed floor)."""
        return CrossbarNet(mapping, self.off_units, mode="floor" if floor else "sim").eval()

    def calibrate(self, mapping: ImcMapping, x: torch.Tensor, batch_size: int = 128) -> ImcMapping:
        """With the ``calibrate`` option: a copy of ``mapping`` whose conversion steps (SA
        references) are MSE-optimal for the partial sums of the first ``batch_size`` samples of
        ``x`` (per column group, no labels); otherwise ``mapping`` as it is. One batch, on the CPU
        whatever device :meth:`simulate` runs on, so every device simulates the same steps."""
        if not self.config.calibrate or mapping.calibrated:
            return mapping
        steps = self.network(mapping).calibrate(x[:batch_size])
        return mapping.with_steps(steps, f"conversion steps (SA references) calibrated on the first "
                                         f"{min(batch_size, len(x))} simulated samples (MSE-optimal per column "
                                         "group, no labels)")

    def simulate(self, mapping: ImcMapping, x: torch.Tensor, batch_size: int = 128,
                 generator: torch.Generator | None = None, progress: bool = False,
                 device: str | torch.device = "cpu") -> Activity:
        """The crossbar simulation of ``x`` on ``device``; with the ``calibrate`` option an
        uncalibrated mapping is calibrated first (:meth:`calibrate`, on a copy: ``mapping`` is not
        changed)."""
        mapping = self.calibrate(mapping, x, batch_size)
        return simulate_on(self.network(mapping), mapping.graph, x, batch_size, generator, progress, device)

    def trainable(self, graph: ir.Graph, *, noise: bool = False, learn_steps: bool = True,
                  learn_scales: bool = True) -> CrossbarNet:
        """The differentiable forward for hardware-aware retraining (:mod:`hwmodels.imc.trainable`)."""
        return CrossbarNet(self.map(graph), self.off_units, mode="train", noise=noise, learn_steps=learn_steps,
                           learn_scales=learn_scales)

    def retrained(self, graph: ir.Graph) -> bool:
        """Whether ``graph`` carries conversion steps learned for this configuration (retraining keeps them)."""
        return bool(learned_steps(graph, self.config, self.adc)[0])

    def training_stages(self, epochs: int, progressive: bool) -> list[tuple[int, int]]:
        """[(conversion bits, epochs)] of a retraining run (:func:`hwmodels.imc.trainable.schedule`)."""
        from hwmodels.imc.trainable import schedule

        return schedule(self.config.adc_bits, epochs, progressive)

    def export_trained(self, net: CrossbarNet) -> ir.Graph:
        """The retrained network as a deployable Graph (:func:`hwmodels.imc.trainable.export`)."""
        from hwmodels.imc.trainable import export

        return export(net, self)

    def cost(self, mapping: ImcMapping, activity: Activity) -> Cost:
        return CostModel(mapping, self.spec).cost(activity)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["options"] = {**self.config.to_dict(), **{"user": dict(self.options)}}
        return d


class ImcAdcTarget(ImcTarget):
    """Baseline crossbar: N-bit flash ADC (default 5) shared by M columns (default 8)."""

    name = "imc-adc"
    description = "RRAM crossbar IMC with N-bit flash ADCs shared by M columns (default 5 bits, 8 columns)"
    adc = True



__all__ = ["ImcTarget", "ImcAdcTarget", "ImcMapping"]
