"""Schema, topic tree and outbox: the parts of the bus that need no broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dialer.bus import COMMANDS, MESSAGES, Deduplicator, Outbox, SchemaError, Topics, decode, encode, make
from dialer.bus.schema import json_schema


def _raw(type_: str, data: object, **envelope: object) -> bytes:
    doc = {"v": 1, "id": "m1", "type": type_, "campaign": "c1", "source": "backend/desk-1", "ts": 1.0, "data": data}
    doc.update(envelope)
    return json.dumps(doc).encode()


def test_round_trip_keeps_every_field() -> None:
    msg = make("call.record", "c1", "dispatcher/d1", call_id=3, lead_id="L3", outcome="abandoned", dialed_at=1.0,
               ended_at=9.5, answered_at=4.0, connected_at=None, agent_id=None, message_at=6.0, wait=2.0,
               abandoned=True, customer_hung_up=False, agent_lost=False)  # fmt: skip
    back = decode(encode(msg))
    assert back == msg


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (b"{not json", "bad_json", "not JSON"),
        (b"[1, 2]", "bad_json", "JSON object"),
        (_raw("agent.login", {"agent_id": "a"}, v=2), "version", "unsupported schema version 2"),
        (_raw("agent.fly", {}), "unknown_type", "unknown message type"),
        (_raw("agent.login", {}), "invalid", "data.agent_id: is required"),
        (_raw("agent.login", {"agent_id": "a/b"}), "invalid", "data.agent_id"),
        (_raw("agent.login", {"agent_id": "#"}), "invalid", "data.agent_id"),
        (_raw("agent.login", {"agent_id": "a", "extra": 1}), "invalid", "unknown field(s) extra"),
        (_raw("agent.disposition", {"agent_id": "a", "disposition": "sale", "call_id": True}), "invalid", "integer"),
        (_raw("pacing.target", {"abandon_rate": 1.5}), "invalid", "<= 1"),
        (_raw("lead.callback", {"lead_id": "L", "phone": "+1", "at": "soon"}), "invalid", "number"),
        (_raw("agent.login", {"agent_id": "a"}, source="x y"), "invalid", "source"),
        (_raw("agent.login", {"agent_id": "a"}, sneaky=1), "invalid", "envelope"),
        (b"{" + b" " * 70000 + b"}", "too_large", "larger"),
    ],
)
def test_bad_messages_are_refused_with_a_code(payload: bytes, code: str, fragment: str) -> None:
    with pytest.raises(SchemaError) as info:
        decode(payload, expect=COMMANDS)
    assert info.value.code == code
    assert fragment in str(info.value)


def test_decode_can_restrict_to_commands() -> None:
    raw = _raw("call.ended", {"call_id": 1})
    assert decode(raw).type == "call.ended"
    with pytest.raises(SchemaError, match="not accepted here"):
        decode(raw, expect=COMMANDS)


def test_nan_never_goes_on_the_wire() -> None:
    with pytest.raises(SchemaError, match="finite"):
        make("call.answered", "c1", "d", call_id=1, by="person", answered_at=float("nan"))


def test_json_schema_covers_every_type_and_field() -> None:
    for type_, (_, fields, _) in MESSAGES.items():
        schema = json_schema(type_)
        data = schema["properties"]["data"]
        assert set(data["properties"]) == set(fields)
        assert set(data["required"]) <= set(fields)
        json.dumps(schema)  # serialisable, ready for docs and other languages


def test_topic_tree() -> None:
    t = Topics("spring")
    assert t.event("call.dialed") == "dialer/v1/spring/event/call/dialed"
    assert t.event("campaign.stats") == "dialer/v1/spring/state/stats"
    desk = "backend/desk-1"
    assert t.command("agent.login", desk) == "dialer/v1/spring/from/backend/desk-1/cmd/agent/login"
    assert t.command_type("dialer/v1/spring/from/backend/desk-1/cmd/agent/login") == "agent.login"
    assert t.sender("dialer/v1/spring/from/backend/desk-1/cmd/agent/login") == desk
    assert t.command_type("dialer/v1/other/from/backend/desk-1/cmd/agent/login") is None
    assert t.sender("dialer/v1/spring/from/robot/x/cmd/agent/login") is None  # not a role
    assert t.reply(desk) == "dialer/v1/spring/to/backend/desk-1/reply"
    assert t.worker_cmd("worker/w1") == "dialer/v1/spring/to/worker/w1/cmd"
    assert t.worker_event("worker/w1") == "dialer/v1/spring/from/worker/w1/event"
    assert t.status("dispatcher/main") == "dialer/v1/spring/from/dispatcher/main/status"
    with pytest.raises(SchemaError):
        t.command("call.dialed", desk)
    with pytest.raises(SchemaError):
        t.worker_cmd("backend/desk-1")  # a worker's inbox belongs to a worker
    for bad in ("a/b", "+", "#", "", "w1\n", "c1\n"):
        with pytest.raises(SchemaError):
            Topics(bad)
    for bad in ("desk", "backend/+", "backend/#", "", "backend/desk\n", "backend/a/b", "root/x"):
        with pytest.raises(SchemaError):
            t.reply(bad)
    with pytest.raises(SchemaError):
        Topics("c", root="$SYS/x")


def test_outbox_keeps_order_survives_reopen_and_acks(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    seqs = [box.put(f"id{i}", "t/a", f"p{i}".encode()) for i in range(5)]
    assert seqs == sorted(seqs)
    assert box.put("id0", "t/a", b"again") == seqs[0]  # duplicate id: stored once
    box.close()
    box = Outbox(path)  # a crash and restart loses nothing
    assert [e.id for e in box.pending()] == [f"id{i}" for i in range(5)]
    box.ack(seqs[:2], now=100.0)
    assert [e.payload for e in box.pending()] == [b"p2", b"p3", b"p4"]
    assert [e.id for e in box.pending(after=seqs[3])] == ["id4"]
    assert len(box) == 3


def test_outbox_keeps_acked_messages_for_the_replay_window() -> None:
    box = Outbox()
    seqs = [box.put(f"id{i}", "t", b"x") for i in range(4)]
    box.ack(seqs[:1], now=10.0, keep=5.0)
    box.ack(seqs[1:3], now=13.0, keep=5.0)
    assert [e.id for e in box.pending()] == ["id3"] and len(box) == 1
    assert box.requeue(since=12.0) == 2  # acked within the window before a lost connection: send again
    assert [e.id for e in box.pending()] == ["id1", "id2", "id3"]  # in the original order
    box.ack(seqs[1:], now=30.0, keep=5.0)  # later acks purge what is older than the window
    assert box.requeue(since=0.0) == 3 and [e.id for e in box.pending()] == ["id1", "id2", "id3"]


def test_outbox_replace_keeps_only_the_latest_state() -> None:
    box = Outbox()
    box.put("e1", "t/event", b"1")
    box.put("s1", "t/stats", b"old", retain=True, replace=True)
    box.put("e2", "t/event", b"2")
    box.put("s2", "t/stats", b"new", retain=True, replace=True)
    assert [(e.id, e.retain) for e in box.pending()] == [("e1", False), ("e2", False), ("s2", True)]


def test_deduplicator_drops_redeliveries_only() -> None:
    d = Deduplicator(size=3)
    assert [d.first(x) for x in ["a", "b", "a", "c", "d", "e", "a"]] == [True, True, False, True, True, True, True]
    assert d.duplicates == 1


def test_outbox_keeps_the_stream_for_its_retention_and_knows_what_it_forgot(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    e1 = box.put("e1", "c/event/call/ended", b"1", stream=True)
    r1 = box.put("r1", "c/to/backend/x/reply", b"r")
    e2 = box.put("e2", "c/event/call/ended", b"2", stream=True)
    box.ack([e1, r1, e2], 100.0, keep=5.0, keep_stream=60.0)
    box.ack([box.put("r2", "c/to/backend/x/reply", b"r")], 130.0, keep=5.0, keep_stream=60.0)
    assert [e.id for e in box.since(0)] == ["e1", "e2"]  # the stream is kept for its retention ...
    assert box.oldest() == e1 and box.forgotten() == 0
    rows = box._db.execute("SELECT id FROM outbox ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["e1", "e2", "r2"]  # ... replies only for the replay window
    box.ack([box.put("r3", "c/to/backend/x/reply", b"r")], 200.0, keep=5.0, keep_stream=60.0)
    assert box.since(0) == [] and box.forgotten() == e2  # a replay from below e2 cannot be complete
