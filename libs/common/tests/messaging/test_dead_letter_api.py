"""The dead-letter admin API: list, replay, discard (admins only), through the tickets app."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select

from libs.common.tests.messaging.ticketing import (
    TICKET_EVENTS,
    TICKET_GROUP,
    DeadLetter,
    HandledTicket,
    InboxEvent,
)
from meshmart_common.db import Database
from meshmart_common.messaging.testing import eventually
from meshmart_common.testing import assert_problem

DEAD_LETTERS = "/api/v1/admin/dead-letters"


async def open_ticket(client: AsyncClient, title: str, fail_times: int) -> dict[str, Any]:
    response = await client.post("/api/v1/tickets", json={"title": title, "fail_times": fail_times})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def parked(
    client: AsyncClient, headers: dict[str, str], count: int = 1
) -> list[dict[str, Any]]:
    """Wait until ``count`` dead letters are parked; return them."""

    async def probe() -> list[dict[str, Any]]:
        response = await client.get(DEAD_LETTERS, headers=headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items if len(items) >= count else []

    return await eventually(probe, what=f"{count} parked dead letters")


def database_of(app: FastAPI) -> Database:
    database: Database = app.state.database
    return database


async def handled_rows(app: FastAPI) -> list[HandledTicket]:
    async with database_of(app).session() as session:
        return list(await session.scalars(select(HandledTicket).order_by(HandledTicket.id)))


async def test_a_parked_event_is_listed_with_what_an_operator_needs(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    ticket = await open_ticket(client, "poison", fail_times=-1)

    [letter] = await parked(client, admin_headers)

    assert letter["state"] == "parked"
    assert letter["consumer_group"] == TICKET_GROUP.name
    assert letter["topic"] == TICKET_EVENTS
    assert letter["event_id"] == ticket["event_id"]
    assert letter["event_type"] == "ticket.opened"
    assert letter["message_key"] == str(ticket["id"])
    assert f'"id":"{ticket["event_id"]}"' in letter["body"]
    assert letter["properties"]["traceparent"].startswith("00-")
    assert letter["attempts"] == 3
    assert letter["error"].startswith(f"RuntimeError: ticket {ticket['id']} refused on delivery 3")
    assert letter["first_failed_at"] <= letter["last_failed_at"] <= letter["parked_at"]
    retrying = await client.get(DEAD_LETTERS, params={"state": "retrying"}, headers=admin_headers)
    assert retrying.json()["total"] == 0


async def test_the_list_is_paginated_and_filtered_by_group(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    first = await open_ticket(client, "poison 1", fail_times=-1)
    second = await open_ticket(client, "poison 2", fail_times=-1)
    await parked(client, admin_headers, count=2)

    page_one = await client.get(DEAD_LETTERS, params={"page_size": 1}, headers=admin_headers)
    page_two = await client.get(
        DEAD_LETTERS, params={"page_size": 1, "page": 2}, headers=admin_headers
    )
    other_group = await client.get(
        DEAD_LETTERS, params={"consumer_group": "nobody"}, headers=admin_headers
    )

    assert page_one.json()["total"] == 2
    assert [item["event_id"] for item in page_one.json()["items"]] == [first["event_id"]]
    assert [item["event_id"] for item in page_two.json()["items"]] == [second["event_id"]]
    assert other_group.json() == {"items": [], "total": 0, "page": 1, "page_size": 20}


async def test_replay_runs_the_handler_and_clears_the_dead_letter(
    app: FastAPI, client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    # Fails on deliveries 1-3 (max_attempts), so it is parked; the replay is delivery 4.
    ticket = await open_ticket(client, "flaky", fail_times=3)
    [letter] = await parked(client, admin_headers)
    assert await handled_rows(app) == []

    response = await client.post(f"{DEAD_LETTERS}/{letter['id']}/replay", headers=admin_headers)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": letter["id"],
        "event_id": ticket["event_id"],
        "outcome": "handled",
    }
    [effect] = await handled_rows(app)
    assert (effect.ticket_id, effect.event_id, effect.replay) == (
        ticket["id"],
        ticket["event_id"],
        True,
    )
    assert (await client.get(DEAD_LETTERS, headers=admin_headers)).json()["total"] == 0
    again = await client.post(f"{DEAD_LETTERS}/{letter['id']}/replay", headers=admin_headers)
    assert_problem(again, 404)


async def test_a_replay_that_fails_again_answers_409_and_keeps_the_dead_letter(
    app: FastAPI, client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    ticket = await open_ticket(client, "poison", fail_times=-1)
    [letter] = await parked(client, admin_headers)

    response = await client.post(f"{DEAD_LETTERS}/{letter['id']}/replay", headers=admin_headers)

    problem = assert_problem(response, 409)
    assert f"ticket {ticket['id']} refused on delivery 4" in problem["detail"]
    [kept] = (await client.get(DEAD_LETTERS, headers=admin_headers)).json()["items"]
    assert kept["attempts"] == 4
    assert "refused on delivery 4" in kept["error"]
    assert await handled_rows(app) == []


async def test_replaying_an_event_handled_meanwhile_only_clears_the_dead_letter(
    app: FastAPI, client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    ticket = await open_ticket(client, "poison", fail_times=-1)
    [letter] = await parked(client, admin_headers)
    async with database_of(app).session() as session:
        session.add(
            InboxEvent(
                consumer_group=TICKET_GROUP.name,
                event_id=ticket["event_id"],
                event_type="ticket.opened",
                handled_at=datetime.now(UTC),
            )
        )

    response = await client.post(f"{DEAD_LETTERS}/{letter['id']}/replay", headers=admin_headers)

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "already_handled"
    assert await handled_rows(app) == []
    assert (await client.get(DEAD_LETTERS, headers=admin_headers)).json()["total"] == 0


async def store_dead_letter(app: FastAPI, *, body: bytes, parked: bool) -> int:
    now = datetime.now(UTC)
    async with database_of(app).session() as session:
        letter = DeadLetter(
            consumer_group=TICKET_GROUP.name,
            topic=TICKET_EVENTS,
            message_id=f"m-{now.timestamp()}",
            event_id=None,
            event_type="ticket.opened",
            message_key="k",
            body=body,
            properties={},
            error="InvalidEnvelope: ...",
            attempts=1,
            first_failed_at=now,
            last_failed_at=now,
            parked_at=now if parked else None,
        )
        session.add(letter)
        await session.flush()
        return letter.id


async def test_a_dead_letter_that_is_not_a_cloudevent_cannot_be_replayed_but_can_be_dropped(
    app: FastAPI, client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    letter_id = await store_dead_letter(app, body=b"\xff\xfe garbage", parked=True)

    [listed] = (await client.get(DEAD_LETTERS, headers=admin_headers)).json()["items"]
    replay = await client.post(f"{DEAD_LETTERS}/{letter_id}/replay", headers=admin_headers)
    dropped = await client.delete(f"{DEAD_LETTERS}/{letter_id}", headers=admin_headers)
    dropped_again = await client.delete(f"{DEAD_LETTERS}/{letter_id}", headers=admin_headers)

    assert listed["body"] == "\ufffd\ufffd garbage"
    assert "not JSON" in assert_problem(replay, 409)["detail"]
    assert dropped.status_code == 204
    assert_problem(dropped_again, 404)


async def test_a_dead_letter_still_retrying_is_not_replayed(
    app: FastAPI, client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    letter_id = await store_dead_letter(app, body=b"{}", parked=False)

    listed = await client.get(DEAD_LETTERS, params={"state": "retrying"}, headers=admin_headers)
    replay = await client.post(f"{DEAD_LETTERS}/{letter_id}/replay", headers=admin_headers)

    assert [item["id"] for item in listed.json()["items"]] == [letter_id]
    assert "still being retried" in assert_problem(replay, 409)["detail"]


async def test_unknown_and_impossible_ids_are_404_and_422(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(await client.post(f"{DEAD_LETTERS}/424242/replay", headers=admin_headers), 404)
    huge = await client.post(f"{DEAD_LETTERS}/{2**70}/replay", headers=admin_headers)
    assert_problem(huge, 422, field="dead_letter_id")
    zero = await client.delete(f"{DEAD_LETTERS}/0", headers=admin_headers)
    assert_problem(zero, 422, field="dead_letter_id")
    bad_state = await client.get(DEAD_LETTERS, params={"state": "gone"}, headers=admin_headers)
    assert_problem(bad_state, 422, field="state")


async def test_only_admins_may_see_or_touch_dead_letters(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    assert_problem(await client.get(DEAD_LETTERS, headers=customer_headers), 403)
    assert_problem(await client.post(f"{DEAD_LETTERS}/1/replay", headers=customer_headers), 403)
    assert_problem(await client.delete(f"{DEAD_LETTERS}/1", headers=customer_headers), 403)
    assert_problem(await client.get(DEAD_LETTERS), 401)
    assert_problem(await client.post(f"{DEAD_LETTERS}/1/replay"), 401)


async def test_the_routes_are_documented(client: AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert paths[DEAD_LETTERS]["get"]["description"].startswith("List dead letters")
    replay = paths[f"{DEAD_LETTERS}/{{dead_letter_id}}/replay"]["post"]
    assert replay["description"].startswith("Handle a parked message again")
    assert {"200", "403", "404", "409"} <= set(replay["responses"])
