"""Directions: published files in every shape, exact application, projection into P, storage."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from editing.directions import (Direction, anchor_basis, apply_direction, apply_edits,
                                edit_fraction_inside_hull, layer_mask, list_directions, load_direction,
                                make_ws_edit, parse_edit, project_direction, read_direction_file,
                                reliability, save_direction, validate_direction)
from personalize.errors import UserError
from tests.conftest import MEDIA

DIRS = MEDIA / "directions"


@pytest.mark.parametrize("name, rows", [("age", 1), ("smile", 1), ("pose", 18)])
def test_published_directions_load(name: str, rows: int) -> None:
    vec = read_direction_file(DIRS / f"{name}.pt", w_dim=512, num_ws=18)
    raw = torch.load(DIRS / f"{name}.pt", map_location="cpu", weights_only=True)
    assert vec.shape == (rows, 512) and vec.dtype == torch.float32
    assert torch.equal(vec.reshape(-1), raw.reshape(-1).float())


@pytest.mark.parametrize("shape", [(512,), (1, 512), (1, 18, 512), (18, 512)])
def test_every_shape_from_npy_and_pt(tmp_path, shape) -> None:
    data = torch.randn(shape)
    np.save(tmp_path / "d.npy", data.numpy())
    torch.save(data, tmp_path / "d.pt")
    for file in ("d.npy", "d.pt"):
        vec = read_direction_file(tmp_path / file, w_dim=512, num_ws=18)
        assert vec.shape[-1] == 512 and vec.shape[0] in (1, 18)
        assert torch.equal(vec.reshape(-1), data.reshape(-1))


def test_bad_directions_are_rejected(tmp_path) -> None:
    np.save(tmp_path / "wrong_dim.npy", np.ones(256, np.float32))
    with pytest.raises(UserError, match="dimension 256"):
        read_direction_file(tmp_path / "wrong_dim.npy", w_dim=512)
    bad = np.ones(512, np.float32)
    bad[3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(UserError, match="NaN"):
        read_direction_file(tmp_path / "nan.npy", w_dim=512)
    np.save(tmp_path / "layers.npy", np.ones((1, 14, 512), np.float32))
    with pytest.raises(UserError, match="14 layers"):
        read_direction_file(tmp_path / "layers.npy", w_dim=512, num_ws=18)
    np.save(tmp_path / "zero.npy", np.zeros(512, np.float32))
    with pytest.raises(UserError, match="zeros"):
        read_direction_file(tmp_path / "zero.npy")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="could not be read"):
        read_direction_file(tmp_path / "junk.pt")
    # a pickle that would run code must not load (weights_only)
    torch.save({"f": print}, tmp_path / "code.pt", _use_new_zipfile_serialization=True)
    with pytest.raises(UserError):
        read_direction_file(tmp_path / "code.pt")
    with pytest.raises(UserError, match="unsupported"):
        read_direction_file(_touch(tmp_path / "a.txt"))


def _touch(path):
    path.write_text("x")
    return path


def test_apply_is_exact_and_reversible() -> None:
    g = torch.Generator().manual_seed(1)
    ws = torch.randn(7, 18, 512, generator=g)
    d = Direction("smile", validate_direction(torch.randn(1, 512, generator=g)))
    assert torch.equal(apply_direction(ws, d, 0.0), ws)
    edited = apply_direction(ws, d, 2.5)
    assert torch.allclose(edited - ws, (2.5 * d.vector).expand(7, 18, 512), atol=1e-5)
    # summed edits cancel exactly
    assert torch.equal(apply_edits(ws, [(d, 2.5), (d, -2.5)]), ws)
    # sequential +s then -s comes back to within one float32 ulp of the edited values
    back = apply_direction(edited, d, -2.5)
    ulp = torch.finfo(torch.float32).eps * edited.abs().clamp_min(1.0)
    assert bool(((back - ws).abs() <= ulp).all())
    assert not torch.equal(edited, ws)
    # the input track is never modified in place
    ws_copy = ws.clone()
    apply_direction(ws, d, 3.0)
    assert torch.equal(ws, ws_copy)


def test_layer_range_and_per_layer_direction() -> None:
    ws = torch.zeros(3, 18, 512)
    d = Direction("pose", validate_direction(torch.ones(1, 18, 512)))
    out = apply_direction(ws, d, 1.0, layers=(0, 4))
    assert torch.equal(out[:, :4], torch.ones(3, 4, 512))
    assert torch.equal(out[:, 4:], torch.zeros(3, 14, 512))
    assert layer_mask(18, slice(8, None)).sum() == 10
    with pytest.raises(UserError):
        layer_mask(18, [20])
    with pytest.raises(UserError):
        apply_direction(ws, Direction("x", torch.ones(1, 256)), 1.0)


def test_projection_inside_and_orthogonal() -> None:
    g = torch.Generator().manual_seed(0)
    anchors = torch.zeros(6, 32)
    anchors[:, :5] = torch.randn(6, 5, generator=g)  # the anchors' differences span a subspace of dims 0..4
    anchors += torch.randn(32, generator=g)  # shared offset: the span is of differences, not of points
    inside = (anchors[1] - anchors[4]) * 3 + (anchors[2] - anchors[0])
    projected, rel = project_direction(inside, anchors)
    assert rel == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(projected[0], inside, atol=1e-5)
    outside = torch.zeros(32)
    outside[20] = 1.0
    assert reliability(outside, anchors) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(UserError, match="orthogonal"):
        project_direction(outside, anchors)
    mixed = inside / inside.norm() + outside  # 45 degrees out of the span
    projected, rel = project_direction(mixed, anchors)
    assert rel == pytest.approx(np.cos(np.pi / 4), abs=1e-5)
    assert projected.norm() == pytest.approx(float(mixed.norm()), rel=1e-5)
    assert anchor_basis(anchors).shape == (32, 5)


def _coefficients(ws: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Exact coefficients of codes over linearly independent anchors (for checking, float64)."""
    return torch.linalg.lstsq(anchors.double().T, ws.double().reshape(-1, anchors.shape[1]).T).solution.T


