"""The demo catalogue seeder: realistic data, inserted once."""

from httpx import AsyncClient
from sqlalchemy import func, select

from meshmart_common.db import Database
from meshmart_common.settings import Environment
from product_service.domain.demo_catalogue import CATEGORIES, PRODUCTS, REVIEWS, seed
from product_service.repository.models import Category, Product, Review
from product_service.settings import Settings
from services.product.tests.support import outbox


async def count_rows(database: Database) -> tuple[int, int, int]:
    async with database.session(read_only=True) as session:
        categories = await session.scalar(select(func.count()).select_from(Category))
        products = await session.scalar(select(func.count()).select_from(Product))
        reviews = await session.scalar(select(func.count()).select_from(Review))
    return int(categories or 0), int(products or 0), int(reviews or 0)


async def test_seeding_twice_inserts_the_demo_catalogue_once(
    database_url: str, database: Database
) -> None:
    settings = Settings(environment=Environment.TEST, database_url=database_url)

    first = await seed(settings, database)
    after_first = await count_rows(database)
    second = await seed(settings, database)
    after_second = await count_rows(database)

    assert first == f"seeded 5 categories, {len(PRODUCTS)} products, {len(REVIEWS)} reviews"
    assert after_first == (5, len(PRODUCTS), len(REVIEWS))
    assert second == "demo catalogue already present"
    assert after_second == after_first
    # Each seeded product is announced once, like one an admin adds.
    announced = await outbox(database, "product.created")
    assert sorted(row.data["sku"] for row in announced) == sorted(p.sku for p in PRODUCTS)


async def test_demo_catalogue_is_realistic(client: AsyncClient, database: Database) -> None:
    settings = Settings(environment=Environment.TEST, database_url=database.url)
    await seed(settings, database)

    categories = (await client.get("/api/v1/categories")).json()
    assert sorted(c["slug"] for c in categories) == sorted(c.slug for c in CATEGORIES)
    assert len(PRODUCTS) >= 40
    for category in categories:
        listing = await client.get("/api/v1/products", params={"category": category["slug"]})
        assert listing.json()["total"] >= 5, category["slug"]
    everything = (await client.get("/api/v1/products", params={"page_size": 100})).json()
    assert everything["total"] == len(PRODUCTS)
    assert all(0 < p["price_cents"] <= 100_000_000 for p in everything["items"])
    assert {r.user_id for r in REVIEWS} == {2, 3, 4}

    headphones = next(p for p in everything["items"] if p["sku"] == "EL-1001")
    assert (headphones["rating_avg"], headphones["rating_count"]) == (4.5, 2)
    reviews = (await client.get(f"/api/v1/products/{headphones['id']}/reviews")).json()
    assert sorted(r["author"] for r in reviews["items"]) == ["alice", "bob"]


async def test_seeding_completes_a_partly_seeded_catalogue(database: Database) -> None:
    settings = Settings(environment=Environment.TEST, database_url=database.url)
    await seed(settings, database)
    async with database.session() as session:
        review = await session.scalar(select(Review).limit(1))
        assert review is not None
        await session.delete(review)

    message = await seed(settings, database)

    assert message == "seeded 0 categories, 0 products, 1 reviews"
    assert await count_rows(database) == (5, len(PRODUCTS), len(REVIEWS))
