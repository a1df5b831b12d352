"""Loihi 1 and Loihi 2 targets: fixed-point mapping, core placement, simulation, cost.

Options (constructor ``options`` or the ``options:`` section of ``--config``), validated by
:class:`hwmodels.loihi.options.LoihiOptions` into ``target.config``:

- ``chips`` (int): chips the network may use (default: the spec's ``max_chips``);
- ``saturate`` (bool): clip parameters that overflow their format, with a warning,
  instead of failing;
- ``scale`` (float or "auto"): fixed integer threshold per unit of float threshold
  (``vth = round(scale * threshold)``); default automatic per layer;
- ``bias_exp`` (0-7, default 6), ``input_bits`` (graded input width, default from the spec);
- ``netx`` (bool): dense weight exponents fixed at 0 so the mapping exports exactly to netx;
- ``strict_reset`` (bool): refuse LIF layers trained with reset "subtract";
- ``backend``: ``"reference"`` (default, vectorized bit-exact model) or ``"lava"``
  (real Lava processes, slow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from deploy.core import ir
from deploy.core.errors import TargetError
from deploy.core.metrics import Activity, merge
from hwmodels.base import Cost, Mapping, Target, Violation
from hwmodels.loihi import cost as cost_model
from hwmodels.loihi import reference
from hwmodels.loihi.activity import build_activity
from hwmodels.loihi.fixed_point import Formats, convert
from hwmodels.loihi.lower import SUPPORTED_KINDS, check_kinds, lower
from hwmodels.loihi.network import LoihiNetwork, encode_input
from hwmodels.loihi.options import LoihiOptions
from hwmodels.loihi.partition import Limits, Placement, place


@dataclass
class LoihiMapping(Mapping):
    """A graph on Loihi: the fixed-point network and where it sits."""

    network: LoihiNetwork
    placement: Placement
    target: str


class Loihi1Target(Target):
    name = "loihi"
    spec_name = "loihi1"
    description = "Intel Loihi 1 via Lava (bit-accurate CUBA LIF, Dense/Conv synapses, 128 cores per chip)"
    supported_kinds = SUPPORTED_KINDS
    bit_true = True   # simulate() runs Loihi's own fixed-point arithmetic
    float_simulation = False
    options_schema = LoihiOptions
    config: LoihiOptions

    def __init__(self, spec=None, options: dict[str, Any] | None = None):
        super().__init__(spec, options)
        self.formats()          # the options bounded by the spec (bias_exp) are checked now

    # -- helpers --------------------------------------------------------------------------
    def formats(self) -> Formats:
        return Formats.from_spec(self.spec, self.config)

    def limits(self) -> Limits:
        s = self.spec
        return Limits(cores_per_chip=int(s["cores_per_chip"]), cores_per_tile=int(s["cores_per_tile"]),
                      mesh_x=int(s["mesh_tiles_x"]), mesh_y=int(s["mesh_tiles_y"]),
                      compartments=int(s["compartments_per_core"]),
                      syn_bytes=int(s["synaptic_memory_bytes_per_core"]),
                      in_axons=int(s["input_axons_per_core"]), out_axons=int(s["output_axons_per_core"]),
                      chips=self.config.chips or int(s["max_chips"]))

    def _place(self, graph: ir.Graph) -> tuple[LoihiNetwork, Placement]:
        graph = graph.copy().validate()
        net = convert(lower(graph, self.name), graph, self.formats())
        return net, place(net, self.limits())

    # -- protocol ---------------------------------------------------------------------------
    def check(self, graph: ir.Graph) -> list[Violation]:
        """Resource violations (cores, compartments, synaptic memory, axons, chips).

        Layers Loihi cannot run at all, and parameters that overflow the
        fixed-point formats, raise :class:`TargetError` at once.
        """
        check_kinds(graph, self.name)
        return self._place(graph)[1].violations

    def map(self, graph: ir.Graph) -> LoihiMapping:
        net, placement = self._place(graph)
        if placement.violations:
            raise TargetError(str(placement.violations[0]))
        return LoihiMapping(graph.copy().validate(), net, placement, self.name)

    def simulate(self, mapping: LoihiMapping, x: torch.Tensor, batch_size: int = 128,
                 generator: torch.Generator | None = None, progress: bool = False) -> Activity:
        """Run ``x`` (N, ...) through the mapped network (reference model, or Lava with backend="lava")."""
        from deploy.core.progress import bar as progress_bar

        if len(x) == 0:
            raise TargetError("no samples to simulate")
        backend = self.config.backend
        net, parts = mapping.network, []
        for i in progress_bar(range(0, len(x), batch_size), desc=f"simulate {self.name}", disable=not progress,
                      leave=False):
            xq = encode_input(net, x[i:i + batch_size], generator)
            run = self._run(net, xq, backend, progress)
            parts.append(build_activity(mapping.graph, net, mapping.placement, run))
        return merge(parts)

    @staticmethod
    def _run(net: LoihiNetwork, xq: torch.Tensor, backend: str, progress: bool) -> dict[str, torch.Tensor]:
        if backend == "lava":
            from hwmodels.loihi.lava_backend import run_lava

            return run_lava(net, xq, progress)
        return reference.run(net, xq)

    def cores_used(self, mapping: LoihiMapping) -> int:
        return mapping.placement.cores

    def cost(self, mapping: LoihiMapping, activity: Activity) -> Cost:
        return cost_model.estimate(self.spec, mapping.graph, mapping.network, mapping.placement, activity,
                                   mapping.network.notes)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["backend"] = self.config.backend
        return out


class Loihi2Target(Loihi1Target):
    name = "loihi2"
    spec_name = "loihi2"
    description = ("Intel Loihi 2 via Lava (bit-accurate CUBA LIF; 8192 neurons and 192 KB per core; "
                   "energy from Loihi 1 per-operation figures as a proxy)")
