import json

import numpy as np
import pytest

from deploy.core import ir
from deploy.core.errors import ModelError


def small_graph() -> ir.Graph:
    rng = np.random.default_rng(0)
    return ir.Graph(input_shape=(1, 6, 6), timesteps=4, nodes=[
        ir.Conv2d("c1", ["input"], weight=rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
                  bias=np.zeros(4, np.float32), stride=1, padding=1),
        ir.Pool2d("p1", ["c1"], mode="avg", kernel_size=2, stride=2),
        ir.LIF("n1", ["p1"], beta=np.full(4, 0.5, np.float32), threshold=1.0),
        ir.Flatten("f", ["n1"]),
        ir.Linear("fc", ["f"], weight=rng.normal(size=(3, 36)).astype(np.float32)),
        ir.LIF("out", ["fc"], beta=0.9, threshold=0.5, reset="zero"),
    ])


def test_shape_inference_matches_hand_computation():
    shapes = small_graph().shapes()
    assert shapes["c1"] == (4, 6, 6)
    assert shapes["p1"] == (4, 3, 3)
    assert shapes["f"] == (36,)
    assert shapes["out"] == (3,)


def test_conv_shape_with_stride_and_dilation():
    node = ir.Conv2d("c", ["input"], weight=np.zeros((2, 3, 3, 3), np.float32), stride=2, padding=1, dilation=2)
    # (9 + 2 - 2*2 - 1) // 2 + 1 = 4
    assert node.out_shape([(3, 9, 9)]) == (2, 4, 4)


def test_json_round_trip_preserves_everything():
    g = small_graph()
    g2 = ir.Graph.from_json(g.to_json())
    assert [n.kind for n in g2.nodes] == [n.kind for n in g.nodes]
    np.testing.assert_array_equal(g2["fc"].weight, g["fc"].weight)
    np.testing.assert_array_equal(g2["n1"].beta, g["n1"].beta)
    assert g2["out"].reset == "zero" and g2["c1"].padding == (1, 1)
    assert g2.shapes() == g.shapes()
    json.loads(g.to_json())  # plain JSON


def test_memory_counts_sub_byte_precision():
    g = small_graph()
    g["fc"].precision = {"weight": 4}
    mem = g.memory_bytes()
    assert mem["fc"] == 3 * 36 * 4 / 8          # no bias
    assert mem["c1"] == (4 * 9 + 4) * 4          # float32 weight + bias


@pytest.mark.parametrize("mutate, message", [
    (lambda g: setattr(g["fc"], "weight", np.zeros((3, 35), np.float32)), "expects 35 inputs"),
    (lambda g: g["fc"].weight.__setitem__((0, 0), np.nan), "NaN or inf"),
    (lambda g: setattr(g["n1"], "threshold", -1.0), "threshold must be positive"),
    (lambda g: setattr(g["out"], "reset", "bogus"), "reset must be one of"),
    (lambda g: setattr(g["n1"], "beta", np.ones(5, np.float32)), "does not fit"),
    (lambda g: setattr(g["f"], "inputs", ["nowhere"]), "unknown input nowhere"),
    (lambda g: setattr(g, "timesteps", 0), "timesteps must be >= 1"),
])
def test_validation_names_the_problem(mutate, message):
    g = small_graph()
    mutate(g)
    with pytest.raises(ModelError, match=message):
        g.validate()


def test_unknown_layer_type_is_rejected():
    arch, tensors = small_graph().to_dict()
    arch["layers"][1]["type"] = "transformer"
    with pytest.raises(ModelError, match="unknown layer type 'transformer'"):
        ir.Graph.from_dict(arch, tensors)


def test_missing_tensor_is_rejected():
    arch, tensors = small_graph().to_dict()
    del tensors["fc.weight"]
    with pytest.raises(ModelError, match="missing tensor 'fc.weight'"):
        ir.Graph.from_dict(arch, tensors)
