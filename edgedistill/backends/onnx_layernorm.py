"""LayerNorms exported as float math (below opset 17), found in an ONNX graph by their structure.

torch writes nn.LayerNorm below opset 17 as ReduceMean -> Sub -> Pow -> ReduceMean -> Add -> Sqrt
-> Div -> Mul -> Add; TensorRT's FP16 pins (trt_precision.py) need those nodes whatever module
scope names them (a token head `/token_head/token_head.0/...` has no "norm" in it).
"""

from __future__ import annotations

from collections import defaultdict

import onnx

from .trt_onnx import graph_constants, iter_nodes

# Nodes that leave a value as it is for matching (an fp16 export casts around the norm math);
# `source` also looks through DequantizeLinear, which feeds a QDQ model's norm its input.
PASS_THROUGH = frozenset({"Cast", "Identity"})


class _Dataflow:
    """Producers and consumers of every tensor, looking through casts."""

    def __init__(self, model: onnx.ModelProto):
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in iter_nodes(model.graph):
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.constants = set(graph_constants(model))

    def source(self, tensor: str) -> str:
        node = self.producer.get(tensor)
        while node is not None and (node.op_type in PASS_THROUGH or node.op_type == "DequantizeLinear"):
            tensor = node.input[0]
            node = self.producer.get(tensor)
        return tensor

    def is_constant(self, tensor: str) -> bool:
        return self.source(tensor) in self.constants

    def users(self, tensor: str, op_type: str) -> list[onnx.NodeProto]:
        found, pending = [], [tensor]
        while pending:
            for node in self.consumers.get(pending.pop(), ()):
                if node.op_type in PASS_THROUGH:
                    pending.extend(node.output)
                elif node.op_type == op_type:
                    found.append(node)
        return found

    def by_constant(self, tensor: str, op_type: str) -> onnx.NodeProto | None:
        """The `tensor (op) constant` node after `tensor`: a LayerNorm's affine weight or bias."""
        for node in self.users(tensor, op_type):
            others = [i for i in node.input if self.source(i) != self.source(tensor)]
            if len(node.input) == 2 and len(others) == 1 and self.is_constant(others[0]):
                return node
        return None


def _normalise(flow: _Dataflow, centred: str, sqrt: onnx.NodeProto) -> list[onnx.NodeProto]:
    """(x - mean) / sqrt(var + eps), as a Div or as Reciprocal then Mul."""
    std = sqrt.output[0]
    for div in flow.users(std, "Div"):
        if flow.source(div.input[0]) == centred and flow.source(div.input[1]) == std:
            return [div]
    for recip in flow.users(std, "Reciprocal"):
        for mul in flow.users(recip.output[0], "Mul"):
            if centred in {flow.source(i) for i in mul.input}:
                return [recip, mul]
    return []


def _after_centring(flow: _Dataflow, sub: onnx.NodeProto) -> list[onnx.NodeProto]:
    """The variance, scale and affine nodes that follow `sub` = x - mean, or [] if they do not."""
    centred = sub.output[0]
    squares = [n for n in flow.users(centred, "Pow") if flow.source(n.input[0]) == centred and flow.is_constant(n.input[1])]
    squares += [n for n in flow.users(centred, "Mul") if {flow.source(i) for i in n.input} == {centred}]
    for square in squares:
        for variance in flow.users(square.output[0], "ReduceMean"):
            eps = flow.by_constant(variance.output[0], "Add")
            if eps is None:
                continue
            for sqrt in flow.users(eps.output[0], "Sqrt"):
                scale = _normalise(flow, centred, sqrt)
                if not scale:
                    continue
                found = [square, variance, eps, sqrt, *scale]
                for op_type in ("Mul", "Add"):  # elementwise affine: * weight, + bias
                    affine = flow.by_constant(found[-1].output[0], op_type)
                    if affine is not None:
                        found.append(affine)
                return found
    return []


def decomposed_layernorms(model: onnx.ModelProto) -> list[list[onnx.NodeProto]]:
    """The nodes of each LayerNorm exported as float math, matched by structure, not by name:
    mean = ReduceMean(x); d = x - mean; var = ReduceMean(d^2); d / sqrt(var + eps) [* w] [+ b]."""
    flow = _Dataflow(model)
    found = []
    for mean in iter_nodes(model.graph):
        if mean.op_type != "ReduceMean":
            continue
        x = flow.source(mean.input[0])
        for sub in flow.users(mean.output[0], "Sub"):
            if len(sub.input) == 2 and flow.source(sub.input[0]) == x and flow.source(sub.input[1]) == mean.output[0]:
                rest = _after_centring(flow, sub)
                if rest:
                    found.append([mean, sub, *rest])
    return found
