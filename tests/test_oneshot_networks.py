"""Our one-shot networks have exactly the official state_dict names and shapes (keys/*.json)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from optimize.nets.arcface import ArcFaceEncoder
from optimize.nets.deca import E_DETAIL_SIZE, DecaResnetEncoder
from optimize.nets.direction_matrix import DirectionMatrix
from optimize.nets.hypernet import HyperNetwork
from optimize.nets.stylegan2_rosinality import RosinalityGenerator
from personalize.encoders.e4e import Encoder4Editing
from personalize.stylegan2 import ops
from tests._oneshot_helpers import key_listing, shapes_of

CASES = [
    ("hyperreenact_generator", "g_ema", RosinalityGenerator),
    ("directions_generator", "g_ema (directions repo copy)", RosinalityGenerator),
    ("hyperreenact_hypernet", "hypernet", HyperNetwork),
    ("hyperreenact_e4e", "e4e", lambda: Encoder4Editing(256)),
    ("hyperreenact_arcface", "facenet", ArcFaceEncoder),
    ("hyperreenact_deca_E_flame", "E_flame", DecaResnetEncoder),
    ("directions", "E_detail", lambda: DecaResnetEncoder(E_DETAIL_SIZE)),
    ("directions", "A_matrix", DirectionMatrix),
]


@pytest.mark.parametrize("file,module,factory", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_state_dict_names_and_shapes_equal_the_official(file: str, module: str, factory) -> None:
    with torch.device("meta"):
        net = factory()
    expected = key_listing(file, module)["keys"]
    ours = shapes_of(net)
    assert sorted(set(ours) ^ set(expected)) == []
    assert ours == expected


def test_hypernet_shared_layers_share_one_parameter_set() -> None:
    with torch.device("meta"):
        net = HyperNetwork()
    shared = net.shared_weight_hypernet.w2
    for layer in (0, 2, 3, 5, 6, 8, 9):
        assert net.refinement_blocks[layer].hypernet.w2 is shared
    assert sum(1 for k in net.state_dict() if k.endswith("hypernet.w2")) == 8  # as the real file lists it


def test_e4e_has_18_styles_at_1024() -> None:
    with torch.device("meta"):
        e = Encoder4Editing(1024)
    assert len(e.styles) == 18 and "styles.17.linear.weight" in e.state_dict()


def _upfirdn2d_reference(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """upfirdn2d by its definition: zero-stuff by ``up``, pad, *convolve* (flipped kernel)."""
    n, c, h, w = x.shape
    y = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    y[:, :, ::up, ::up] = x
    y = F.pad(y, [pad[0], pad[1], pad[0], pad[1]])
    k = kernel.flip([0, 1])[None, None].expand(c, 1, -1, -1)
    return F.conv2d(y, k, groups=c)


def test_fir_steps_use_the_stored_kernel_as_a_convolution() -> None:
    """The goldens fill the blur buffers with random (asymmetric) kernels: our plain-torch FIR steps
    must convolve with exactly the stored kernel, like rosinality's upfirdn2d."""
    g = torch.Generator().manual_seed(0)
    kernel = torch.randn(4, 4, generator=g)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    k64 = kernel.double()
    # ToRGB skip: upfirdn2d(up=2, pad=(2, 1)) with the stored (already x4) kernel
    assert torch.allclose(ops.upsample2d(x, k64 / 4), _upfirdn2d_reference(x, k64, 2, (2, 1)), atol=1e-12)
    # upsampling conv: blur with pad (1, 1) after the transposed conv
    y = torch.randn(2, 3, 11, 11, generator=g, dtype=torch.float64)
    assert torch.allclose(ops.blur_after_upconv(y, k64 / 4), _upfirdn2d_reference(y, k64, 1, (1, 1)), atol=1e-12)
