"""The codec: what round-trips, what is refused, and that garbage never crashes it."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import enum
import pickle
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuvom.errors import CorruptJob, SerializationError
from nuvom.job import Job
from nuvom.records import JobPayloadCodec
from nuvom.serialization import MAX_NESTING_DEPTH, Codec

CODECS = ["msgpack", "json"]
# The autouse isolation fixtures do not need resetting between examples.
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

UTC_PLUS_5_30 = dt.timezone(dt.timedelta(hours=5, minutes=30))
ROUND_TRIPS: list[tuple[str, Any]] = [
    ("datetime-aware", dt.datetime(2024, 3, 1, 12, 30, 5, 123456, tzinfo=UTC_PLUS_5_30)),
    ("datetime-utc", dt.datetime(2024, 3, 1, 12, 30, tzinfo=dt.timezone.utc)),
    ("datetime-naive", dt.datetime(2024, 3, 1, 12, 30, 5, 7)),
    ("date", dt.date(1999, 12, 31)),
    ("time", dt.time(23, 59, 58, 999)),
    ("time-aware", dt.time(8, 0, tzinfo=UTC_PLUS_5_30)),
    ("timedelta", dt.timedelta(days=-3, seconds=5, microseconds=17)),
    ("timedelta-large", dt.timedelta(days=1_000_000, microseconds=1)),
    ("timedelta-max", dt.timedelta.max),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("decimal", decimal.Decimal("1234567890.000000000000000001")),
    ("bytes", b"\x00\xff binary \x80"),
    ("empty-bytes", b""),
    ("tuple-in-list", [1, (2, (3, "x")), []]),
    ("set", {1, 2, 3}),
    ("frozenset", frozenset({"a", "b"})),
    ("set-of-tuples", {(1, 2), (3, 4)}),
    ("int-keys", {1: "one", 2: {3: "three"}}),
    ("mixed-keys", {"a": 1, 2: "b"}),
    ("nested", {"when": [dt.date(2020, 1, 1), (uuid.UUID(int=7), b"x")], "n": None}),
    ("scalars", [None, True, False, 0, -1, 2**63 - 1, 1.5, "text", "ünïcødé"]),
]


def same(left: Any, right: Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 == True would hide a change)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(v, right[k]) for k, v in left.items())
    if isinstance(left, list | tuple):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dt.datetime | dt.time):
        return left == right and left.utcoffset() == right.utcoffset()
    if isinstance(left, decimal.Decimal):
        return str(left) == str(right)
    return bool(left == right)


@pytest.mark.parametrize("codec_name", CODECS)
@pytest.mark.parametrize(("label", "value"), ROUND_TRIPS, ids=[label for label, _ in ROUND_TRIPS])
def test_value_round_trips(codec_name, label, value):
    codec = Codec(codec_name)

    decoded = codec.loads(codec.dumps(value))

    assert same(decoded, value), f"{label}: {value!r} came back as {decoded!r}"


def _supported() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.binary(max_size=20),
        st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
        st.dates(),
        st.timedeltas(),
        st.uuids(),
        st.decimals(allow_nan=False),
    )
    hashable = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=5)
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=4).map(tuple),
            st.dictionaries(hashable | st.tuples(hashable, hashable), inner, max_size=4),
            st.sets(hashable, max_size=4),
            st.frozensets(hashable, max_size=4),
        ),
        max_leaves=12,
    )


@pytest.mark.parametrize("codec_name", CODECS)
@PROPERTY
@given(value=_supported())
def test_every_supported_value_round_trips(codec_name, value):
    codec = Codec(codec_name)

    assert same(codec.loads(codec.dumps(value)), value)


@pytest.mark.parametrize("codec_name", CODECS)
def test_subclasses_of_builtins_are_stored_as_their_base(codec_name):
    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    codec = Codec(codec_name)

    assert same(codec.loads(codec.dumps([Colour.RED, Name("ada")])), [1, "ada"])


def test_each_codec_reads_the_others_bytes():
    value = {"at": dt.datetime(2024, 1, 2, 3, 4, 5), "ids": (uuid.UUID(int=1), 2)}

    from_json = Codec("msgpack").loads(Codec("json").dumps(value))
    from_msgpack = Codec("json").loads(Codec("msgpack").dumps(value))

    assert same(from_json, value)
    assert same(from_msgpack, value)


@pytest.mark.parametrize("codec_name", CODECS)
@pytest.mark.parametrize(
    "value",
    [object(), lambda: 1, {1, object}, {"k": open}, [Exception("x")], float],
    ids=["object", "lambda", "class-in-set", "builtin-in-dict", "exception", "type"],
)
def test_unserializable_values_are_refused(codec_name, value):
    with pytest.raises(SerializationError, match="not serializable"):
        Codec(codec_name).dumps(value)


def test_msgpack_refuses_integers_past_64_bits():
    with pytest.raises(SerializationError, match="out of range"):
        Codec("msgpack").dumps(2**64)


def test_unknown_serializer_name_is_refused():
    with pytest.raises(SerializationError, match="pickle"):
        Codec("pickle")


@pytest.mark.parametrize("codec_name", CODECS)
def test_too_deeply_nested_values_are_refused(codec_name):
    value: list[Any] = []
    for _ in range(2000):
        value = [value]

    with pytest.raises(SerializationError, match=r"nested|recursion"):
        Codec(codec_name).dumps(value)


@pytest.mark.parametrize("codec_name", CODECS)
def test_too_deeply_nested_payloads_are_refused_when_read(codec_name):
    depth = 300  # encodable (msgpack stops at 511) but past MAX_NESTING_DEPTH
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    codec = Codec(codec_name)

    with pytest.raises(SerializationError, match="nested"):
        codec.loads(codec.dumps(value))


@pytest.mark.parametrize("codec_name", CODECS)
def test_oversized_payload_is_refused_both_ways(codec_name):
    small = Codec(codec_name, max_bytes=100)
    big = Codec(codec_name).dumps("x" * 500)

    with pytest.raises(SerializationError, match="over the limit"):
        small.dumps("x" * 500)
    with pytest.raises(SerializationError, match="over the limit"):
        small.loads(big)
    assert small.loads(small.dumps("x" * 10)) == "x" * 10


@pytest.mark.parametrize("codec_name", CODECS)
def test_pickle_payloads_are_refused(codec_name):
    payload = pickle.dumps({"run": "code"})
    assert payload.startswith(b"\x80\x04")

    with pytest.raises(SerializationError, match="0x80"):
        Codec(codec_name).loads(payload)


class _Trap:
    """Unpickling this makes a folder: proof that the payload ran as code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.mkdir, (self.marker,))


