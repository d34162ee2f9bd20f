"""The demo catalogue and its idempotent seeder (`python -m product_service seed`).

Rows are matched by natural key (category slug, product sku, review author and
product), so a second run inserts nothing and a partly seeded database is
completed rather than duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import Database
from meshmart_common.messaging.outbox import EventPublisher
from meshmart_common.settings import ServiceSettings
from product_service.domain.categories import CategoryService, NewCategory
from product_service.domain.products import NewProduct, ProductService
from product_service.domain.reviews import NewReview, Reviewer, ReviewService
from product_service.events.publishing import new_publisher
from product_service.repository.categories import CategoryRepository
from product_service.repository.products import ProductRepository
from product_service.repository.reviews import ReviewRepository


@dataclass(frozen=True, slots=True)
class DemoProduct:
    """A product of the demo catalogue, filed under a category slug."""

    sku: str
    category: str
    title: str
    price_cents: int
    stock: int
    description: str


@dataclass(frozen=True, slots=True)
class DemoReview:
    """A review by one of the user service's demo customers."""

    sku: str
    user_id: int
    email: str
    rating: int
    title: str
    body: str


CATEGORIES: tuple[NewCategory, ...] = (
    NewCategory("electronics", "Electronics", "Headphones, chargers, smart home and gadgets."),
    NewCategory("books", "Books", "Fiction, non-fiction and books for programmers."),
    NewCategory("home-kitchen", "Home & Kitchen", "Cookware, small appliances and home goods."),
    NewCategory("outdoors", "Outdoors", "Camping, hiking and gear for time outside."),
    NewCategory("toys-games", "Toys & Games", "Board games, puzzles and building sets."),
)

_E, _B, _H, _O, _T = (c.slug for c in CATEGORIES)

