"""The cart: live titles and prices from product, stale data while product is down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.testing import assert_problem
from order_service.components import Components
from services.order.tests.shop import Shop
from services.order.tests.stubs import Mode, ProductStub

CART = "/api/v1/cart"
HeadersOf = Callable[..., dict[str, str]]


def item_url(product_id: int) -> str:
    return f"{CART}/items/{product_id}"


async def read_cart(api: AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.get(CART, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_new_cart_is_empty(api: AsyncClient, customer_headers: dict[str, str]) -> None:
    assert await read_cart(api, customer_headers) == {
        "items": [],
        "subtotal_cents": 0,
        "currency": "USD",
        "stale": False,
    }


async def test_putting_a_product_shows_its_live_title_price_and_stock(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    lamp = product_service.add("Desk Lamp", 2599, on_hand=7)
    lamp.reserved = 2

    response = await api.put(item_url(lamp.id), json={"quantity": 3}, headers=customer_headers)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "items": [
            {
                "product_id": lamp.id,
                "quantity": 3,
                "title": "Desk Lamp",
                "unit_price_cents": 2599,
                "line_total_cents": 7797,
                "available": 5,
                "stale": False,
                "deleted": False,
            }
        ],
        "subtotal_cents": 7797,
        "currency": "USD",
        "stale": False,
    }
    assert await read_cart(api, customer_headers) == response.json()


async def test_putting_a_product_again_sets_its_quantity(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    mug = product_service.add("Mug", 800)
    await api.put(item_url(mug.id), json={"quantity": 2}, headers=customer_headers)
    response = await api.put(item_url(mug.id), json={"quantity": 5}, headers=customer_headers)

    [item] = response.json()["items"]
    assert (item["quantity"], item["line_total_cents"]) == (5, 4000)
    assert response.json()["subtotal_cents"] == 4000


async def test_the_cart_shows_the_price_product_asks_now(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    kettle = product_service.add("Kettle", 3000)
    await api.put(item_url(kettle.id), json={"quantity": 2}, headers=customer_headers)

    kettle.price_cents = 2500
    kettle.title = "Kettle (sale)"
    kettle.reserved = 10

    cart = await read_cart(api, customer_headers)
    [item] = cart["items"]
    assert (item["title"], item["unit_price_cents"], item["line_total_cents"]) == (
        "Kettle (sale)",
        2500,
        5000,
    )
    assert item["available"] == 0
    assert cart["subtotal_cents"] == 5000


async def test_lines_keep_the_order_they_were_added_in_and_add_up(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    first = product_service.add("First", 100)
    second = product_service.add("Second", 250)
    third = product_service.add("Third", 1000)
    for product, quantity in ((second, 4), (first, 1), (third, 2)):
        await api.put(item_url(product.id), json={"quantity": quantity}, headers=customer_headers)
    await api.put(item_url(second.id), json={"quantity": 3}, headers=customer_headers)

    cart = await read_cart(api, customer_headers)
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [
        (second.id, 3),
        (first.id, 1),
        (third.id, 2),
    ]
    assert cart["subtotal_cents"] == 3 * 250 + 100 + 2 * 1000


async def test_products_of_a_cart_are_asked_concurrently(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    products = [product_service.add(f"P{n}", 100 * n) for n in range(1, 5)]
    for product in products:
        await api.put(item_url(product.id), json={"quantity": 1}, headers=customer_headers)
    product_service.delay_seconds = 0.05
    product_service.max_in_flight = 0

    cart = await read_cart(api, customer_headers)

    assert len(cart["items"]) == 4
    assert product_service.max_in_flight == 4


async def test_calls_to_product_carry_the_callers_token_and_request_id(
    api: AsyncClient,
    customer_headers: dict[str, str],
    customer_token: str,
    product_service: ProductStub,
) -> None:
    pen = product_service.add("Pen", 150)
    await api.put(
        item_url(pen.id),
        json={"quantity": 1},
        headers={**customer_headers, "X-Request-ID": "cart-req-1"},
    )
    await api.get(CART, headers={**customer_headers, "X-Request-ID": "cart-req-2"})

    assert [(s.path, s.authorization, s.request_id) for s in product_service.seen] == [
        (f"/api/v1/products/{pen.id}", f"Bearer {customer_token}", "cart-req-1"),
        (f"/api/v1/products/{pen.id}", f"Bearer {customer_token}", "cart-req-2"),
    ]


async def test_removing_a_line_answers_the_rest_of_the_cart(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    keep = product_service.add("Keep", 500)
    drop = product_service.add("Drop", 900)
    await api.put(item_url(keep.id), json={"quantity": 2}, headers=customer_headers)
    await api.put(item_url(drop.id), json={"quantity": 1}, headers=customer_headers)

    response = await api.delete(item_url(drop.id), headers=customer_headers)

    assert response.status_code == 200
    assert [i["product_id"] for i in response.json()["items"]] == [keep.id]
    assert response.json()["subtotal_cents"] == 1000
    again = await api.delete(item_url(drop.id), headers=customer_headers)
    body = assert_problem(again, 404)
    assert body["detail"] == f"Product {drop.id} is not in the cart."


async def test_emptying_the_cart(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    for title in ("A", "B"):
        product = product_service.add(title, 100)
        await api.put(item_url(product.id), json={"quantity": 1}, headers=customer_headers)

    response = await api.delete(CART, headers=customer_headers)

    assert response.status_code == 204
    assert response.content == b""
    assert (await read_cart(api, customer_headers))["items"] == []
    assert (await api.delete(CART, headers=customer_headers)).status_code == 204


async def test_an_unknown_or_deleted_product_cannot_be_put_in_the_cart(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    gone = product_service.add("Gone", 100)
    gone.deleted = True

    unknown = await api.put(item_url(999_999), json={"quantity": 1}, headers=customer_headers)
    deleted = await api.put(item_url(gone.id), json={"quantity": 1}, headers=customer_headers)

    assert assert_problem(unknown, 404)["detail"] == "Product 999999 does not exist."
    assert assert_problem(deleted, 404)["detail"] == f"Product {gone.id} does not exist."
    assert (await read_cart(api, customer_headers))["items"] == []


async def test_a_product_deleted_after_it_was_put_in_is_shown_but_not_counted(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    kept = product_service.add("Kept", 300)
    retired = product_service.add("Retired", 700)
    for product in (kept, retired):
        await api.put(item_url(product.id), json={"quantity": 1}, headers=customer_headers)
    retired.deleted = True

    cart = await read_cart(api, customer_headers)

    assert [(i["product_id"], i["deleted"], i["available"]) for i in cart["items"]] == [
        (kept.id, False, 10),
        (retired.id, True, 0),
    ]
    assert cart["subtotal_cents"] == 300


@pytest.mark.parametrize(
    "quantity",
    [0, -1, 100, 10_001, 1.5, 2.0, "2", True, None],
    ids=["zero", "negative", "over-99", "huge", "fraction", "float", "string", "bool", "null"],
)
async def test_quantity_must_be_a_whole_number_from_1_to_99(
    api: AsyncClient,
    customer_headers: dict[str, str],
    product_service: ProductStub,
    quantity: Any,
) -> None:
    product = product_service.add("Anything", 100)
    response = await api.put(
        item_url(product.id), json={"quantity": quantity}, headers=customer_headers
    )
    assert_problem(response, 422, field="quantity")
    assert (await read_cart(api, customer_headers))["items"] == []


async def test_99_units_fit_and_bodies_are_strict(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    product = product_service.add("Bulk", 100)
    ok = await api.put(item_url(product.id), json={"quantity": 99}, headers=customer_headers)
    assert ok.json()["items"][0]["quantity"] == 99

    extra = await api.put(
        item_url(product.id), json={"quantity": 1, "price_cents": 1}, headers=customer_headers
    )
    assert_problem(extra, 422, field="price_cents")
    missing = await api.put(item_url(product.id), json={}, headers=customer_headers)
    assert_problem(missing, 422, field="quantity")
    garbage = await api.put(
        item_url(product.id),
        content=b"{not json",
        headers={**customer_headers, "Content-Type": "application/json"},
    )
    assert garbage.status_code == 422
    assert (await read_cart(api, customer_headers))["items"][0]["quantity"] == 99


@pytest.mark.parametrize("product_id", ["0", "-1", "2147483648", "abc", "1.5"])
async def test_product_ids_in_paths_are_bounded(
    api: AsyncClient, customer_headers: dict[str, str], product_id: str
) -> None:
    url = f"{CART}/items/{product_id}"
    put = await api.put(url, json={"quantity": 1}, headers=customer_headers)
    delete = await api.delete(url, headers=customer_headers)
    assert_problem(put, 422, field="product_id")
    assert_problem(delete, 422, field="product_id")


async def test_a_full_cart_takes_no_new_product_but_changes_to_its_lines(
    api: AsyncClient,
    customer_headers: dict[str, str],
    product_service: ProductStub,
    components: Components,
) -> None:
    components.settings = components.settings.model_copy(update={"max_cart_lines": 2})
    first, second, third = (product_service.add(t, 100) for t in ("A", "B", "C"))
    for product in (first, second):
        await api.put(item_url(product.id), json={"quantity": 1}, headers=customer_headers)

    full = await api.put(item_url(third.id), json={"quantity": 1}, headers=customer_headers)
    change = await api.put(item_url(first.id), json={"quantity": 4}, headers=customer_headers)

    assert assert_problem(full, 409)["detail"] == (
        "The cart already holds 2 products; remove one first."
    )
    assert change.status_code == 200
    assert [(i["product_id"], i["quantity"]) for i in change.json()["items"]] == [
        (first.id, 4),
        (second.id, 1),
    ]


@pytest.mark.parametrize("mode", [Mode.DOWN, Mode.SLOW, Mode.BROKEN])
async def test_while_product_is_out_the_cart_shows_last_known_data_marked_stale(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub, mode: Mode
) -> None:
    lamp = product_service.add("Lamp", 2000)
    mug = product_service.add("Mug", 500)
    await api.put(item_url(lamp.id), json={"quantity": 1}, headers=customer_headers)
    await api.put(item_url(mug.id), json={"quantity": 2}, headers=customer_headers)
    lamp.price_cents = 1800  # a change the cart cannot learn while product is out
    product_service.mode = mode

    cart = await read_cart(api, customer_headers)

    assert cart == {
        "items": [
            {
                "product_id": lamp.id,
                "quantity": 1,
                "title": "Lamp",
                "unit_price_cents": 2000,
                "line_total_cents": 2000,
                "available": None,
                "stale": True,
                "deleted": False,
            },
            {
                "product_id": mug.id,
                "quantity": 2,
                "title": "Mug",
                "unit_price_cents": 500,
                "line_total_cents": 1000,
                "available": None,
                "stale": True,
                "deleted": False,
            },
        ],
        "subtotal_cents": 3000,
        "currency": "USD",
        "stale": True,
    }
    product_service.mode = Mode.UP
    assert (await read_cart(api, customer_headers))["items"][0]["unit_price_cents"] == 1800


async def test_only_the_lines_product_failed_to_answer_are_stale(
    api: AsyncClient, customer_headers: dict[str, str], product_service: ProductStub
) -> None:
    fine = product_service.add("Fine", 100)
    flaky = product_service.add("Flaky", 200)
    for product in (fine, flaky):
        await api.put(item_url(product.id), json={"quantity": 1}, headers=customer_headers)
    product_service.failing.add(flaky.id)

    cart = await read_cart(api, customer_headers)

    assert [(i["product_id"], i["stale"]) for i in cart["items"]] == [
        (fine.id, False),
        (flaky.id, True),
    ]
    assert cart["stale"] is True


@pytest.mark.parametrize(
    ("mode", "status", "detail"),
    [
        (Mode.DOWN, 503, "product is unavailable."),
        (Mode.SLOW, 504, "product did not answer within 0.5 s."),
        (Mode.BROKEN, 502, "product failed to answer GET /api/v1/products/{id} (status 500)."),
    ],
)
async def test_putting_a_product_while_product_is_out_fails_with_a_gateway_problem(
    api: AsyncClient,
    customer_headers: dict[str, str],
    product_service: ProductStub,
    mode: Mode,
    status: int,
    detail: str,
) -> None:
    lamp = product_service.add("Lamp", 2000)
    product_service.mode = mode

    response = await api.put(item_url(lamp.id), json={"quantity": 1}, headers=customer_headers)

    body = assert_problem(response, status)
    assert body["detail"] == detail.format(id=lamp.id)
    product_service.mode = Mode.UP
    assert (await read_cart(api, customer_headers))["items"] == []


async def test_each_customer_sees_only_their_own_cart(
    api: AsyncClient, headers_of: HeadersOf, product_service: ProductStub
) -> None:
    alice, bob = headers_of(2001), headers_of(2002)
    book = product_service.add("Book", 1200)
    await api.put(item_url(book.id), json={"quantity": 2}, headers=alice)

    assert (await read_cart(api, bob))["items"] == []
    assert_problem(await api.delete(item_url(book.id), headers=bob), 404)
    assert (await api.delete(CART, headers=bob)).status_code == 204
    assert [i["quantity"] for i in (await read_cart(api, alice))["items"]] == [2]


async def test_the_cart_needs_a_signed_in_user(api: AsyncClient) -> None:
    assert_problem(await api.get(CART), 401)
    assert_problem(await api.put(item_url(1), json={"quantity": 1}), 401)
    assert_problem(await api.delete(item_url(1)), 401)
    assert_problem(await api.delete(CART), 401)
    assert_problem(await api.get(CART, headers={"Authorization": "Bearer not-a-token"}), 401)


async def test_concurrent_puts_of_one_product_leave_one_line(
    api: AsyncClient, customer_headers: dict[str, str], shop: Shop
) -> None:
    product = shop.product(700)
    responses = await asyncio.gather(
        *(
            api.put(item_url(product.id), json={"quantity": q}, headers=customer_headers)
            for q in (1, 2, 3, 4)
        )
    )
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    cart = await read_cart(api, customer_headers)
    assert len(cart["items"]) == 1
    assert cart["items"][0]["quantity"] in {1, 2, 3, 4}
