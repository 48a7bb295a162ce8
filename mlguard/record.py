"""Immutable records: what ``@dataclass(frozen=True)`` gives, without its cost at import.

``dataclasses`` imports ``inspect`` and compiles generated methods for each class when the class is
defined (~1 ms a class on Python 3.11). The CLI defines some twenty records before it scans a byte, and
the runtime guard does the same in every guarded process, so that was a quarter of ``ml-guard scan``'s
start-up. A :class:`Record` lists its fields as annotations, with defaults as class attributes, and
shares one ``__init__``, ``__eq__``, ``__hash__`` and ``__repr__``::

    class Location(Record):
        line: int | None = None
        evidence: dict = field(factory=dict)

Instances are immutable; :func:`replace` makes a changed copy (running ``__post_init__`` again).
"""
from __future__ import annotations

from typing import Any, Callable, dataclass_transform

_MISSING: Any = object()


class _Field:
    __slots__ = ("default", "factory", "compare", "repr")

    def __init__(self, default: Any, factory: Callable[[], Any] | None, compare: bool, repr: bool) -> None:
        self.default, self.factory, self.compare, self.repr = default, factory, compare, repr


def field(default: Any = _MISSING, *, factory: Callable[[], Any] | None = None, compare: bool = True,
          repr: bool = True) -> Any:
    """A field whose default is made by ``factory()`` for each record, or that ``==`` and ``hash`` ignore
    (``compare=False``), or that ``repr`` leaves out (``repr=False``: secrets)."""
    return _Field(default, factory, compare, repr)


@dataclass_transform(field_specifiers=(field,))
class Record:
    """Base of immutable records (see the module docstring)."""

    _specs: dict[str, _Field] = {}
    _fields: tuple[str, ...] = ()
    _compared: tuple[str, ...] = ()
    _shown: tuple[str, ...] = ()
    _post_init: Callable[[Any], None] | None = None
    _template: dict[str, Any] = {}
    _unset: tuple[tuple[str, Callable[[], Any] | None], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs = dict(cls._specs)  # a parent record's fields come first
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if str(annotation).startswith("ClassVar"):
                continue
            value = cls.__dict__.get(name, _MISSING)
            if isinstance(value, _Field):
                specs[name] = value
                delattr(cls, name)
            else:
                specs[name] = _Field(value, None, True, True)
        cls._specs = specs
        cls._fields = tuple(specs)
        cls._compared = tuple(name for name, spec in specs.items() if spec.compare)
        cls._shown = tuple(name for name, spec in specs.items() if spec.repr)
        # every field in order with its plain default (else _MISSING), and those without one with
        # their factory (None: required); looked up once, as __post_init__ is
        cls._template = {name: spec.default for name, spec in specs.items()}
        cls._unset = tuple((name, spec.factory) for name, spec in specs.items() if spec.default is _MISSING)
        cls._post_init = getattr(cls, "__post_init__", None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        fields = cls._fields
        values = dict(cls._template)  # in field order: updates keep it
        if args:
            if len(args) > len(fields):
                raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments but {len(args)} were given")
            values.update(zip(fields, args))
        if kwargs:
            positional = fields[:len(args)]
            if kwargs.keys() - values.keys() or not kwargs.keys().isdisjoint(positional):
                wrong = next(n for n in kwargs if n not in values or n in positional)
                raise TypeError(f"{cls.__name__}() got an unexpected or repeated argument {wrong!r}")
            values.update(kwargs)
        for name, factory in cls._unset:
            if values[name] is _MISSING:
                if factory is None:
                    raise TypeError(f"{cls.__name__}() missing required argument {name!r}")
                values[name] = factory()
        object.__setattr__(self, "__dict__", values)
        if cls._post_init is not None:
            cls._post_init(self)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r} (use record.replace)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def _key(self) -> tuple:
        return tuple(self.__dict__[name] for name in self._compared)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self._shown)
        return f"{type(self).__name__}({shown})"


def replace(record: Record, **changes: Any) -> Any:
    """A copy of ``record`` with ``changes`` (checked by its ``__post_init__``, if any, like a new record)."""
    return type(record)(**{**record.__dict__, **changes})
