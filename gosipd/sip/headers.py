"""The ordered, multi-valued, case-insensitive header list of one SIP message.

A SIP header section is an ordered list of ``name: value`` fields where a name may
repeat (Via, Route, Contact...) and where ``v``, ``VIA`` and ``Via`` are the same
header. ``Headers`` keeps that list in order with canonical names (compact forms
expanded), answers lookups through an index built by the parser, and caches the
typed value of each header (a Via list, a CSeq...) until that header is changed, so
the engine reads a header's value once per message however often it asks.

Each comma-separated element of a list header (Via, Contact, Route, Supported...)
is its own field, so ``get_all("Via")`` gives one string per hop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from gosipd._sipparse import SIPParseError, header_name, is_list_header, split_list

__all__ = ["Headers"]

T = TypeVar("T")

# (key, canonical name, value, line, offset): line and offset locate a field that was
# parsed from the wire; they are 0 and -1 for a field added by code.
Entry = tuple[str, str, str, int, int]

_MISSING = object()


def _key(name: str) -> tuple[str, str]:
    return header_name(name)


def _check_value(name: str, value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"header {name!r}: value must be str, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name!r}: value must not contain CR or LF: {value!r}")
    return value.strip(" \t")


class Headers:
    """Header fields in order; names are case-insensitive and compact forms expand.

    Iteration yields ``(name, value)`` pairs with canonical names. ``get``/``get_all``
    read raw values; ``set``/``add``/``remove`` edit them. Typed reads go through the
    message (``msg.via``, ``msg.cseq``...), which use ``typed_one``/``typed_all`` here.
    """

    __slots__ = ("_entries", "_index", "_typed")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._entries: list[Entry] = []
        self._index: dict[str, list[Entry]] | None = {}
        self._typed: dict[str, object] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_parsed(cls, entries: list[Entry], index: dict[str, list[Entry]]) -> Headers:
        headers = cls.__new__(cls)
        headers._entries = entries
        headers._index = index
        headers._typed = {}
        return headers

    def _idx(self) -> dict[str, list[Entry]]:
        index = self._index
        if index is None:
            index = {}
            for entry in self._entries:
                found = index.get(entry[0])
                if found is None:
                    index[entry[0]] = [entry]
                else:
                    found.append(entry)
            self._index = index
        return index

    def _changed(self, key: str) -> None:
        self._index = None
        self._typed.pop(key, None)

    # -- reading

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        found = self._idx().get(_key(name)[1])
        return found[0][2] if found else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (one per list element)."""
        return [entry[2] for entry in self._idx().get(_key(name)[1], ())]

    def count(self, name: str) -> int:
        return len(self._idx().get(_key(name)[1], ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._idx().get(_key(name)[1]))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter([(entry[1], entry[2]) for entry in self._entries])

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def names(self) -> list[str]:
        """The distinct canonical names present, in order of first appearance."""
        seen: dict[str, None] = {}
        for entry in self._entries:
            seen.setdefault(entry[1], None)
        return list(seen)

    def location(self, name: str) -> tuple[int, int] | None:
        """``(line, offset)`` of the first ``name`` field as received, or None."""
        found = self._idx().get(_key(name)[1])
        if not found or found[0][3] == 0:
            return None
        return (found[0][3], found[0][4])

    # -- editing

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field with one holding ``value``, where the first one was
        (appended when absent). A list header's value may hold several comma-separated
        elements; they become separate fields."""
        self.set_all(name, self._elements(name, value))

    def set_all(self, name: str, values: Iterable[str]) -> None:
        """Replace every ``name`` field with one field per value, at the first one's place."""
        canonical, key = _key(name)
        new = [(key, canonical, _check_value(canonical, v), 0, -1) for v in values]
        out: list[Entry] = []
        placed = False
        for entry in self._entries:
            if entry[0] == key:
                if not placed:
                    out.extend(new)
                    placed = True
            else:
                out.append(entry)
        if not placed:
            out.extend(new)
        self._entries = out
        self._changed(key)

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a ``name`` field (or, with ``first``, put it before the existing ones, as
        a proxy pushes a Via or Record-Route)."""
        canonical, key = _key(name)
        new = [(key, canonical, _check_value(canonical, v), 0, -1)
               for v in self._elements(name, value)]
        if first:
            for i, entry in enumerate(self._entries):
                if entry[0] == key:
                    self._entries[i:i] = new
                    break
            else:
                self._entries.extend(new)
        else:
            self._entries.extend(new)
        self._changed(key)

    def remove(self, name: str) -> int:
        """Remove every ``name`` field; return how many there were."""
        key = _key(name)[1]
        before = len(self._entries)
        self._entries = [entry for entry in self._entries if entry[0] != key]
        self._changed(key)
        return before - len(self._entries)

    def pop_first(self, name: str) -> str | None:
        """Remove the first ``name`` field and return its value (None if absent)."""
        key = _key(name)[1]
        for i, entry in enumerate(self._entries):
            if entry[0] == key:
                del self._entries[i]
                self._changed(key)
                return entry[2]
        return None

    def copy(self) -> Headers:
        """An independent copy (the typed cache is shared read-only values, so kept)."""
        headers = Headers.__new__(Headers)
        headers._entries = list(self._entries)
        headers._index = None
        headers._typed = dict(self._typed)
        return headers

    @staticmethod
    def _elements(name: str, value: str) -> list[str]:
        if not isinstance(value, str):
            raise TypeError(f"header {name!r}: value must be str, not {type(value).__name__}")
        if is_list_header(_key(name)[1]) and "," in value:
            return split_list(value)
        return [value]

    # -- typed access (used by the message's properties)

    def _context(self, entry: Entry, exc: SIPParseError) -> SIPParseError:
        where = f"line {entry[3]}: " if entry[3] else ""
        error = SIPParseError(
            f"{where}header {entry[1]!r}: {exc.reason}",
            entry[4],
            line=entry[3],
            header=entry[1],
        )
        return error

    def typed_all(self, key: str, parse: Callable[[str], T]) -> tuple[T, ...]:
        """Every ``key`` field parsed with ``parse`` (cached until the header changes)."""
        cached = self._typed.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        found = self._idx().get(key, ())
        out = []
        for entry in found:
            try:
                out.append(parse(entry[2]))
            except SIPParseError as exc:
                raise self._context(entry, exc) from None
        result = tuple(out)
        self._typed[key] = result
        return result

    def typed_one(self, key: str, parse: Callable[[str], T]) -> T | None:
        """The single ``key`` field parsed (None if absent; an error if it repeats)."""
        cached = self._typed.get(key, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        found = self._idx().get(key)
        if not found:
            self._typed[key] = None
            return None
        entry = found[0]
        if len(found) > 1:
            lines = ", ".join(str(e[3]) for e in found if e[3])
            where = f"line {found[1][3]}: " if found[1][3] else ""
            raise SIPParseError(
                f"{where}header {entry[1]!r} appears {len(found)} times"
                + (f" (lines {lines})" if lines else "")
                + "; it takes a single value",
                found[1][4],
                line=found[1][3],
                header=entry[1],
            )
        try:
            value = parse(entry[2])
        except SIPParseError as exc:
            raise self._context(entry, exc) from None
        self._typed[key] = value
        return value

    def set_typed(self, name: str, values: Iterable[object]) -> None:
        """Replace ``name`` with the ``str()`` of each typed value and cache them."""
        items = tuple(values)
        self.set_all(name, [str(v) for v in items])
        self._typed[_key(name)[1]] = items

    def set_typed_one(self, name: str, value: object) -> None:
        self.set_all(name, [str(value)])
        self._typed[_key(name)[1]] = value
