"""The guarded entry points: where each library takes the file, and how it must be handed back.

Every wrapper funnels into :func:`guard.guarded`, so a loader whose format has no scanner yet still goes
through the same scan and picks up that scanner when it lands.
"""
from __future__ import annotations

import contextvars
import pickle
import _pickle

from . import guard, patches

_MISSING = object()
_in_find_class: contextvars.ContextVar[bool] = contextvars.ContextVar("mlguard_in_find_class", default=False)


def loader(entry: str, index: int, name: str, *, one_pickle: bool = False, bytes_only: bool = False,
           reopen=False):
    """A wrapt wrapper for a loader reading its source from argument ``index``/``name``.

    ``reopen``: True, or a predicate on (args, kwargs), when the loader must open the path itself.
    """
    def wrapper(wrapped, instance, args, kwargs):
        in_kwargs = name in kwargs
        value = kwargs[name] if in_kwargs else args[index] if len(args) > index else _MISSING
        if value is _MISSING:
            return wrapped(*args, **kwargs)

        def call(x):
            if in_kwargs:
                return wrapped(*args, **{**kwargs, name: x})
            return wrapped(*args[:index], x, *args[index + 1:], **kwargs)

        needs_path = reopen(args, kwargs) if callable(reopen) else reopen
        return guard.guarded(entry, value, call, one_pickle=one_pickle, bytes_only=bytes_only, reopen=needs_path)
    return wrapper


def _kwarg(name: str, index: int | None = None):
    """Predicate: the call sets ``name`` (keyword, or positional ``index``) to something truthy."""
    def given(args, kwargs) -> bool:
        if name in kwargs:
            return bool(kwargs[name])
        return index is not None and len(args) > index and bool(args[index])
    return given


# --------------------------------------------------------------------------- pickle

class Unpickler(_pickle.Unpickler):
    """``pickle.Unpickler`` while protected: ``load()`` scans the file from where it stands first."""

    def __init__(self, file, *args, **kwargs):
        super().__init__(file, *args, **kwargs)
        self._mlguard_init = (file, args, kwargs)

    def load(self):
        base = super()
        return _unpickler_load("pickle.Unpickler.load", self, lambda s, *a, **k: base.__init__(*a, **k), base.load)


Unpickler.__module__, Unpickler.__qualname__ = "pickle", "Unpickler"


def _unpickler_load(entry: str, unpickler, init, load):
    file, args, kwargs = unpickler._mlguard_init

    def call(f):
        if f is not file:  # a stream that had to be buffered: read the scanned copy from now on
            init(unpickler, f, *args, **kwargs)
            unpickler._mlguard_init = (f, args, kwargs)
        return load()
    return guard.guarded(entry, file, call, one_pickle=True)


def _py_init(wrapped, instance, args, kwargs):
    wrapped(*args, **kwargs)
    file = kwargs.get("file", args[0] if args else None)
    instance._mlguard_init = (file, args[1:], {k: v for k, v in kwargs.items() if k != "file"})


def _py_load(wrapped, instance, args, kwargs):
    if not hasattr(instance, "_mlguard_init"):  # built before protect(): find_class still checks it
        return wrapped(*args, **kwargs)
    return _unpickler_load("pickle._Unpickler.load", instance, pickle._Unpickler.__init__,
                           lambda: wrapped(*args, **kwargs))


def _py_find_class(wrapped, instance, args, kwargs):
    guard.check_global(*args[:2])
    token = _in_find_class.set(True)  # the audit event raised inside must not judge it twice
    try:
        return wrapped(*args, **kwargs)
    finally:
        _in_find_class.reset(token)


def audit_hook(event: str, args) -> None:
    """``sys.addaudithook`` hook: the ``pickle.find_class`` event is raised by both unpicklers."""
    if event == "pickle.find_class" and not _in_find_class.get():
        guard.check_global(*args)


