"""Teachers for distillation: an ANN (:mod:`deploy.training.ann`, its ``neurodeploy-ann``
checkpoint) or a native SNN, frozen behind one interface.

Every teacher answers ``logits(x)`` (B, classes) and ``forward_features(x)``
(logits plus named intermediate activations (B, ...), for hint losses); ``x`` is a
batch of images in [0, 1], reshaped to the teacher's input with :func:`fit_to_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy.core import ir
from deploy.core.data import fit_to_model
from deploy.core.errors import DeployError, ModelError
from deploy.core.net import SpikingNet
from deploy.io import native
from deploy.training import ann as annlib


# -- the teacher wrapper ---------------------------------------------------------------
class Teacher:
    """A frozen ANN or SNN that scores image batches for a distillation loss."""

    def __init__(self, model: nn.Module, source: str = "model"):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.source = source
        self.kind = "snn" if isinstance(model, SpikingNet) else "ann"
        if self.kind == "snn":
            self.input_shape = tuple(model.graph.input_shape)
            self.classes = int(np.prod(model.graph.shapes()[model.graph.output.name]))
            self.encoding = model.graph.encoding
        else:
            shape = getattr(model, "input_shape", None)
            if shape is None:
                raise ModelError(f"{source}: an ANN teacher needs its input_shape")
            self.input_shape, self.encoding = tuple(int(s) for s in shape), "direct"
            self.classes = int(self.forward_features(torch.zeros(1, *self.input_shape))[0].shape[-1])

    @property
    def name(self) -> str:
        return self.model.graph.name if self.kind == "snn" else getattr(self.model, "name", "ann")

    def shape_input(self, x: torch.Tensor) -> torch.Tensor:
        return fit_to_model(x, self.input_shape, self.encoding)

    @torch.no_grad()
    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits, features); SNN features are firing rates (mean over time) of each layer."""
        x = self.shape_input(x)
        if self.kind == "ann":
            if isinstance(self.model, annlib.ANN):
                return self.model.forward_features(x)
            return _sequential_features(self.model, x)
        out, values = self.model.run(x, record=True)
        feats = {k: v.float().mean(0) for k, v in values.items() if k != "input"}
        return self.model.logits(out), feats

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        if self.kind == "snn":
            x = self.shape_input(x)
            return torch.cat([self.model.logits(self.model(x[i:i + batch_size]))
                              for i in range(0, len(x), batch_size)])
        return torch.cat([self.forward_features(x[i:i + batch_size])[0]
                          for i in range(0, len(x), batch_size)])

    def hint_layer(self) -> str:
        """Default hint layer: the last hidden spiking layer (SNN) or activation (ANN)."""
        if self.kind == "ann":
            if isinstance(self.model, annlib.ANN):
                return self.model.hint_layer()
            names = [n for n, m in self.model.named_children() if not isinstance(m, (nn.Linear, nn.Dropout, nn.Flatten))]
            return names[-1] if names else "output"
        return default_hint_layer(self.model.graph)

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        _, feats = self.forward_features(torch.zeros(1, *self.input_shape))
        return {k: tuple(v.shape[1:]) for k, v in feats.items()}

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((self.logits(x).argmax(-1) == y).float().mean())


def _sequential_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits, activations by child name) of a sequential model, or no features otherwise."""
    if not isinstance(model, nn.Sequential):
        return model(x), {}
    feats = {}
    for name, layer in model.named_children():
        x = layer(x)
        feats[name] = x
    return x, feats


def default_hint_layer(graph: ir.Graph) -> str:
    """The last spiking layer before the output (the output itself if there is none)."""
    lifs = [n.name for n in graph.nodes if n.kind == "lif" and n is not graph.output]
    return lifs[-1] if lifs else graph.output.name


def as_teacher(teacher: Any) -> Teacher:
    """A :class:`Teacher` from a path, a Graph, a Teacher, a SpikingNet or a torch ANN
    (a :class:`deploy.training.ann.ANN`, or any module with an ``input_shape`` attribute)."""
    if isinstance(teacher, Teacher):
        return teacher
    if isinstance(teacher, (str, Path)):
        return load_teacher(teacher)
    if isinstance(teacher, ir.Graph):
        return Teacher(SpikingNet(teacher), teacher.name)
    if isinstance(teacher, nn.Module):
        return Teacher(teacher)
    raise DeployError(f"teacher must be a checkpoint path, an ANN or a SpikingNet, "
                      f"got {type(teacher).__name__}")


def load_teacher(path: str | Path) -> Teacher:
    """Load a teacher checkpoint: ``neurodeploy-ann`` or a native ``neurodeploy-snn``."""
    doc = native.read_checkpoint(path)
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt == annlib.FORMAT:
        return Teacher(annlib.from_document(doc, str(path)), str(path))
    if fmt == native.FORMAT:
        return Teacher(SpikingNet(native.from_document(doc, str(path))), str(path))
    raise ModelError(f"{path}: not a teacher checkpoint (format {fmt!r}; expected "
                     f"{annlib.FORMAT!r} or {native.FORMAT!r})")
