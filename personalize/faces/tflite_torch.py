"""Run a TFLite flatbuffer as a differentiable PyTorch module.

Why: the re-enactment losses need MediaPipe's landmarks *with gradients* w.r.t. the image, and
MediaPipe's own runtime gives none. The mediapipe wheel ships the `.tflite` graphs, so we parse
them at run time (with the `tflite` flatbuffer package) and replay every operator with torch ops.
Nothing converted is stored in the repository; the weights always come from the installed wheel.

Layout: TFLite is NHWC; torch convolutions want NCHW. Every 4-D activation is kept NCHW inside
this module and converted back to NHWC only where an operator's semantics depend on the layout
(RESHAPE, STRIDED_SLICE) and at the graph outputs. Constant tensors (weights) are dequantized
(float16 -> float32) and re-laid-out once, at construction.

Supported builtin operators: CONV_2D, DEPTHWISE_CONV_2D, ADD, MUL, RELU, PRELU, MAX_POOL_2D, PAD,
RESHAPE, STRIDED_SLICE, CONCATENATION, DEQUANTIZE (folded), plus caller-supplied CUSTOM ops.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TFLiteOp", "TFLiteGraph", "TFLiteModule", "load_graph", "UnsupportedOperator"]


class UnsupportedOperator(RuntimeError):
    """The graph holds an operator this converter does not implement."""


_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}


@dataclass
class TFLiteOp:
    """One operator: its name (builtin name or 'CUSTOM:<code>'), tensor ids and parsed options."""

    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    """The parts of a TFLite model this converter needs (first subgraph only)."""

    path: Path
    sha256: str
    tensor_names: list[str]
    tensor_shapes: list[tuple[int, ...]]
    constants: dict[int, np.ndarray]
    ops: list[TFLiteOp]
    inputs: list[int]
    outputs: list[int]

    def tensor_id(self, name: str) -> int:
        return self.tensor_names.index(name)


def _builtin_names() -> dict[int, str]:
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _parse_options(op: Any, name: str) -> dict[str, Any]:
    """Read the builtin options each supported operator needs, as plain Python values."""
    import tflite

    table = op.BuiltinOptions()
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        cls = tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions
        o = cls()
        o.Init(table.Bytes, table.Pos)
        out = {
            "padding": o.Padding(),
            "stride": (o.StrideH(), o.StrideW()),
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "act": o.FusedActivationFunction(),
        }
        if name == "DEPTHWISE_CONV_2D":
            out["depth_multiplier"] = o.DepthMultiplier()
        return out
    if name == "MAX_POOL_2D":
        o = tflite.Pool2DOptions()
        o.Init(table.Bytes, table.Pos)
        return {
            "padding": o.Padding(),
            "stride": (o.StrideH(), o.StrideW()),
            "kernel": (o.FilterHeight(), o.FilterWidth()),
            "act": o.FusedActivationFunction(),
        }
    if name in ("ADD", "MUL"):
        if table is None:
            return {"act": 0}
        o = tflite.AddOptions() if name == "ADD" else tflite.MulOptions()
        o.Init(table.Bytes, table.Pos)
        return {"act": o.FusedActivationFunction()}
    if name == "CONCATENATION":
        o = tflite.ConcatenationOptions()
        o.Init(table.Bytes, table.Pos)
        return {"axis": o.Axis(), "act": o.FusedActivationFunction()}
    if name == "STRIDED_SLICE":
        o = tflite.StridedSliceOptions()
        o.Init(table.Bytes, table.Pos)
        return {
            "begin_mask": o.BeginMask(),
            "end_mask": o.EndMask(),
            "shrink_axis_mask": o.ShrinkAxisMask(),
            "ellipsis_mask": o.EllipsisMask(),
            "new_axis_mask": o.NewAxisMask(),
        }
    return {}


def load_graph(path: str | Path) -> TFLiteGraph:
    """Parse a `.tflite` file into a :class:`TFLiteGraph` (tensor metadata, constants, ops)."""
    import tflite
    from flatbuffers import flexbuffers

    path = Path(path)
    data = path.read_bytes()
    model = tflite.Model.GetRootAsModel(data, 0)
    names = _builtin_names()
    codes: list[str] = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == tflite.BuiltinOperator.CUSTOM:
            codes.append("CUSTOM:" + oc.CustomCode().decode())
        else:
            codes.append(names.get(code, str(code)))
    g = model.Subgraphs(0)
    tnames, tshapes, consts = [], [], {}
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        tnames.append(t.Name().decode())
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        tshapes.append(shape)
        buf = model.Buffers(t.Buffer())
        if buf is not None and buf.DataLength() > 0:
            dtype = _NUMPY_TYPES.get(t.Type())
            if dtype is None:
                raise UnsupportedOperator(f"tensor {tnames[-1]!r} has unsupported type {t.Type()}")
            raw = buf.DataAsNumpy().tobytes()
            consts[i] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    ops = []
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        name = codes[op.OpcodeIndex()]
        opts = _parse_options(op, name)
        if name.startswith("CUSTOM:") and op.CustomOptionsLength() > 0:
            opts = dict(flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes()))
        ops.append(
            TFLiteOp(name, [int(i) for i in op.InputsAsNumpy()], [int(i) for i in op.OutputsAsNumpy()], opts)
        )
    return TFLiteGraph(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        tensor_names=tnames,
        tensor_shapes=tshapes,
        constants=consts,
        ops=ops,
        inputs=[int(i) for i in g.InputsAsNumpy()],
        outputs=[int(i) for i in g.OutputsAsNumpy()],
    )


# ---------------------------------------------------------------------------------------------
# helpers

def _activation(x: torch.Tensor, act: int) -> torch.Tensor:
    # tflite ActivationFunctionType: 0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6, 4 TANH
    if act == 0:
        return x
    if act == 1:
        return F.relu(x)
    if act == 2:
        return x.clamp(-1.0, 1.0)
    if act == 3:
        return x.clamp(0.0, 6.0)
    if act == 4:
        return torch.tanh(x)
    raise UnsupportedOperator(f"fused activation {act}")


def _same_pad(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow SAME padding: the extra pixel (odd total) goes after, unlike torch's symmetric."""
    eff = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _pad_same_2d(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    ph = _same_pad(x.shape[2], kernel[0], stride[0], dilation[0])
    pw = _same_pad(x.shape[3], kernel[1], stride[1], dilation[1])
    if ph == (0, 0) and pw == (0, 0):
        return x
    return F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=value)


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x