PRODUCTS: tuple[DemoProduct, ...] = (
    # electronics
    DemoProduct(
        "EL-1001",
        _E,
        "Wireless Noise-Cancelling Headphones",
        19999,
        35,
        "Over-ear Bluetooth 5.3 headphones with adaptive noise cancelling and 30 h battery.",
    ),
    DemoProduct(
        "EL-1002",
        _E,
        "USB-C Fast Charger 65W",
        3999,
        120,
        "Compact GaN charger with two USB-C ports and one USB-A port.",
    ),
    DemoProduct(
        "EL-1003",
        _E,
        "Mechanical Keyboard, Brown Switches",
        8999,
        40,
        "Tenkeyless keyboard with hot-swappable tactile switches and PBT keycaps.",
    ),
    DemoProduct(
        "EL-1004",
        _E,
        "27-inch 4K Monitor",
        32900,
        12,
        "IPS panel, 60 Hz, USB-C with 65 W power delivery, height-adjustable stand.",
    ),
    DemoProduct(
        "EL-1005",
        _E,
        "Smart LED Bulb, 4-Pack",
        2999,
        200,
        "Dimmable colour bulbs that work with common voice assistants, no hub needed.",
    ),
    DemoProduct(
        "EL-1006",
        _E,
        "Portable Bluetooth Speaker",
        5999,
        60,
        "Waterproof (IP67) speaker with 12 h playtime and a built-in strap.",
    ),
    DemoProduct(
        "EL-1007",
        _E,
        "Wireless Ergonomic Mouse",
        4999,
        75,
        "Vertical mouse with silent clicks, three devices and a rechargeable battery.",
    ),
    DemoProduct(
        "EL-1008",
        _E,
        "1TB Portable SSD",
        10999,
        45,
        "USB 3.2 Gen 2 solid-state drive, up to 1,050 MB/s, shock resistant.",
    ),
    DemoProduct(
        "EL-1009",
        _E,
        "Fitness Tracker Band",
        4499,
        0,
        "Heart rate, sleep and step tracking with a 10-day battery. Back in stock soon.",
    ),
    # books
    DemoProduct(
        "BK-2001",
        _B,
        "Designing Data-Intensive Applications",
        4599,
        25,
        "The big ideas behind reliable, scalable and maintainable systems.",
    ),
    DemoProduct(
        "BK-2002",
        _B,
        "The Pragmatic Programmer, 20th Anniversary Edition",
        4299,
        30,
        "From journeyman to master: timeless advice on the craft of programming.",
    ),
    DemoProduct(
        "BK-2003",
        _B,
        "Fluent Python, 2nd Edition",
        5999,
        18,
        "Clear, concise and effective programming with Python's best features.",
    ),
    DemoProduct(
        "BK-2004",
        _B,
        "Building Microservices, 2nd Edition",
        4999,
        22,
        "Designing fine-grained systems: boundaries, deployment, testing, resilience.",
    ),
    DemoProduct(
        "BK-2005",
        _B,
        "The Hobbit",
        1499,
        80,
        "Bilbo Baggins is swept into a quest to reclaim a dwarven kingdom from a dragon.",
    ),
    DemoProduct(
        "BK-2006",
        _B,
        "Project Hail Mary",
        1899,
        50,
        "A lone astronaut wakes up with no memory and a mission to save the Earth.",
    ),
    DemoProduct(
        "BK-2007",
        _B,
        "Salt, Fat, Acid, Heat",
        3500,
        15,
        "Mastering the four elements of good cooking, with illustrations.",
    ),
    DemoProduct(
        "BK-2008",
        _B,
        "Sapiens: A Brief History of Humankind",
        2199,
        40,
        "How Homo sapiens came to dominate the world, from the Stone Age on.",
    ),
    DemoProduct(
        "BK-2009",
        _B,
        "Site Reliability Engineering",
        4499,
        10,
        "How Google runs production systems: SLOs, on-call, incident response.",
    ),
    # home & kitchen
    DemoProduct(
        "HK-3001",
        _H,
        "Cast Iron Skillet 12-inch",
        3499,
        55,
        "Pre-seasoned cast iron pan for searing, baking and frying on any hob.",
    ),
    DemoProduct(
        "HK-3002",
        _H,
        "Pour-Over Coffee Set",
        3999,
        35,
        "Glass dripper, carafe and 100 paper filters for a clean, bright cup.",
    ),
    DemoProduct(
        "HK-3003",
        _H,
        "Electric Kettle, Variable Temperature",
        5999,
        28,
        "1.7 l stainless steel kettle with six presets for tea and coffee.",
    ),
    DemoProduct(
        "HK-3004",
        _H,
        "Chef's Knife 8-inch",
        7999,
        20,
        "High-carbon stainless steel blade, full tang, balanced handle.",
    ),
    DemoProduct(
        "HK-3005",
        _H,
        "Bamboo Cutting Board Set",
        2499,
        65,
        "Three boards with juice grooves, gentle on knife edges.",
    ),
    DemoProduct(
        "HK-3006",
        _H,
        "Air Fryer 5.5 l",
        9999,
        16,
        "Crispy results with little oil; dishwasher-safe basket, eight presets.",
    ),
    DemoProduct(
        "HK-3007",
        _H,
        "Linen Duvet Cover, Queen",
        12900,
        14,
        "Stone-washed European flax linen that gets softer with every wash.",
    ),
    DemoProduct(
        "HK-3008",
        _H,
        "Glass Food Storage Containers, 10-Pack",
        3299,
        70,
        "Oven, freezer and microwave safe, with leak-proof locking lids.",
    ),
    DemoProduct(
        "HK-3009",
        _H,
        "Stand Mixer",
        27999,
        6,
        "4.8 l bowl, ten speeds, dough hook, whisk and flat beater included.",
    ),
    # outdoors
    DemoProduct(
        "OD-4001",
        _O,
        "Two-Person Backpacking Tent",
        18999,
        14,
        "Freestanding 1.6 kg tent with two doors and a full-coverage rainfly.",
    ),
    DemoProduct(
        "OD-4002",
        _O,
        "Down Sleeping Bag, -5 C",
        21900,
        10,
        "650-fill responsibly sourced down, packs down to the size of a melon.",
    ),
    DemoProduct(
        "OD-4003",
        _O,
        "Trekking Poles, Pair",
        6999,
        40,
        "Carbon fibre, cork grips, flick locks; 110-135 cm adjustable.",
    ),
    DemoProduct(
        "OD-4004",
        _O,
        "Insulated Water Bottle 1 l",
        3499,
        150,
        "Double-wall stainless steel: cold for 24 h, hot for 12 h.",
    ),
    DemoProduct(
        "OD-4005",
        _O,
        "Headlamp 400 Lumens",
        2999,
        90,
        "Rechargeable headlamp with red night mode and lock-out switch.",
    ),
    DemoProduct(
        "OD-4006",
        _O,
        "Hiking Daypack 28 l",
        8999,
        30,
        "Ventilated back panel, hip belt pockets and an integrated rain cover.",
    ),
    DemoProduct(
        "OD-4007",
        _O,
        "Camping Stove with Igniter",
        4999,
        25,
        "Ultralight canister stove that boils a litre of water in 3.5 minutes.",
    ),
    DemoProduct(
        "OD-4008",
        _O,
        "Packable Rain Jacket",
        11900,
        22,
        "Waterproof breathable shell that packs into its own pocket.",
    ),
    DemoProduct(
        "OD-4009",
        _O,
        "Camp Chair, Folding",
        5499,
        35,
        "Aluminium frame, 145 kg capacity, cup holder, carry bag.",
    ),
    # toys & games
    DemoProduct(
        "TG-5001",
        _T,
        "Catan Board Game",
        4999,
        40,
        "Trade, build and settle the island of Catan; 3-4 players, ages 10+.",
    ),
    DemoProduct(
        "TG-5002",
        _T,
        "1000-Piece Jigsaw Puzzle, World Map",
        1999,
        60,
        "Vintage world map puzzle with a poster for reference.",
    ),
    DemoProduct(
        "TG-5003",
        _T,
        "Building Bricks Space Shuttle",
        8999,
        20,
        "1,200-piece buildable shuttle with a working cargo bay and display stand.",
    ),
    DemoProduct(
        "TG-5004",
        _T,
        "Wooden Train Set, 52 Pieces",
        5999,
        18,
        "Beech wood tracks, bridge, tunnel and magnetic carriages, ages 3+.",
    ),
    DemoProduct(
        "TG-5005",
        _T,
        "Ticket to Ride",
        4499,
        35,
        "Collect train cards and claim railway routes across North America.",
    ),
    DemoProduct(
        "TG-5006",
        _T,
        "Remote Control Car, Off-Road",
        3999,
        30,
        "1:18 scale 4WD buggy, 25 km/h, two rechargeable batteries.",
    ),
    DemoProduct(
        "TG-5007", _T, "Plush Teddy Bear", 1599, 100, "Soft, washable classic bear, 30 cm tall."
    ),
    DemoProduct(
        "TG-5008",
        _T,
        "Chess Set, Wooden",
        3999,
        25,
        "Folding walnut board with weighted Staunton pieces.",
    ),
    DemoProduct(
        "TG-5009",
        _T,
        "Kids' Science Kit",
        2999,
        45,
        "Twenty safe experiments: volcanoes, crystals, slime and more.",
    ),
)