def test_edits_stay_inside_the_dilated_hull() -> None:
    """An edit that would carry a code out of P_beta (a coefficient below -beta) is shortened to
    its boundary, per code; edits that stay inside are applied exactly (MyStyle, paper Eq. 6)."""
    beta = 0.02
    anchors = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    d = Direction("towards-1", validate_direction(anchors[1] - anchors[0]))
    at_anchor0 = anchors[0][None, None].expand(1, 3, 16).clone()  # coefficients (1, 0, 0, 0, 0)
    middle = (0.5 * anchors[0] + 0.5 * anchors[2])[None, None].expand(1, 3, 16)  # (0.5, 0, 0.5, 0, 0)
    track = torch.cat([at_anchor0, middle])
    edit = make_ws_edit([(d, 3.0)], anchors=anchors, beta=beta)
    out = edit(track)
    coeff = _coefficients(out, anchors).reshape(2, 3, 5)
    # coefficient 0 falls by the strength: from 1 it may go to -beta (t = 1.02 / 3), from 0.5 to -beta
    assert torch.allclose(coeff[0, :, 0], torch.full((3,), -beta, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(coeff[0, :, 1], torch.full((3,), 1 + beta, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(coeff[1, :, 0], torch.full((3,), -beta, dtype=torch.float64), atol=1e-4)
    assert float(coeff.min()) >= -beta - 1e-4
    kept = edit_fraction_inside_hull(track, out[0] - track[0], anchors, beta)  # from the edited: nothing left
    assert kept.shape == (2,)
    assert edit.report.codes == 2 and edit.report.shortened == 2
    assert edit.report.min_kept == pytest.approx(0.52 / 3, abs=1e-4)
    assert "2 of 2 codes were shortened" in edit.report.summary()
    # a small edit is applied exactly, as without anchors
    small = make_ws_edit([(d, 0.5)], anchors=anchors, beta=beta)
    assert torch.equal(small(track), apply_edits(track, [(d, 0.5)]))
    assert small.report.shortened == 0
    # without the anchors nothing is judged (the old behaviour)
    assert torch.equal(make_ws_edit([(d, 3.0)])(track), apply_edits(track, [(d, 3.0)]))


def test_a_coefficient_already_below_the_floor_may_not_fall_further() -> None:
    beta = 0.02
    anchors = torch.randn(4, 12, generator=torch.Generator().manual_seed(1))
    outside = (1.05 * anchors[0] - 0.05 * anchors[1])[None, None]  # coefficient 1 is -0.05 < -beta
    lowers_1 = anchors[0] - anchors[1]
    other = anchors[2] - anchors[3]
    assert float(edit_fraction_inside_hull(outside, 0.1 * lowers_1[None], anchors, beta)) == 0.0
    assert float(edit_fraction_inside_hull(outside, 0.01 * other[None], anchors, beta)) == pytest.approx(1.0)
    assert float(edit_fraction_inside_hull(outside, 0.1 * other[None], anchors, beta)) == pytest.approx(0.2, abs=1e-4)
    raises_1 = float(edit_fraction_inside_hull(outside, -0.1 * lowers_1[None], anchors, beta))
    assert raises_1 == pytest.approx(1.0)


def test_save_list_load_and_no_overwrite(tmp_path) -> None:
    d = Direction("smile", validate_direction(torch.randn(512)), {"source": "imported"})
    save_direction(tmp_path, d)
    with pytest.raises(UserError, match="already exists"):
        save_direction(tmp_path, Direction("smile", torch.ones(1, 512)))
    loaded = load_direction(tmp_path, "smile")
    assert torch.equal(loaded.vector, d.vector) and loaded.meta["source"] == "imported"
    meta = json.loads((tmp_path / "smile.json").read_text())
    assert meta["shape"] == [1, 512]
    save_direction(tmp_path, Direction("smile", torch.ones(1, 512)), force=True)
    assert torch.equal(load_direction(tmp_path, "smile").vector, torch.ones(1, 512))
    assert [x.name for x in list_directions(tmp_path)] == ["smile"]
    with pytest.raises(UserError, match="Available: smile"):
        load_direction(tmp_path, "age")
    with pytest.raises(UserError):
        save_direction(tmp_path, Direction("../evil", torch.ones(1, 512)))


def test_parse_edit() -> None:
    assert parse_edit("smile=1.5") == ("smile", 1.5)
    assert parse_edit("age=-1") == ("age", -1.0)
    for bad in ("smile", "smile=abc", "=1", "x=nan"):
        with pytest.raises(UserError):
            parse_edit(bad)
