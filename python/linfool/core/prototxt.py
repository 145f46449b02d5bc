"""Caffe's prototxt, read and changed through protobuf (never by string edits): the solver with
overlays and key=value settings laid over it, a net's classifier layer and its deploy net.

    read_solver(solver_file, overlays=(), settings=()) -> caffe_pb2.SolverParameter
    data_batch(net, 'TRAIN') -> images per iteration of its Data layers in that phase
    fc_layer(net) -> the net's last InnerProduct LayerParameter (the classifier: the blog's one layer)
    deploy_file(net_file) -> the deploy prototxt beside a train_val prototxt
    learned_layers(net_file) -> [(name, type)] of its layers with learned weights
    num_outputs(net_file), data_sources(net_file) -> its classes; the LMDBs its Data layers read
    read_net(net_file) / parse(text, "SolverParameter") -> a caffe_pb2 message; text(message) -> prototxt
The one module that parses or writes prototxt: every other reads and writes Caffe's files through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from linfool.core import caffe_env, cli, paths


class TrainConfigError(cli.UserError, ValueError):
    """A configuration Caffe would abort on; the message says what to fix, in one line."""


def _caffe_pb2():
    return caffe_env.import_caffe().proto.caffe_pb2


def _overlay(target, text):
    """Merge prototxt `text` over `target`: a field it names replaces the old value entirely
    (protobuf's own Merge would append to repeated fields such as test_iter)."""
    update = text_format.Parse(text, type(target)())
    for fd, value in update.ListFields():
        if fd.is_repeated:
            target.ClearField(fd.name)
            getattr(target, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(target, fd.name).CopyFrom(value)
        else:
            setattr(target, fd.name, value)


def read_solver(solver_file: str | Path, overlays: Iterable[str | Path] = (), settings: Iterable[str] = ()) -> Any:
    """Parse the solver prototxt, lay each overlay file over it, then apply 'key=value' settings
    (unknown keys and bad values are refused). Returns a caffe_pb2.SolverParameter."""
    solver = _caffe_pb2().SolverParameter()
    for path in (solver_file, *overlays):
        path = cli.user_path(path, "SOLVER/OVERLAY")
        if not Path(path).is_file() and not Path(path).is_absolute() and (paths.ROOT / path).is_file():
            path = paths.ROOT / path  # prototxt/solver_demo.prototxt, as recorded, from any folder
        if not Path(path).is_file():
            raise TrainConfigError(f"no solver file {path}")
        try:
            _overlay(solver, Path(path).read_text())
        except text_format.ParseError as err:
            raise TrainConfigError(f"{path}: {err}") from None
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or key not in solver.DESCRIPTOR.fields_by_name:
            raise TrainConfigError(f"--set {setting!r}: not a SolverParameter key=value")
        try:
            _overlay(solver, f"{key}: {value}")
        except text_format.ParseError as err:
            raise TrainConfigError(f"--set {setting!r}: {err}") from None
    return solver


def data_batch(net: Any, phase: str) -> int:
    """Images a net's Data layers give per iteration in `phase` ('TRAIN' or 'TEST'): the sum of
    their batch_size (the background rounds' mixed net has two)."""
    wanted = getattr(_caffe_pb2(), phase)
    return sum(
        layer.data_param.batch_size
        for layer in net.layer
        if layer.type == "Data" and layer.include and layer.include[0].phase == wanted
    )


def fc_layer(net: Any) -> Any:
    """The net's classifier: its last InnerProduct layer (the blog's net has only this one; the MLP's
    and the ConvNet's is the one with a num_output per class)."""
    return [layer for layer in net.layer if layer.type == "InnerProduct"][-1]


# Caffe's layer types that hold learned blobs (a snapshot's weights load into them by layer name).
_LEARNED = {
    "InnerProduct",
    "Convolution",
    "Deconvolution",
    "BatchNorm",
    "Scale",
    "Bias",
    "Embed",
    "PReLU",
    "RNN",
    "LSTM",
}


def learned_layers(net_file: str | Path) -> list[tuple[str, str]]:
    """The (name, type) of the layers with learned weights of a prototxt file, in order."""
    return [(layer.name, layer.type) for layer in read_net(net_file).layer if layer.type in _LEARNED]


ParseError = text_format.ParseError  # a prototxt that is not text protobuf of the message's type


def parse(text: str, message: str = "NetParameter") -> Any:
    """Prototxt `text` as a caffe_pb2 `message` ('NetParameter', 'SolverParameter'); ParseError if not."""
    return text_format.Parse(text, getattr(_caffe_pb2(), message)())


def read_net(net_file: str | Path) -> Any:
    """A net prototxt file as a caffe_pb2.NetParameter."""
    return parse(Path(net_file).read_text(), "NetParameter")


def text(message: Any) -> str:
    """A caffe_pb2 message as prototxt text (what Caffe's tools read)."""
    return text_format.MessageToString(message)


def num_outputs(net_file: str | Path) -> int:
    """The number of classes a net prototxt gives: its classifier's (fc_layer) num_output."""
    return fc_layer(read_net(net_file)).inner_product_param.num_output


def data_sources(net_file: str | Path) -> list[str]:
    """The LMDB folders a net prototxt's Data layers read, in order."""
    return [layer.data_param.source for layer in read_net(net_file).layer if layer.type == "Data"]


def deploy_file(net_file: str | Path) -> Path:
    """The deploy net of a train_val prototxt: the first of <name>deploy.prototxt beside a
    <name>train_val.prototxt, then prototxt/*deploy.prototxt, whose layers with learned weights have
    the names and types of the net's (so a snapshot's weights load by name); TrainConfigError when
    none has."""
    net_file = Path(net_file)
    body = learned_layers(net_file)
    beside = net_file.with_name(net_file.name.replace("train_val", "deploy"))
    candidates = ([beside] if beside != net_file and beside.is_file() else []) + sorted(
        paths.PROTOTXT.glob("*deploy.prototxt")
    )
    for candidate in candidates:
        if learned_layers(candidate) == body:
            return candidate
    raise TrainConfigError(
        f"no deploy net for {net_file.name}: put {beside.name if beside != net_file else '<name>deploy.prototxt'} "
        f"beside it with the same learned layers ({', '.join(name for name, _ in body)}) and an Input and a Softmax"
    )