_ALICE = (2, "alice@example.com")
_BOB = (3, "bob@example.com")
_CAROL = (4, "carol@example.com")

REVIEWS: tuple[DemoReview, ...] = (
    DemoReview(
        "EL-1001",
        *_ALICE,
        5,
        "Blissful quiet",
        "The noise cancelling is superb on flights and the battery lasts all week.",
    ),
    DemoReview(
        "EL-1001",
        *_BOB,
        4,
        "Great sound, snug fit",
        "Sound is rich; they get a little warm after a couple of hours.",
    ),
    DemoReview(
        "EL-1003",
        *_CAROL,
        5,
        "Typing joy",
        "Tactile without being loud. The PBT keycaps feel great.",
    ),
    DemoReview(
        "BK-2001",
        *_ALICE,
        5,
        "Essential reading",
        "Explains replication and consensus better than anything else I've read.",
    ),
    DemoReview(
        "BK-2001",
        *_CAROL,
        4,
        "Dense but worth it",
        "Take it a chapter at a time; every one of them pays off.",
    ),
    DemoReview(
        "HK-3001",
        *_BOB,
        5,
        "Will outlive me",
        "Heats evenly and the seasoning only gets better. Perfect steaks.",
    ),
    DemoReview(
        "HK-3006",
        *_ALICE,
        3,
        "Good, but small",
        "Cooks well, though the basket only fits food for two.",
    ),
    DemoReview(
        "OD-4001",
        *_CAROL,
        4,
        "Light and roomy",
        "Stayed dry through a night of rain; pitching takes five minutes.",
    ),
    DemoReview(
        "TG-5001",
        *_BOB,
        5,
        "Family favourite",
        "We play every weekend; easy to learn and different every time.",
    ),
    DemoReview(
        "TG-5001",
        *_ALICE,
        4,
        "Fun with four",
        "Best with four players; with three the board feels empty.",
    ),
)


