"""The target protocol: what a graph needs (check), where it goes (map), what it
does (simulate) and what it costs (cost).

The Graph says *what*; each target says *how* and *at what price*, as Lava
splits a process from its process models.
"""

from __future__ import annotations

import collections.abc
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from deploy.core import ir
from deploy.core.device import simulate_on
from deploy.core.errors import TargetError
from deploy.core.metrics import Activity
from hwmodels.options import NoOptions, Options, validate_options
from hwmodels.spec import Spec, load_config, load_spec


@dataclass
class Violation:
    """One resource a layer needs beyond what the target offers."""

    layer: str
    resource: str
    need: float
    limit: float
    hint: str = ""                  # what would make it fit, when something simple would

    def __str__(self) -> str:
        msg = f"layer '{self.layer}' needs {self.need:g} {self.resource}, the target allows {self.limit:g}"
        return f"{msg}; {self.hint}" if self.hint else msg


@dataclass
class LayerCost:
    name: str
    kind: str
    energy_j: dict[str, float] = field(default_factory=dict)   # by component
    latency_s: float = 0.0
    #: memory on the target: ``memory_base_bytes`` + the named ``memory_overhead_bytes``
    memory_bytes: float = 0.0
    resources: dict[str, Any] = field(default_factory=dict)
    #: the model's own memory (:func:`deploy.core.metrics.layer_memory`), the same on every target
    memory_base_bytes: float | None = None
    #: what the target stores beyond (or instead of) that, by named cause; may be negative
    memory_overhead_bytes: dict[str, float] = field(default_factory=dict)

    @property
    def energy_total_j(self) -> float:
        return float(sum(self.energy_j.values()))

    def set_memory(self, base: float, overheads: dict[str, float] | None = None) -> None:
        """Memory on the target = ``base`` (the model's) + the non-zero named ``overheads``."""
        self.memory_base_bytes = float(base)
        self.memory_overhead_bytes = {k: float(v) for k, v in (overheads or {}).items() if v}
        self.memory_bytes = self.memory_base_bytes + float(sum(self.memory_overhead_bytes.values()))