CustomOp = Callable[["TFLiteModule", TFLiteOp, list[torch.Tensor]], torch.Tensor]


class TFLiteModule(nn.Module):
    """Replays a :class:`TFLiteGraph` with torch ops; differentiable w.r.t. its inputs.

    forward(*inputs) takes the graph inputs in TFLite layout (NHWC for images, any batch N) and
    returns a dict {output tensor name: tensor in TFLite layout (batch N)}.
    `custom_ops` maps 'CUSTOM:<code>' to a function (module, op, input tensors) -> output; 4-D
    inputs reach it NCHW and a 4-D result must be NCHW too.
    """

    def __init__(self, graph: TFLiteGraph, custom_ops: dict[str, CustomOp] | None = None,
                 extra_outputs: list[str] | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.custom_ops = dict(custom_ops or {})
        self._const_key: dict[int, str] = {}
        self.output_ids = list(graph.outputs)
        for name in extra_outputs or []:
            self.output_ids.append(graph.tensor_id(name))
        consts = {i: a for i, a in graph.constants.items()}
        self.ops: list[TFLiteOp] = []
        for op in graph.ops:
            if op.name == "DEQUANTIZE" and op.inputs[0] in consts:
                consts[op.outputs[0]] = consts[op.inputs[0]].astype(np.float32)
                continue  # folded at load time
            self.ops.append(op)
        for op in self.ops:
            handler = getattr(self, "_op_" + op.name, None)
            if handler is None and op.name not in self.custom_ops:
                raise UnsupportedOperator(f"{graph.path.name}: operator {op.name} is not supported")
        used = {i for op in self.ops for i in op.inputs if i >= 0}
        for i in sorted(used & consts.keys()):
            self._register_const(i, consts[i])

    # -- constants -------------------------------------------------------------------------
    def _register_const(self, tid: int, arr: np.ndarray) -> None:
        """Store a constant in the layout its consumer wants (conv weights NCHW-style, etc.)."""
        consumers = [op for op in self.ops if tid in op.inputs]
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if t.is_floating_point():
            t = t.float()
        kinds = {(op.name, op.inputs.index(tid)) for op in consumers}
        if kinds == {("CONV_2D", 1)}:
            t = t.permute(0, 3, 1, 2).contiguous()  # [O,KH,KW,I] -> [O,I,KH,KW]
        elif kinds == {("DEPTHWISE_CONV_2D", 1)}:
            t = t.permute(3, 0, 1, 2).contiguous()  # [1,KH,KW,C*M] -> [C*M,1,KH,KW]
        elif kinds == {("PRELU", 1)}:
            t = t.reshape(1, -1, 1, 1) if t.dim() == 3 else t
        elif t.dim() == 4 and any(op.name in ("ADD", "MUL") for op in consumers):
            t = to_nchw(t)
        key = f"c{tid}"
        self.register_buffer(key, t, persistent=False)
        self._const_key[tid] = key

    def const(self, tid: int) -> torch.Tensor:
        return getattr(self, self._const_key[tid])

    def const_numpy(self, tid: int) -> np.ndarray:
        return self.graph.constants[tid]

    # -- execution -------------------------------------------------------------------------
    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        values: dict[int, torch.Tensor] = {}
        for tid, x in zip(self.graph.inputs, inputs):
            x = to_nchw(x)
            if x.dim() == 4:  # NHWC memory (channels_last) is the faster path on CPU (oneDNN)
                x = x.contiguous(memory_format=torch.channels_last)
            values[tid] = x

        def get(tid: int) -> torch.Tensor:
            if tid in values:
                return values[tid]
            return self.const(tid)

        for op in self.ops:
            args = [get(i) for i in op.inputs if i >= 0]
            if op.name.startswith("CUSTOM:"):
                out = self.custom_ops[op.name](self, op, args)
            else:
                out = getattr(self, "_op_" + op.name)(op, args)
            values[op.outputs[0]] = out
        return {self.graph.tensor_names[i]: to_nhwc(values[i]) for i in self.output_ids}

    # -- builtin operators (4-D tensors NCHW) ----------------------------------------------
    @staticmethod
    def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, o: dict[str, Any],
              groups: int) -> torch.Tensor:
        pad: tuple[int, int] | int = 0
        if o["padding"] == 0:  # SAME
            ph = _same_pad(x.shape[2], w.shape[2], o["stride"][0], o["dilation"][0])
            pw = _same_pad(x.shape[3], w.shape[3], o["stride"][1], o["dilation"][1])
            if ph[0] == ph[1] and pw[0] == pw[1]:
                pad = (ph[0], pw[0])  # symmetric: let the convolution pad (no copy)
            else:
                x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        y = F.conv2d(x, w, b, stride=o["stride"], padding=pad, dilation=o["dilation"], groups=groups)
        return _activation(y, o["act"])

    def _op_CONV_2D(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        return self._conv(a[0], a[1], a[2] if len(a) > 2 else None, op.options, 1)

    def _op_DEPTHWISE_CONV_2D(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        return self._conv(a[0], a[1], a[2] if len(a) > 2 else None, op.options, a[0].shape[1])

    def _op_MAX_POOL_2D(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        x = a[0]
        o = op.options
        if o["padding"] == 0:
            x = _pad_same_2d(x, o["kernel"], o["stride"], (1, 1), value=float("-inf"))
        return _activation(F.max_pool2d(x, o["kernel"], o["stride"]), o["act"])

    def _op_ADD(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        return _activation(a[0] + a[1], op.options.get("act", 0))

    def _op_MUL(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        return _activation(a[0] * a[1], op.options.get("act", 0))

    def _op_RELU(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        return F.relu(a[0])

    def _op_PRELU(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        x, alpha = a
        if x.dim() == 4 and alpha.dim() == 4 and alpha.numel() == x.shape[1]:
            return F.prelu(x, alpha.reshape(-1))
        return torch.where(x >= 0, x, x * alpha)

    def _op_PAD(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        x = a[0]
        pads = self.const_numpy(op.inputs[1]).astype(int)  # [rank, 2] in NHWC order
        if x.dim() != 4:
            spec: list[int] = []
            for before, after in pads[::-1]:
                spec += [int(before), int(after)]
            return F.pad(x, spec)
        if pads[0].any():
            raise UnsupportedOperator("PAD along the batch axis")
        (hb, ha), (wb, wa), (cb, ca) = pads[1], pads[2], pads[3]
        return F.pad(x, (int(wb), int(wa), int(hb), int(ha), int(cb), int(ca)))

    def _target_shape(self, op: TFLiteOp, batch: int) -> list[int]:
        shape = list(self.graph.tensor_shapes[op.outputs[0]])
        shape[0] = batch
        return shape

    def _op_RESHAPE(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        x = to_nhwc(a[0])
        y = x.reshape(self._target_shape(op, x.shape[0]))
        return to_nchw(y)

    def _op_CONCATENATION(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        xs = [to_nhwc(t) for t in a]
        y = torch.cat(xs, dim=op.options["axis"])
        return to_nchw(_activation(y, op.options["act"]))

    def _op_STRIDED_SLICE(self, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
        x = to_nhwc(a[0])
        o = op.options
        if o["ellipsis_mask"] or o["new_axis_mask"]:
            raise UnsupportedOperator("STRIDED_SLICE with ellipsis/new-axis masks")
        begin = self.const_numpy(op.inputs[1]).tolist()
        end = self.const_numpy(op.inputs[2]).tolist()
        strides = self.const_numpy(op.inputs[3]).tolist()
        index: list[Any] = []
        for d in range(x.dim()):
            b = None if (o["begin_mask"] >> d) & 1 else begin[d]
            e = None if (o["end_mask"] >> d) & 1 else end[d]
            if d == 0:  # the graph was traced with batch 1; keep the whole batch
                b, e = None, None
            if (o["shrink_axis_mask"] >> d) & 1:
                index.append(begin[d])
            else:
                index.append(slice(b, e, strides[d]))
        return to_nchw(x[tuple(index)])
