"""mlguard.record: the immutable records every result, policy and limit is made of."""
from __future__ import annotations

import pickle

import pytest

from mlguard.findings import Finding, Location, Severity
from mlguard.record import Record, field, replace


class Point(Record):
    x: int
    y: int = 0
    tags: list = field(factory=list)
    secret: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError("x must not be negative")


class Point3(Point):
    z: int = 0


def test_fields_defaults_and_factories():
    p = Point(1)
    assert (p.x, p.y, p.tags, p.secret) == (1, 0, [], "")
    assert Point(1).tags is not p.tags  # a fresh value per record
    assert Point(1, 2, [3]).tags == [3]
    assert Point(x=1, y=2) == Point(1, 2)
    assert Point3(1, z=5).z == 5 and Point3._fields == ("x", "y", "tags", "secret", "z")


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="missing required argument 'x'"):
        Point()
    with pytest.raises(TypeError, match="unexpected or repeated argument 'w'"):
        Point(1, w=2)
    with pytest.raises(TypeError, match="unexpected or repeated argument 'x'"):
        Point(1, x=2)
    with pytest.raises(TypeError, match="takes 4 arguments but 5 were given"):
        Point(1, 2, [], "", 5)
    with pytest.raises(ValueError, match="negative"):
        Point(-1)


def test_immutable_and_replace():
    p = Point(1, 2)
    with pytest.raises(AttributeError, match="immutable"):
        p.x = 3
    with pytest.raises(AttributeError, match="immutable"):
        del p.y
    q = replace(p, y=7)
    assert (q.x, q.y, p.y) == (1, 7, 2)
    with pytest.raises(ValueError, match="negative"):  # __post_init__ checks the copy too
        replace(p, x=-1)


def test_equality_hash_and_repr_leave_out_what_they_should():
    a, b = Point(1, 2, secret="hunter2"), Point(1, 2, secret="other")
    assert a == b and a != Point(1, 3) and a != (1, 2)
    assert hash(Point(1, 2, ())) == hash(Point(1, 2, (), "x"))
    assert "hunter2" not in repr(a) and repr(Point(1)) == "Point(x=1, y=0, tags=[])"
    assert Point3(1) != Point(1)  # a different record type is never equal


def test_real_records_round_trip():
    f = Finding(rule_id="pickle-global-denied", severity=Severity.CRITICAL, scanner="pickle", message="m",
                path="a.pkl", location=Location(offset=3))
    assert f.evidence == {} and f.location.describe() == "offset 0x3"
    assert pickle.loads(pickle.dumps(f)) == f
    assert replace(f, path="b.pkl").path == "b.pkl"