@dataclass
class Cost:
    """Per-layer costs plus totals; ``latency_s`` may differ from the layer sum (pipelines).

    ``pipelined`` says whether layers overlap in time, ``critical_layer`` names the
    layer that bounds ``latency_s`` and ``latency_note`` states how the total
    follows from the layer latencies.
    """

    layers: list[LayerCost]
    latency_s: float
    latency_breakdown_s: dict[str, float] = field(default_factory=dict)
    area_mm2: float | None = None
    assumptions: list[str] = field(default_factory=list)
    pipelined: bool = False
    critical_layer: str | None = None
    latency_note: str = ""

    @property
    def energy_j(self) -> float:
        return float(sum(lc.energy_total_j for lc in self.layers))

    @property
    def memory_bytes(self) -> float:
        """Memory on the target (model memory + the target's overheads)."""
        return float(sum(lc.memory_bytes for lc in self.layers))

    @property
    def memory_base_bytes(self) -> float | None:
        """The model's own memory (one definition), None if a layer does not state it."""
        if any(lc.memory_base_bytes is None for lc in self.layers):
            return None
        return float(sum(lc.memory_base_bytes for lc in self.layers))

    def memory_overhead_bytes(self) -> dict[str, float]:
        """The target's memory overheads summed over layers, by name."""
        out: dict[str, float] = {}
        for lc in self.layers:
            for key, b in lc.memory_overhead_bytes.items():
                out[key] = out.get(key, 0.0) + b
        return out

    def energy_breakdown(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for lc in self.layers:
            for comp, e in lc.energy_j.items():
                out[comp] = out.get(comp, 0.0) + e
        return out


@dataclass
class Mapping:
    """A graph placed on a target. ``graph`` is the graph the target runs (e.g. with its weights
    at the target's precision); a target's own mapping type adds where everything sits."""

    graph: ir.Graph


class Target(ABC):
    """A hardware target. Subclasses set ``name`` and ``spec_name``."""

    name: str = "target"
    spec_name: str = ""
    description: str = ""
    #: node kinds this target can run; others are reported by :meth:`check`
    supported_kinds: frozenset[str] = frozenset({"linear", "conv2d", "pool2d", "flatten", "add",
                                                 *ir.NEURON_KINDS})
    #: True when :meth:`simulate` computes in the target's own arithmetic at the graph's stored
    #: precision (fixed point, crossbar conversions), so its accuracy is the deployed one; False
    #: for a float simulation (then ``quant`` runs its fixed-point network and costs that activity)
    bit_true: bool = False
    #: True when :meth:`simulate` is the float reference run of the mapping's graph (a compile
    #: then reuses it as the reference); a target whose answer depends on the graph overrides
    #: :meth:`simulates_float`
    float_simulation: bool = True
    #: True when :meth:`simulate` takes a torch ``device`` (``deploy compile --device``): the network
    #: and each batch run there, the activity comes back to the CPU. False: the target simulates on
    #: the CPU only, and a compile refuses another device for it
    runs_on_device: bool = False
    #: the schema of this target's options (:mod:`hwmodels.options`); None: the subclass
    #: validates them itself into ``self.config``
    options_schema: type[Options] | None = NoOptions

    def __init__(self, spec: Spec | None = None, options: collections.abc.Mapping[str, Any] | None = None):
        self.spec = spec or load_spec(self.spec_name)
        #: the options as given (read-only); ``config`` holds them validated
        self.options: collections.abc.Mapping[str, Any] = MappingProxyType(dict(options or {}))
        if self.options_schema is not None:
            self.config = validate_options(self.options_schema, self.options, self.name)

    def with_options(self, **changes: Any) -> Target:
        """A new target of this kind with ``changes`` applied to the options (validated again)."""
        return type(self)(spec=self.spec, options={**self.options, **changes})

    @classmethod
    def from_config(cls, config: str | None = None) -> Target:
        if config is None:
            return cls()
        cfg = load_config(config)
        spec = load_spec(cls.spec_name).override(cfg["constants"], cfg["origin"])
        return cls(spec=spec, options=cfg["options"])

    # -- protocol -----------------------------------------------------------------
    def check(self, graph: ir.Graph) -> list[Violation]:
        """Resource violations of ``graph`` on this target (empty when it fits).

        Subclasses extend this with their resource limits; node kinds the target
        cannot run raise :class:`TargetError` at once (no resource can fix them).
        """
        for node in graph.nodes:
            if node.kind not in self.supported_kinds:
                raise TargetError(f"layer '{node.name}': layer type '{node.kind}' is not supported "
                                  f"on target '{self.name}'")
        return []

    def map(self, graph: ir.Graph) -> Mapping:
        """Place the graph; raises TargetError naming the first violation."""
        violations = self.check(graph)
        if violations:
            raise TargetError(str(violations[0]))
        return Mapping(graph)

    def calibrate(self, mapping: Mapping, x: torch.Tensor, batch_size: int = 128) -> Mapping:
        """The mapping with whatever the target sets from sample inputs ``x`` (e.g. conversion
        references), as a new object: ``mapping`` itself is left as it is. This is an explicit step
        before :meth:`simulate`, which never changes a mapping. Default: nothing to calibrate."""
        return mapping

    def simulate(self, mapping: Mapping, x: torch.Tensor, batch_size: int = 128,
                 generator: torch.Generator | None = None, progress: bool = False,
                 device: str | torch.device = "cpu") -> Activity:
        """Run the mapped network on ``x`` (N, ...) and return its activity (``mapping`` unchanged);
        ``device``: where the network runs, for a target that sets :attr:`runs_on_device`."""
        return simulate_float(mapping.graph, x, batch_size, generator, progress, device)

    def simulates_float(self, mapping: Mapping) -> bool:
        """True when :meth:`simulate` is the float reference run of the mapping's graph
        (:func:`simulate_float`), so a compile can reuse it as the reference: the declared
        :attr:`float_simulation`, or what the graph asks for where that depends on it."""
        return self.float_simulation

    @abstractmethod
    def cost(self, mapping: Mapping, activity: Activity) -> Cost:
        """Energy, latency and memory of the mapped network for this activity."""

    def cores_used(self, mapping: Mapping) -> int | None:
        """Cores a mapping occupies, for targets built of cores (None otherwise)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "spec_file": self.spec.path, "options": dict(self.options),
                "spec": self.spec.used_constants()}


def simulate_float(graph: ir.Graph, x: torch.Tensor, batch_size: int = 128,
                   generator: torch.Generator | None = None, progress: bool = False,
                   device: str | torch.device = "cpu") -> Activity:
    """The float reference simulation of a graph, on ``device`` (:func:`deploy.core.device.simulate_on`)."""
    from deploy.core.net import SpikingNet

    return simulate_on(SpikingNet(graph).eval(), graph, x, batch_size, generator, progress, device)
