import contextlib
import sys
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratcast.shared import protocol
from stratcast.shared.events import Event, HeartbeatSent, decode_event, encode_event, event_kind, event_types
from stratcast.shared.protocol import (
    MAX_FRAME,
    AnyRequest,
    Error,
    ProtocolError,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode,
)

REQUEST_TYPES: list[type[Request]] = list(get_args(AnyRequest))
FAST = settings(deadline=None, max_examples=50)

# JSON values msgspec encodes and decodes back to equal values: no NaN/inf (JSON has none), 64-bit ints.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """Values of a message field's type (every type protocol.py uses)."""
    origin = get_origin(tp)
    if origin is typing.Annotated:  # an int, float or list with msgspec.Meta bounds, or a str with a pattern
        base, *metas = get_args(tp)
        meta = next(m for m in metas if isinstance(m, msgspec.Meta))
        if base is str:
            assert meta.pattern is not None
            return st.from_regex(meta.pattern, fullmatch=True)
        if get_origin(base) is list:  # a list with a length bound
            return st.lists(strategy_for(get_args(base)[0]), min_size=meta.min_length or 0, max_size=4)
        if base is float:
            return st.floats(
                min_value=meta.ge if meta.gt is None else meta.gt,
                max_value=meta.le if meta.lt is None else meta.lt,
                exclude_min=meta.gt is not None,
                exclude_max=meta.lt is not None,
                allow_nan=False,
                allow_infinity=False,
            )
        assert base is int
        lo = int(meta.ge) if meta.ge is not None else -(2**63)
        return st.integers(lo, int(meta.le) if meta.le is not None else 2**63 - 1)
    if tp is Any:
        return json_values
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-(2**63), 2**63 - 1)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is str:
        return st.text(max_size=30)
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin in (Union, types.UnionType):
        return st.one_of([strategy_for(arg) for arg in get_args(tp)])
    if origin is list:
        return st.lists(strategy_for(get_args(tp)[0]), max_size=4)
    if origin is dict:
        key, value = get_args(tp)
        return st.dictionaries(
            strategy_for(key) if key is not str else st.text(max_size=8), strategy_for(value), max_size=4
        )
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return struct_of(tp)
    raise NotImplementedError(tp)


def struct_of(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` with every field drawn, optional ones included."""
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]), include_extras=True)
    fields = {f.name: strategy_for(hints[f.name]) for f in msgspec.structs.fields(cls)}
    return st.builds(cls, **fields)


def test_every_request_struct_is_in_the_decodable_union():
    leaves = {cls for cls in _subclasses(Request) if not cls.__subclasses__()}
    assert leaves == set(REQUEST_TYPES)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@pytest.mark.parametrize("kind", REQUEST_TYPES, ids=lambda k: k.__struct_config__.tag)
@FAST
@given(data=st.data())
def test_every_request_type_round_trips(kind, data):
    request = data.draw(struct_of(kind))
    assert decode_request(encode(request)) == request


@settings(deadline=None, max_examples=300)
@given(frame=st.binary(max_size=200))
def test_arbitrary_bytes_decode_only_to_protocol_error(frame):
    for decode in (decode_request, decode_reply, lambda f: decode_event([b"run", f])):
        with contextlib.suppress(ProtocolError):
            decode(frame)


@settings(deadline=None, max_examples=200)
@given(text=st.text(alphabet='{}[]":,0123456789.-eE truefalsn\\type', max_size=120))
def test_json_shaped_noise_decodes_only_to_protocol_error(text):
    with contextlib.suppress(ProtocolError):
        decode_request(text.encode())


@FAST
@given(data=st.data())
def test_truncated_requests_are_protocol_errors(data):
    frame = encode(data.draw(st.sampled_from(REQUEST_TYPES).flatmap(struct_of)))
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ProtocolError):
        decode_request(frame[:cut])


@pytest.mark.parametrize(
    "frame",
    [b"[" * 100_000, b'{"a":' * 50_000, b'{"type": "hello", "protocol": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
    ids=["arrays", "objects", "deep-unknown-field"],
)
def test_deep_nesting_is_a_protocol_error_not_a_recursion_error(frame):
    with pytest.raises(ProtocolError):
        decode_request(frame)
    with pytest.raises(ProtocolError):
        decode_reply(frame)
    with pytest.raises(ProtocolError):
        decode_event([b"run", frame])


def test_a_frame_over_the_cap_is_refused_as_too_large_before_parsing():
    valid = encode(protocol.Status(id="7"))
    padded = valid[:-1] + b" " * (MAX_FRAME + 1 - len(valid)) + b"}"
    with pytest.raises(ProtocolError) as err:
        decode_request(padded)
    assert err.value.code == "too_large"
    with pytest.raises(ProtocolError) as err:
        decode_request(b"\xff" * (MAX_FRAME + 1))
    assert err.value.code == "too_large"


def test_a_frame_at_the_cap_is_still_parsed():
    valid = encode(protocol.Status(id="7"))
    padded = valid[:-1] + b" " * (MAX_FRAME - len(valid)) + b"}"
    assert len(padded) == MAX_FRAME
    assert decode_request(padded) == protocol.Status(id="7")


def test_a_request_with_a_bad_field_keeps_its_id_for_the_error_reply():
    with pytest.raises(ProtocolError) as err:
        decode_request(b'{"type": "stop_run", "id": "42", "run": "seven"}')
    assert err.value.code == "bad_request"
    assert err.value.request_id == "42"


def test_an_unknown_type_and_an_unknown_field_are_bad_requests():
    for frame in (b'{"type": "format_disk", "id": "1"}', b'{"type": "status", "id": "1", "force": true}'):
        with pytest.raises(ProtocolError) as err:
            decode_request(frame)
        assert err.value.code == "bad_request"


def test_a_job_from_before_the_date_options_decodes_with_inferred_dates():
    request = decode_request(b'{"type": "check_data", "id": "1", "job": {"data": "/srv/r.csv", "model": "mlp"}}')
    assert isinstance(request, protocol.CheckData)
    assert (request.job.date_format, request.job.dayfirst) == (None, False)


@pytest.mark.parametrize("kind", event_types(), ids=lambda k: k.__name__)
@FAST
@given(
    data=st.data(),
    session=st.text(min_size=1, max_size=16),
    seq=st.integers(0, 2**63 - 1),
    time=st.floats(0, 4e9),
    run=st.none() | st.integers(0, 2**63 - 1),
)
def test_every_event_kind_round_trips_under_its_own_topic(kind, data, session, seq, time, run):
    event = Event(session=session, seq=seq, time=time, run=run, data=data.draw(struct_of(kind)))
    frames = encode_event(event)
    assert frames[0] == event_kind(event.data).encode()
    assert decode_event(frames) == event


@FAST
@given(reply=struct_of(Reply) | struct_of(Error))
def test_replies_and_errors_round_trip(reply):
    assert decode_reply(encode(reply)) == reply


@pytest.mark.parametrize("count", [0, 1, 3])
def test_an_event_is_exactly_two_frames(count):
    event = Event(session="s", seq=1, time=0.0, data=HeartbeatSent())
    with pytest.raises(ProtocolError):
        decode_event([b"heartbeat", encode(event), b"extra"][:count])
