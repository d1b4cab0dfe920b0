"""The one union of events: its kinds, where each may come from, and that docs/protocol.md lists every one."""

import re
from pathlib import Path

import msgspec
import pytest

from stratcast.shared.events import (
    TOPICS,
    WorkerEvent,
    decode_line,
    event_types,
)

DOCS = Path(__file__).parents[2] / "docs" / "protocol.md"


def test_every_kind_has_its_own_tag_and_a_past_tense_name():
    assert len(set(TOPICS)) == len(TOPICS) == len(event_types())
    # a past tense: the name ends in a participle (Sent, Chosen, Ran..., Removed, ...), never an imperative
    assert all(re.search(r"(ed|en|Sent|Ran\w+)$", kind.__name__) for kind in event_types())


@pytest.mark.parametrize("kind", event_types(), ids=lambda k: k.__name__)
def test_docs_list_every_event_with_its_type_and_every_field(kind):
    tag = kind.__struct_config__.tag
    rows = [line for line in DOCS.read_text().splitlines() if line.startswith(f"| `{tag}` |")]
    assert len(rows) == 1, f"docs/protocol.md has no row (or several) for the {tag} event"
    assert f"`{kind.__name__}`" in rows[0]
    for field in msgspec.structs.fields(kind):
        assert f"`{field.name}`" in rows[0], f"{tag}: field {field.name} is not in its docs row"


def test_a_worker_line_of_a_kind_only_the_daemon_publishes_is_refused():
    worker_kinds = {k.__struct_config__.tag for k in WorkerEvent.__args__}
    for tag in set(TOPICS) - worker_kinds:
        with pytest.raises(msgspec.ValidationError):
            decode_line(f'{{"event": "{tag}"}}'.encode())
    assert {"progress", "plan", "oom", "memory"} <= worker_kinds


def test_the_docs_name_the_protocol_version_of_the_code():
    from stratcast.shared.protocol import PROTOCOL

    assert f"Protocol version: **{PROTOCOL}**" in DOCS.read_text()
    assert f'"protocol": {PROTOCOL}, "client"' in DOCS.read_text()
