"""Small immutable records: tuples with named fields.

What ``collections.namedtuple`` gives (fields by name and by index,
unpacking, equality, ``_replace``, a readable repr) without importing
collections (with operator, keyword, reprlib and itertools: ~1.5 ms of every
``create``) and without namedtuple's exec() of generated source.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


def _field(index: int) -> property:
    return property(lambda self: self[index], doc=f"field {index}")


def record(name: str, fields: str, defaults: tuple = ()) -> type:
    """A tuple subclass ``name`` with the space-separated ``fields``; the last
    ``len(defaults)`` fields are optional with those values."""
    names = tuple(fields.split())
    required = len(names) - len(defaults)
    if required < 0:
        raise TypeError(f"{name}: more defaults than fields")

    def __new__(cls: type, *args: Any, **kwargs: Any) -> tuple:
        if len(args) > len(names):
            raise TypeError(f"{name}() takes {len(names)} fields, got {len(args)}")
        values = list(args) + [None] * (len(names) - len(args))
        given = [True] * len(args) + [False] * (len(names) - len(args))
        for key, value in kwargs.items():
            try:
                i = names.index(key)
            except ValueError:
                raise TypeError(f"{name}() got an unexpected field {key!r}") from None
            if given[i]:
                raise TypeError(f"{name}() got field {key!r} twice")
            values[i], given[i] = value, True
        for i, ok in enumerate(given):
            if not ok:
                if i < required:
                    raise TypeError(f"{name}() is missing field {names[i]!r}")
                values[i] = defaults[i - required]
        return tuple.__new__(cls, values)

    def _replace(self: tuple, **changes: Any) -> tuple:
        return type(self)(**{**dict(zip(names, self)), **changes})

    def __repr__(self: tuple) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(names, self))
        return f"{name}({inner})"

    def _asdict(self: tuple) -> dict:
        return dict(zip(names, self))

    namespace: dict[str, Any] = {
        "__slots__": (), "_fields": names, "__new__": __new__, "_replace": _replace,
        "__repr__": __repr__, "_asdict": _asdict,
        "__getnewargs__": lambda self: tuple(self),
    }
    for i, field in enumerate(names):
        namespace[field] = _field(i)
    return type(name, (tuple,), namespace)