def test_a_crafted_pickle_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pickle-ran"
    payload = pickle.dumps(_Trap(str(marker)))
    codec, payloads = Codec(), JobPayloadCodec(Codec())

    # Bare, and behind each codec's format byte, as a value and as a job payload.
    for blob in (payload, b"\x01" + payload, b"\x02" + payload):
        with pytest.raises(SerializationError):
            codec.loads(blob)
        with pytest.raises(CorruptJob):
            payloads.decode(blob, job_id="j", queue="default")

    assert not marker.exists(), "a pickle payload was executed"
    pickle.loads(payload)  # the trap is real: unpickling it does run code
    assert marker.exists()


@PROPERTY
@given(depth=st.integers(MAX_NESTING_DEPTH + 1, 5000), wrap=st.sampled_from([b"\x91", b"\x81\x00"]))
def test_deeply_nested_msgpack_bytes_are_refused(depth, wrap):
    """Hand-made msgpack: ``depth`` one-element arrays (or maps) around a nil."""
    with pytest.raises(SerializationError):  # nuvom's depth check, or msgpack's own past 1024
        Codec().loads(b"\x01" + wrap * depth + b"\xc0")


@PROPERTY
@given(claimed=st.integers(2**20, 2**32 - 1), kind=st.sampled_from([b"\xdd", b"\xdf", b"\xc6"]))
def test_msgpack_claiming_huge_sizes_is_refused_without_allocating(claimed, kind):
    """A 9-byte header that claims a 4 GiB array, map or bin must not be believed."""
    with pytest.raises(SerializationError):
        Codec().loads(b"\x01" + kind + claimed.to_bytes(4, "big") + b"\x00" * 4)


@pytest.mark.parametrize("garbage", [b"", b"\x01", b"\x01\xc1", b"\x02{", b"\x02[1,", b"\x09abc"])
def test_malformed_payloads_raise_serialization_error(garbage):
    with pytest.raises(SerializationError):
        Codec().loads(garbage)


@PROPERTY
@given(data=st.binary(max_size=200))
def test_garbage_bytes_only_ever_raise_serialization_error(data):
    codec = Codec()
    for blob in (data, b"\x01" + data, b"\x02" + data):
        with contextlib.suppress(SerializationError):
            codec.loads(blob)


@PROPERTY
@given(data=st.binary(max_size=200))
def test_garbage_job_payloads_only_ever_raise_corrupt_job(data):
    payloads = JobPayloadCodec(Codec())
    for blob in (data, b"\x01" + data):
        decoded: Job | CorruptJob
        try:
            decoded = payloads.decode(blob, job_id="j", queue="default")
        except CorruptJob as exc:
            decoded = exc
        assert isinstance(decoded, Job) or decoded.job_id == "j"


@pytest.mark.parametrize("codec_name", CODECS)
def test_job_payload_round_trips_the_call(codec_name):
    payloads = JobPayloadCodec(Codec(codec_name))
    job = Job(
        "reports.build",
        args=(dt.date(2024, 5, 1), (1, 2)),
        kwargs={"ids": {uuid.UUID(int=3)}, "price": decimal.Decimal("9.99")},
        max_retries=4,
        timeout_policy="retry",
    )

    back = payloads.decode(payloads.encode(job), job_id=job.id, queue="q", priority=2, attempts=3)

    assert back.func_name == "reports.build"
    assert same(list(back.args), [dt.date(2024, 5, 1), (1, 2)])
    assert same(back.kwargs, {"ids": {uuid.UUID(int=3)}, "price": decimal.Decimal("9.99")})
    assert (back.queue, back.priority, back.attempts) == ("q", 2, 3)
    assert (back.max_retries, back.timeout_policy) == (4, "retry")
    assert back.created_at == job.created_at


def test_job_payload_error_names_the_positional_argument():
    payloads = JobPayloadCodec(Codec())

    with pytest.raises(SerializationError) as caught:
        payloads.encode(Job("t", args=(1, object())))

    assert caught.value.argument == "argument 1"
    assert "argument 1 of t()" in str(caught.value)


def test_job_payload_error_names_the_keyword_argument():
    payloads = JobPayloadCodec(Codec("json"))

    with pytest.raises(SerializationError) as caught:
        payloads.encode(Job("t", args=(1,), kwargs={"y": object()}))

    assert caught.value.argument == "argument 'y'"
    assert "argument 'y'" in str(caught.value)
