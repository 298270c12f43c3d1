"""Encode job data as bytes and back: msgpack by default, JSON on request, never pickle.

Every blob starts with one codec byte, so a store written with one serializer
stays readable after the setting changes, and foreign bytes are refused early.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from nuvom.errors import SerializationError

if TYPE_CHECKING:
    from nuvom.signing import Signer

MAX_NESTING_DEPTH = 256  # containers inside containers a payload may hold
MSGPACK_CODEC = 0x01
JSON_CODEC = 0x02

# msgpack extension type codes; part of the on-disk format, never renumber.
_EXT_DATETIME = 1
_EXT_DATE = 2
_EXT_TIME = 3
_EXT_TIMEDELTA = 4
_EXT_UUID = 5
_EXT_DECIMAL = 6
_EXT_TUPLE = 7
_EXT_SET = 8
_EXT_FROZENSET = 9


class Serializer(Protocol):
    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _not_serializable(value: object) -> SerializationError:
    return SerializationError(
        f"object of type {type(value).__name__} is not serializable "
        "(nuvom stores data, not objects: pass ids, str, numbers, dates, UUIDs, Decimals, "
        "bytes, lists, tuples, sets or dicts)"
    )


def _plain(value: object) -> Any:
    """Map subclasses of builtin types (IntEnum, str subclasses, OrderedDict...) to their base."""
    if isinstance(value, enum.Enum):
        value = value.value
    converters: tuple[Callable[[Any], Any], ...] = (bool, int, float, str, bytes)
    for base in converters:
        if isinstance(value, base):  # type: ignore[arg-type]
            return base(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    raise _not_serializable(value)


class MsgpackSerializer:
    name = "msgpack"

    def __init__(self, max_bytes: int | None = None) -> None:
        self._max_bytes = max_bytes
        self._local = threading.local()  # msgpack.Packer is not thread-safe; one per thread

    def _ext_default(self, value: Any) -> Any:
        packb = self._packb
        if isinstance(value, tuple):
            return msgpack.ExtType(_EXT_TUPLE, packb(list(value)))
        if isinstance(value, dt.datetime):
            return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode())
        if isinstance(value, dt.date):
            return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
        if isinstance(value, dt.time):
            return msgpack.ExtType(_EXT_TIME, value.isoformat().encode())
        if isinstance(value, dt.timedelta):
            return msgpack.ExtType(
                _EXT_TIMEDELTA, packb([value.days, value.seconds, value.microseconds])
            )
        if isinstance(value, uuid.UUID):
            return msgpack.ExtType(_EXT_UUID, value.bytes)
        if isinstance(value, decimal.Decimal):
            return msgpack.ExtType(_EXT_DECIMAL, str(value).encode())
        if isinstance(value, frozenset):
            return msgpack.ExtType(_EXT_FROZENSET, packb(list(value)))
        if isinstance(value, set):
            return msgpack.ExtType(_EXT_SET, packb(list(value)))
        return _plain(value)

    def _packb(self, value: Any) -> bytes:
        return msgpack.packb(  # type: ignore[no-any-return]
            value, default=self._ext_default, strict_types=True, use_bin_type=True
        )

    def _ext_hook(self, code: int, data: bytes) -> Any:
        unpack = self._unpackb
        if code == _EXT_TUPLE:
            return tuple(unpack(data))
        if code == _EXT_DATETIME:
            return dt.datetime.fromisoformat(data.decode())
        if code == _EXT_DATE:
            return dt.date.fromisoformat(data.decode())
        if code == _EXT_TIME:
            return dt.time.fromisoformat(data.decode())
        if code == _EXT_TIMEDELTA:
            days, seconds, micros = unpack(data)
            return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
        if code == _EXT_UUID:
            return uuid.UUID(bytes=data)
        if code == _EXT_DECIMAL:
            return decimal.Decimal(data.decode())
        if code == _EXT_SET:
            return set(unpack(data))
        if code == _EXT_FROZENSET:
            return frozenset(unpack(data))
        raise SerializationError(f"unknown msgpack extension type {code}")

    def _unpackb(self, data: bytes) -> Any:
        return msgpack.unpackb(
            data,
            ext_hook=self._ext_hook,
            raw=False,
            strict_map_key=False,
            use_list=True,
        )

    def dumps(self, value: Any) -> bytes:
        packer = getattr(self._local, "packer", None)
        if packer is None:
            packer = self._local.packer = msgpack.Packer(
                default=self._ext_default, strict_types=True, use_bin_type=True
            )
        try:
            return _MSGPACK_PREFIX + packer.pack(value)  # type: ignore[no-any-return]
        except BaseException:
            packer.reset()  # a failed pack leaves partial bytes in the buffer
            raise

    def loads(self, data: bytes) -> Any:
        return self._unpackb(data[1:])


_MSGPACK_PREFIX = bytes((MSGPACK_CODEC,))
_JSON_TAG = "__nuvom__"


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return {_JSON_TAG: "tuple", "v": list(value)}
    if isinstance(value, dt.datetime):
        return {_JSON_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_JSON_TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {_JSON_TAG: "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        # Exact parts: total_seconds() is a float and drops microseconds on long spans.
        return {_JSON_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, uuid.UUID):
        return {_JSON_TAG: "uuid", "v": str(value)}
    if isinstance(value, decimal.Decimal):
        return {_JSON_TAG: "decimal", "v": str(value)}
    if isinstance(value, bytes):
        return {_JSON_TAG: "bytes", "v": value.hex()}
    if isinstance(value, frozenset):
        return {_JSON_TAG: "frozenset", "v": [_tag_tuples(v) for v in value]}
    if isinstance(value, set):
        return {_JSON_TAG: "set", "v": [_tag_tuples(v) for v in value]}
    return _plain(value)


def _tag_tuples(value: Any) -> Any:
    """Tag what json.dumps would flatten before ``default`` sees it: tuples, non-str keys."""
    if isinstance(value, tuple):
        return {_JSON_TAG: "tuple", "v": [_tag_tuples(v) for v in value]}
    if isinstance(value, list):
        return [_tag_tuples(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _tag_tuples(v) for k, v in value.items()}
        pairs = [[_tag_tuples(k), _tag_tuples(v)] for k, v in value.items()]
        return {_JSON_TAG: "dict", "v": pairs}
    return value


def _timedelta_from_json(value: Any) -> dt.timedelta:
    if isinstance(value, list):
        days, seconds, micros = value
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    return dt.timedelta(seconds=value)  # the earlier form: total seconds as a float


_JSON_DECODERS: dict[str, Callable[[Any], Any]] = {
    "tuple": tuple,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": _timedelta_from_json,
    "dict": dict,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
    "bytes": bytes.fromhex,
    "set": set,
    "frozenset": frozenset,
}


def _json_object_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(_JSON_TAG)
    if tag is None or len(obj) != 2:
        return obj
    decoder = _JSON_DECODERS.get(tag)
    if decoder is None:
        raise SerializationError(f"unknown JSON type tag {tag!r}")
    return decoder(obj["v"])


class JsonSerializer:
    name = "json"

    def __init__(self, max_bytes: int | None = None) -> None:
        self._max_bytes = max_bytes

    def dumps(self, value: Any) -> bytes:
        text = json.dumps(
            _tag_tuples(value), default=_json_default, separators=(",", ":"), allow_nan=True
        )
        return bytes((JSON_CODEC,)) + text.encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data[1:], object_hook=_json_object_hook)


_CODECS: dict[int, type[MsgpackSerializer] | type[JsonSerializer]] = {
    MSGPACK_CODEC: MsgpackSerializer,
    JSON_CODEC: JsonSerializer,
}


def _depth_ok(value: Any, limit: int = MAX_NESTING_DEPTH) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend((v, depth + 1) for v in item)
    return True


class Codec:
    """The serializer nuvom uses: writes with the configured format, reads any known one.

    ``dumps`` raises ``SerializationError`` for values it cannot store or that are
    larger than ``max_bytes``; ``loads`` raises only ``SerializationError``.
    """

    def __init__(
        self, name: str = "msgpack", *, max_bytes: int | None = None, signer: Signer | None = None
    ) -> None:
        self._max_bytes = max_bytes
        #: Signs and verifies job payloads (``nuvom.signing``); None: payloads are unsigned.
        self.signer = signer
        self._readers = {code: cls(max_bytes) for code, cls in _CODECS.items()}
        writer = {"msgpack": MSGPACK_CODEC, "json": JSON_CODEC}.get(name)
        if writer is None:
            raise SerializationError(f"unknown serializer {name!r} (use 'msgpack' or 'json')")
        self._writer: Serializer = self._readers[writer]
        self.name = name

    @property
    def max_bytes(self) -> int | None:
        """The largest encoded value ``dumps`` accepts (None: no limit)."""
        return self._max_bytes

    def dumps(self, value: Any) -> bytes:
        try:
            data = self._writer.dumps(value)
        except SerializationError:
            raise
        except RecursionError:
            raise SerializationError("value is nested too deeply to serialize") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"value cannot be serialized: {exc}") from None
        if self._max_bytes is not None and len(data) > self._max_bytes:
            raise SerializationError(
                f"encoded payload is {len(data):,} bytes, over the limit of "
                f"{self._max_bytes:,} (NUVOM_MAX_PAYLOAD_BYTES)"
            )
        return data

    def loads(self, data: bytes | memoryview) -> Any:
        data = bytes(data)
        if not data:
            raise SerializationError("empty payload")
        reader = self._readers.get(data[0])
        if reader is None:
            raise SerializationError(f"unknown payload format byte 0x{data[0]:02x}")
        if self._max_bytes is not None and len(data) > self._max_bytes:
            raise SerializationError(f"payload of {len(data):,} bytes is over the limit")
        try:
            value = reader.loads(data)
        except SerializationError:
            raise
        except RecursionError:
            raise SerializationError("payload is nested too deeply") from None
        except Exception as exc:  # msgpack and json raise many types on garbage
            raise SerializationError(f"payload cannot be decoded: {exc}") from None
        # Each level of nesting takes at least one byte, so short payloads need no walk.
        if len(data) > MAX_NESTING_DEPTH and not _depth_ok(value):
            raise SerializationError("payload is nested too deeply")
        return value


def find_unserializable(codec: Codec, args: Any, kwargs: dict[str, Any]) -> str | None:
    """Name the first argument the codec refuses, as 'argument 1' or "argument 'x'"."""
    for index, value in enumerate(args):
        try:
            codec.dumps(value)
        except SerializationError:
            return f"argument {index}"
    for key, value in kwargs.items():
        try:
            codec.dumps(value)
        except SerializationError:
            return f"argument {key!r}"
    return None
