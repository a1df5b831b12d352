"""Per-layer activity and Loihi counters from the spike trains of a run (either backend).

Each population is counted over its own window of ``timesteps`` steps
(from its ``start``), the steps that carry the sample through it, so the
spike counts are those of the float network's timeline and the counters are
per inference in a pipelined stream. Counters (``LayerActivity.extra``, per
sample):

- on every LIF node: ``spikes``, ``neuron_updates_active`` (the compartment
  received synaptic input or fired that step), ``neuron_updates_inactive``,
  ``spike_messages`` (one per destination core of each spike), ``hops_ew``,
  ``hops_ns`` (mesh hops of those messages);
- on the node owning each connection: ``synaptic_ops`` (input events x nonzero
  synapses of that input) and, for the network input, ``input_messages``
  (graded messages from the host, one per destination core).
"""

from __future__ import annotations

import numpy as np
import torch

from deploy.core import ir
from deploy.core.metrics import Activity, LayerActivity, dense_synops, effective_synops
from hwmodels.loihi import reference
from hwmodels.loihi.network import INPUT, LoihiNetwork
from hwmodels.loihi.partition import Placement, conn_key


def window(net: LoihiNetwork, name: str, trains: torch.Tensor) -> torch.Tensor:
    """The ``timesteps`` steps of a population's (or the input's) window."""
    start = net.start_of(name)
    return trains[start:start + net.timesteps]


def build_activity(graph: ir.Graph, net: LoihiNetwork, placement: Placement,
                   run: dict[str, torch.Tensor]) -> Activity:
    """Activity of one batch from ``run`` (outputs of the reference or Lava backend)."""
    shapes = graph.shapes()
    t_steps, batch = net.timesteps, run[INPUT].shape[1]
    layers = {n.name: LayerActivity(n.name, n.kind) for n in graph.nodes}
    for pop in net.populations:
        la = layers[pop.name]
        s = window(net, pop.name, run[pop.name]).to(torch.float64)
        counts = s.sum(0).numpy()                                     # (B, n)
        a_in = window(net, pop.name, reference.synaptic_input(net, pop, run))
        active = float(((a_in != 0) | (s != 0)).sum()) / batch
        la.neurons, la.spikes = pop.size, float(counts.sum()) / batch
        la.spike_rate = la.spikes / (pop.size * t_steps)
        la.extra.update(spikes=la.spikes, neuron_updates_active=active,
                        neuron_updates_inactive=pop.size * t_steps - active)
        la.extra.update(_routing(placement, pop.name, counts, batch))
    for conn in net.connections:
        la = layers[conn.name]
        ev = (window(net, conn.source, run[conn.source]) != 0)        # (T, B, n_src)
        per_neuron = ev.sum(0).to(torch.float64).numpy()
        la.input_events += float(per_neuron.sum()) / batch
        la.input_rate = la.input_events / (int(np.prod(net.shape_of(conn.source))) * t_steps)
        la.binary_input = la.binary_input and not conn.graded
        ops = float((per_neuron @ placement.fanout[conn_key(conn)]).sum()) / batch
        la.extra["synaptic_ops"] = la.extra.get("synaptic_ops", 0.0) + ops
        node = graph[conn.name] if conn.nodes and conn.nodes[-1] == conn.name else None
        direct = node is not None and node.kind in ir.SYNAPSE_KINDS and (
            len(conn.nodes) == 1 or (len(conn.nodes) == 2 and graph[conn.nodes[0]].kind == "flatten"))
        if direct:
            x = window(net, conn.source, run[conn.source]).to(torch.float32)
            x = x.reshape(t_steps, batch, *shapes[node.inputs[0]])
            la.synops_dense += dense_synops(node, shapes[node.inputs[0]], shapes[node.name]) * t_steps
            la.synops_effective += effective_synops(node, x) / batch
        else:
            la.synops_dense += placement.synapses[conn_key(conn)] * t_steps
            la.synops_effective += ops
        if conn.source == INPUT:
            la.extra.update(_routing(placement, INPUT, per_neuron, batch, prefix="input_"))
    act = Activity(timesteps=t_steps, samples=int(batch), layers=layers)
    out = window(net, net.output, run[net.output]).to(torch.float32)
    act.logits = out.sum(0)
    act.predictions = act.logits.argmax(-1)
    return act


def _routing(pl: Placement, source: str, counts: np.ndarray, batch: int, prefix: str = "spike_") -> dict:
    if source not in pl.messages:
        return {f"{prefix}messages": 0.0, f"{prefix}hops_ew": 0.0, f"{prefix}hops_ns": 0.0}
    tot = counts.sum(0)
    return {f"{prefix}messages": float(tot @ pl.messages[source]) / batch,
            f"{prefix}hops_ew": float(tot @ pl.hops_ew[source]) / batch,
            f"{prefix}hops_ns": float(tot @ pl.hops_ns[source]) / batch}
