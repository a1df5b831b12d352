"""Clustered hint selection: linear CKA against its defining properties, k-means picks the
designed centre layers, and auto hints on a real teacher are valid layer pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.training.distill.hint_selection import (
    auto_hint_pairs,
    cluster_layers,
    linear_cka,
    select_hints,
)


def test_linear_cka_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=g)
    assert linear_cka(x, x) == pytest.approx(1.0)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0)      # orthogonal, isotropic scale, shift
    y = torch.randn(50, 6, generator=g)
    # hand formula: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on centred data
    xc, yc = (x - x.mean(0)).double(), (y - y.mean(0)).double()
    ref = (yc.T @ xc).pow(2).sum() / ((xc.T @ xc).pow(2).sum().sqrt() * (yc.T @ yc).pow(2).sum().sqrt())
    assert linear_cka(x, y) == pytest.approx(float(ref))
    assert 0.0 <= linear_cka(x, y) < 1.0


def test_clustering_picks_designed_centres():
    # three groups of layers; in each, the designed centre sits exactly at the group mean
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 5.0], [0.0, 10.0, -5.0]])
    offsets = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.8, 0.0], [0.0, -0.8, 0.0]])
    rows, names, designed = [], [], []
    for c, centre in enumerate(centres):
        for j, off in enumerate(offsets):
            names.append(f"g{c}_{j}")
            rows.append(centre + off)
            if j == 0:
                designed.append(f"g{c}_0")
    order = np.random.default_rng(0).permutation(len(names))
    names = [names[i] for i in order]
    picks = cluster_layers(names, np.asarray(rows)[order], k=3)
    assert sorted(picks) == sorted(designed)
    assert picks == [n for n in names if n in designed]          # in network order


def test_auto_hints_on_a_teacher(digits_split):
    from deploy.training.distill.distill import build_student
    from deploy.training.distill.teachers import load_teacher

    teacher = load_teacher("examples/models/digits_ann.pt")
    student = build_student("examples/students/digits_student.yaml")
    x = digits_split.x_train[:128]
    picks = select_hints(teacher, x, 3)
    shapes = teacher.feature_shapes()
    assert len(picks) == 3 and all(p in shapes for p in picks)
    pairs = auto_hint_pairs(teacher, student, x)
    assert [s for s, _ in pairs] == ["lif1", "lif4"]
    assert [t for _, t in pairs] == sorted((t for _, t in pairs), key=list(shapes).index)


def test_api_hints_auto_records_the_clustered_pair(tmp_path, digits_split):
    from deploy.api.distill import distill
    from deploy.training.distill.distill import build_student
    from deploy.training.distill.hint_selection import auto_hint_layers
    from deploy.training.distill.teachers import load_teacher

    teacher, spec = "examples/models/digits_ann.pt", "examples/students/digits_student.yaml"
    _, meta = distill(teacher, spec, tmp_path / "s.pt", method="hint", hints="auto", epochs=1, progress=False)
    expect = auto_hint_layers(load_teacher(teacher), build_student(spec), digits_split.x_train[:256])
    assert meta["hint_layers"] == list(expect) and (tmp_path / "s.pt").is_file()


def test_api_hints_auto_needs_the_hint_method(tmp_path):
    from deploy.api.distill import distill
    from deploy.core.errors import DeployError

    with pytest.raises(DeployError, match="--hints auto"):
        distill("examples/models/digits_ann.pt", "examples/students/digits_student.yaml", tmp_path / "s.pt",
                method="kd", hints="auto", epochs=1)
    assert not (tmp_path / "s.pt").exists()


def test_cli_hints_option_reaches_the_api(tmp_path, capsys):
    from deploy.cli import main

    code = main(["distill", "examples/models/digits_ann.pt", "--student", "examples/students/digits_student.yaml",
                 "-o", str(tmp_path / "s.pt"), "--method", "kd", "--hints", "auto"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "--hints auto" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s.pt").exists()
