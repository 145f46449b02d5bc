"""Caffe's prototxt, read and changed through protobuf (never by string edits): the solver with
overlays and key=value settings laid over it, and the blog net's one InnerProduct layer.

    read_solver(solver_file, overlays=(), settings=()) -> caffe_pb2.SolverParameter
    fc_layer(net) -> the net's InnerProduct LayerParameter
"""

from pathlib import Path

from google.protobuf import text_format

from linfool.core import caffe_env, cli


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


def read_solver(solver_file, overlays=(), settings=()):
    """Parse the solver prototxt, lay each overlay file over it, then apply 'key=value' settings
    (unknown keys and bad values are refused). Returns a caffe_pb2.SolverParameter."""
    solver = _caffe_pb2().SolverParameter()
    for path in (solver_file, *overlays):
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


def fc_layer(net):
    """The net's InnerProduct layer (the blog's one fully-connected layer)."""
    return next(layer for layer in net.layer if layer.type == "InnerProduct")