def demo_image_url(sku: str) -> str:
    """A stable placeholder picture per product."""
    return f"https://picsum.photos/seed/{sku.lower()}/600/600"


@dataclass(frozen=True, slots=True)
class SeedCounts:
    """How many rows one seeding run inserted."""

    categories: int
    products: int
    reviews: int

    @property
    def nothing(self) -> bool:
        """True when everything was already there."""
        return not (self.categories or self.products or self.reviews)


async def seed_demo_catalogue(
    session: AsyncSession, publisher: EventPublisher | None = None
) -> SeedCounts:
    """Insert whatever part of the demo catalogue is missing (through the domain services).

    New products are announced like any other (product.created in the outbox);
    the service's relay publishes them once it runs.
    """
    category_repo = CategoryRepository(session)
    category_service = CategoryService(session)
    category_ids: dict[str, int] = {}
    new_categories = 0
    for demo_category in CATEGORIES:
        category = await category_repo.get_by_slug(demo_category.slug)
        if category is None:
            category = await category_service.create(demo_category)
            new_categories += 1
        category_ids[category.slug] = category.id

    products = ProductService(session, publisher or new_publisher())
    product_ids = await ProductRepository(session).ids_by_sku(p.sku for p in PRODUCTS)
    new_products = 0
    for demo in PRODUCTS:
        if demo.sku in product_ids:
            continue
        product = await products.create(
            NewProduct(
                sku=demo.sku,
                title=demo.title,
                description=demo.description,
                price_cents=demo.price_cents,
                category_id=category_ids[demo.category],
                image_url=demo_image_url(demo.sku),
                stock=demo.stock,
            )
        )
        product_ids[demo.sku] = product.id
        new_products += 1

    review_repo = ReviewRepository(session)
    reviews = ReviewService(session)
    new_reviews = 0
    for demo_review in REVIEWS:
        product_id = product_ids[demo_review.sku]
        existing = await review_repo.get_by_author(product_id, demo_review.user_id)
        if existing is not None:
            continue
        product = await products.get(product_id)
        if product.is_deleted:
            continue  # an admin removed it; do not bring it back through a review
        await reviews.add(
            product_id,
            Reviewer(user_id=demo_review.user_id, email=demo_review.email),
            NewReview(rating=demo_review.rating, title=demo_review.title, body=demo_review.body),
        )
        new_reviews += 1
    return SeedCounts(categories=new_categories, products=new_products, reviews=new_reviews)


async def seed(settings: ServiceSettings, database: Database) -> str | None:
    """The CLI seeder: fill in the demo catalogue; say what was inserted."""
    async with database.session() as session:
        counts = await seed_demo_catalogue(session)
    if counts.nothing:
        return "demo catalogue already present"
    return (
        f"seeded {counts.categories} categories, {counts.products} products, "
        f"{counts.reviews} reviews"
    )