def _pickle_module(mod) -> None:
    patches.wrap(mod, "load", loader("pickle.load", 0, "file", one_pickle=True), f"{mod.__name__}.load")
    patches.wrap(mod, "loads", loader("pickle.loads", 0, "data", one_pickle=True, bytes_only=True),
                 f"{mod.__name__}.loads")
    patches.replace(mod, "Unpickler", Unpickler, f"{mod.__name__}.Unpickler")
    if mod is pickle:
        patches.wrap(pickle._Unpickler, "__init__", _py_init, "pickle._Unpickler.__init__")
        patches.wrap(pickle._Unpickler, "load", _py_load, "pickle._Unpickler.load")
        patches.wrap(pickle._Unpickler, "find_class", _py_find_class, "pickle._Unpickler.find_class")


# --------------------------------------------------------------------------- libraries

def _torch(torch) -> None:
    load = loader("torch.load", 0, "f", reopen=_kwarg("mmap"))
    patches.wrap(torch, "load", load, "torch.load")
    patches.wrap(torch.serialization, "load", load, "torch.serialization.load")
    jit_load = loader("torch.jit.load", 0, "f")
    patches.wrap(torch.jit, "load", jit_load, "torch.jit.load")
    patches.wrap(torch.jit._serialization, "load", jit_load, "torch.jit._serialization.load")


def _numpy(np) -> None:
    patches.wrap(np, "load", loader("numpy.load", 0, "file", reopen=True), "numpy.load")


def _joblib(joblib) -> None:
    load = loader("joblib.load", 0, "filename", reopen=_kwarg("mmap_mode", 1))
    patches.wrap(joblib, "load", load, "joblib.load")
    patches.wrap(joblib.numpy_pickle, "load", load, "joblib.numpy_pickle.load")


def _pandas(pd) -> None:
    read = loader("pandas.read_pickle", 0, "filepath_or_buffer", reopen=True)
    patches.wrap(pd, "read_pickle", read, "pandas.read_pickle")
    patches.wrap(pd.io.pickle, "read_pickle", read, "pandas.io.pickle.read_pickle")


def _pickle_like(package: str, modules: tuple[str, ...], bytes_arg: str):
    """dill and cloudpickle: ``load(file)`` and ``loads(bytes)`` like pickle's."""
    def apply(mod) -> None:
        import importlib
        for name in modules:
            target = importlib.import_module(name)
            patches.wrap(target, "load", loader(f"{package}.load", 0, "file", one_pickle=True), f"{name}.load")
            patches.wrap(target, "loads", loader(f"{package}.loads", 0, bytes_arg, one_pickle=True, bytes_only=True),
                         f"{name}.loads")
    return apply


def _onnx(onnx) -> None:
    load = loader("onnx.load", 0, "f", reopen=True)
    from_string = loader("onnx.load_model_from_string", 0, "s", bytes_only=True)
    for attr, wrapper in (("load", load), ("load_model", load), ("load_model_from_string", from_string),
                          ("load_from_string", from_string)):
        patches.wrap(onnx, attr, wrapper, f"onnx.{attr}")


def _onnxruntime(ort) -> None:
    session = ort.capi.onnxruntime_inference_collection.InferenceSession
    patches.wrap(session, "__init__", loader("onnxruntime.InferenceSession", 0, "path_or_bytes", reopen=True),
                 "onnxruntime.InferenceSession")


def _safetensors(st) -> None:
    patches.wrap(st, "safe_open", loader("safetensors.safe_open", 0, "filename", reopen=True), "safetensors.safe_open")


def _safetensors_framework(mod) -> None:
    short = mod.__name__
    patches.wrap(mod, "load_file", loader(f"{short}.load_file", 0, "filename", reopen=True), f"{short}.load_file")
    patches.wrap(mod, "load", loader(f"{short}.load", 0, "data", bytes_only=True), f"{short}.load")


LIBRARIES = {
    "pickle": _pickle_module,
    "_pickle": _pickle_module,
    "torch": _torch,
    "numpy": _numpy,
    "joblib": _joblib,
    "pandas": _pandas,
    "dill": _pickle_like("dill", ("dill", "dill._dill"), "str"),
    "cloudpickle": _pickle_like("cloudpickle", ("cloudpickle", "cloudpickle.cloudpickle"), "data"),
    "onnx": _onnx,
    "onnxruntime": _onnxruntime,
    "safetensors": _safetensors,
    "safetensors.torch": _safetensors_framework,
    "safetensors.numpy": _safetensors_framework,
}
"""Module name -> function patching it once it is imported."""
