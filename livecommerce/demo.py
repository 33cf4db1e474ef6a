"""`livecommerce demo`: a market a newcomer can click through — stalls, products with pictures,
a staff and a host account, the Monday/Wednesday series, one broadcast live right now, and an address
book for the postcode search (`data/addresses-demo.csv`: roads around Seoul's traditional markets)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from coupons import claims, giveaways
from coupons.models import CouponDrop, EntryMode, Giveaway
from orders.address_book import import_csv
from orders.models import DeliveryOption, LineupSale, OrderStatus, Purchase, PurchaseLine
from orders.settings import seed_demo_order_settings
from sessions.models import Broadcast, BroadcastHost, BroadcastState, ChatMessage, LineupItem
from sessions.schedule import weekly_rrule

from .accounts import create_user, set_password
from .config import Config
from .models import Market, Merchant, Product, Role, User

# Demo data: real roads of Seoul's Jung-gu, Jongno-gu, Mapo-gu and Dongdaemun-gu, around their markets.
DEMO_ADDRESSES = Path(__file__).with_name("data") / "addresses-demo.csv"

# (merchant ko, merchant en, [(name ko, name en, image, price, live price, stock, unit ko, unit en, desc ko, desc en)])
STALLS = [
    ("할머니 손만두", "Grandma's Dumplings", [
        ("고기 손만두 20개", "Handmade pork dumplings (20)", "dumplings.svg", 12900, 9900, 120, "팩", "pack",
         "매일 아침 빚는 두툼한 고기만두", "Plump pork dumplings folded every morning"),
        ("김치 손만두 20개", "Kimchi dumplings (20)", "dumplings.svg", 12900, 9900, 80, "팩", "pack",
         "칼칼한 묵은지로 속을 채운 만두", "Filled with well-aged, spicy kimchi"),
    ]),
    ("참고소 방앗간", "Chamgoso Oil Mill", [
        ("저온 압착 참기름 300ml", "Cold-pressed sesame oil 300ml", "sesame-oil.svg", 18000, 13900, 60, "병", "bottle",
         "국산 참깨를 그날 볶아 짠 참기름", "Korean sesame roasted and pressed the same day"),
        ("생들기름 300ml", "Raw perilla oil 300ml", "perilla-oil.svg", 16000, 12900, 50, "병", "bottle",
         "볶지 않고 짜 고소함이 살아 있는 들기름", "Pressed unroasted for a fresh, nutty taste"),
    ]),
    ("신당 떡볶이", "Sindang Tteokbokki", [
        ("쌀떡볶이 밀키트 2인분", "Rice tteokbokki kit for two", "tteokbokki.svg", 9900, 6900, 200, "세트", "kit",
         "쫄깃한 쌀떡과 비법 양념 소스", "Chewy rice cakes with the house sauce"),
        ("모둠 떡 1kg", "Assorted rice cakes 1kg", "rice-cakes.svg", 15000, 11900, 40, "상자", "box",
         "송편, 꿀떡, 가래떡 모둠", "Songpyeon, honey tteok and garae-tteok"),
    ]),
    ("종가 반찬", "Jongga Side Dishes", [
        ("포기김치 2kg", "Whole-cabbage kimchi 2kg", "kimchi.svg", 24000, 18900, 70, "통", "tub",
         "해남 배추로 담근 포기김치", "Made with Haenam napa cabbage"),
        ("꼬마김밥 10줄", "Mini gimbap (10 rolls)", "gimbap.svg", 8000, 6500, 90, "세트", "set",
         "참기름 향 가득한 꼬마김밥", "Little rolls glossy with sesame oil"),
    ]),
    ("원조 호떡", "The Original Hotteok", [
        ("씨앗호떡 5개", "Seed hotteok (5)", "hotteok.svg", 7500, 5500, 150, "봉", "bag",
         "흑설탕과 견과가 듬뿍", "Brown sugar and plenty of nuts"),
    ]),
]


@dataclass
class DemoResult:
    created: bool
    market_id: int
    live_broadcast_id: int
    staff_password: str
    host_password: str
    merchant_password: str
    past_broadcast_id: int | None = None  # last week's show (made with the market): its report and replay


def _password() -> str:
    return "demo-" + secrets.token_urlsafe(6)


async def _account(db: AsyncSession, username: str, role: Role, display: str, password: str,
                   merchant_id: int | None = None) -> User:
    user = await db.scalar(select(User).where(User.username == username))
    if user is None:
        return await create_user(db, username=username, role=role, password=password, display_name=display,
                                 merchant_id=merchant_id)
    await set_password(db, user, password)
    return user


async def seed(db: AsyncSession, config: Config, now: datetime, stream_url: str = "") -> DemoResult:
    """Fill an empty database with the demo market; on a database that has it already, give the demo
    accounts new passwords and make sure one broadcast is live. `stream_url`: the video of the live
    broadcast (the demo's own stream, `demo_video`), given to one that has none."""
    tz = config.tz
    market = await db.scalar(select(Market).where(Market.slug == "hanmaum"))
    created = market is None
    products: list[tuple[Product, int]] = []
    if market is None:
        market = Market(slug="hanmaum", name_ko="한마음 전통시장", name_en="Hanmaum Traditional Market",
                        description_ko="월·수 저녁, 시장 상인들이 직접 소개하는 라이브 장터",
                        description_en="Monday and Wednesday evenings: the stallholders sell live",
                        logo="/static/demo/market.svg")
        db.add(market)
        await db.flush()
        for m_ko, m_en, items in STALLS:
            merchant = Merchant(market_id=market.id, name_ko=m_ko, name_en=m_en)
            db.add(merchant)
            await db.flush()
            for n_ko, n_en, img, price, live_price, stock, u_ko, u_en, d_ko, d_en in items:
                p = Product(merchant_id=merchant.id, name_ko=n_ko, name_en=n_en, image=f"/static/demo/{img}",
                            price=price, stock=stock, unit_ko=u_ko, unit_en=u_en, description_ko=d_ko,
                            description_en=d_en)
                db.add(p)
                products.append((p, live_price))
        await db.flush()
    else:
        rows = (await db.scalars(select(Product).join(Merchant).where(Merchant.market_id == market.id)
                                 .order_by(Product.id))).all()
        live_prices = {n_ko: live for _, _, items in STALLS for n_ko, _, _, _, live, *_ in items}
        products = [(p, live_prices.get(p.name_ko, p.price)) for p in rows]

    await seed_demo_order_settings(db, market.id)  # delivery options and payment, for the buy sheet
    addresses = await import_csv(db, DEMO_ADDRESSES.read_text(encoding="utf-8").splitlines())  # once: idempotent
    if addresses.bad:
        raise ValueError(f"{DEMO_ADDRESSES}: " + "; ".join(map(str, addresses.problems)))
    first_merchant = await db.scalar(select(Merchant.id).where(Merchant.market_id == market.id).order_by(Merchant.id))
    staff_pw, host_pw, merchant_pw = _password(), _password(), _password()
    await _account(db, "staff", Role.STAFF, "운영팀", staff_pw)
    host = await _account(db, "host", Role.HOST, "쇼호스트 민지", host_pw)
    await _account(db, "merchant", Role.MERCHANT, "할머니 손만두", merchant_pw, merchant_id=first_merchant)

    def lineup(b: Broadcast, count: int) -> None:
        for pos, (p, live) in enumerate(products[:count]):
            b.lineup.append(LineupItem(product_id=p.id, position=pos, live_price=live,
                                       stock_reserved=min(p.stock, 30)))

    if created:
        from sessions.planning import SeriesInput, create_series

        sc = config.schedule
        local_now = now.astimezone(tz)
        monday = (local_now + timedelta(days=(7 - local_now.weekday()) % 7 or 7)).date()
        dtstart = datetime.combine(monday, datetime.strptime(sc.start_time, "%H:%M").time())
        series = await create_series(db, SeriesInput(
            market_id=market.id, title_ko="한마음 라이브 장터", title_en="Hanmaum Live Market",
            rrule=weekly_rrule(sc.weekdays, sc.start_time), dtstart_local=dtstart.strftime("%Y-%m-%dT%H:%M"),
            duration_minutes=sc.duration_minutes, timezone=sc.timezone, host_ids=[host.id]), config, now)
        coming = (await db.scalars(select(Broadcast).where(Broadcast.series_id == series.id)
                                   .options(selectinload(Broadcast.lineup)))).all()
        for b in coming:
            lineup(b, 5)
        series_id: int | None = series.id

    live = await db.scalar(select(Broadcast).where(Broadcast.market_id == market.id,
                                                   Broadcast.state == BroadcastState.LIVE,
                                                   Broadcast.ends_at > now + timedelta(minutes=10)))
    if live is None:
        start = now.replace(second=0, microsecond=0) - timedelta(minutes=5)
        live = Broadcast(market_id=market.id, title_ko="지금 라이브! 만두·참기름 특가",
                         title_en="Live now: dumplings & sesame oil deals",
                         description_ko="시장 상인들이 직접 소개하는 오늘의 특가",
                         description_en="Today's deals, from the stalls",
                         starts_at=start, ends_at=start + timedelta(minutes=config.schedule.duration_minutes),
                         started_at=start, state=BroadcastState.LIVE, lineup=[], partners=[],
                         hosts=[BroadcastHost(user_id=host.id)], channel="special", stream_url=stream_url)
        lineup(live, len(products))
        db.add(live)
    elif stream_url and not live.stream_url:
        live.stream_url = stream_url
    await db.flush()
    past_id = None
    if created:
        recording = stream_url.rsplit("/", 1)[0] + "/index.m3u8" if stream_url else ""
        past_id = await _past_episode(db, market.id, series_id, host, products, now, recording, tz)
    await _coupons(db, market.id, live, host, now)
    return DemoResult(created, market.id, live.id, staff_pw, host_pw, merchant_pw, past_id)


PAST_CHAT = ["안녕하세요!", "만두 진짜 맛있어 보여요", "참기름 몇 ml인가요?", "두 팩 샀어요 ㅎㅎ", "배송 언제 와요?",
             "오늘 가격 최고네요", "떡볶이 매운가요?", "들기름도 있나요", "구매 완료!", "다음 방송도 기대할게요"]


async def _past_episode(db: AsyncSession, market_id: int, series_id: int | None, host: User,
                        products: list[tuple[Product, int]], now: datetime, recording_url: str, tz: ZoneInfo) -> int:
    """Last week's show, ended, with its chat, purchases and (when the demo has video) its recording, so that
    a newcomer finds a report after the show and a replay."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=7)
    past = Broadcast(market_id=market_id, series_id=series_id, title_ko="지난주 라이브 장터: 떡볶이·김밥",
                     title_en="Last week: tteokbokki & gimbap",
                     occurrence_local=start.astimezone(tz).strftime("%Y-%m-%dT%H:%M"),
                     starts_at=start, ends_at=start + timedelta(hours=1), started_at=start,
                     ended_at=start + timedelta(hours=1), state=BroadcastState.ENDED, lineup=[], partners=[],
                     hosts=[BroadcastHost(user_id=host.id)], peak_viewers=214, hearts=5310,
                     recording_url=recording_url)
    shown = products[:5]
    for pos, (p, live_price) in enumerate(shown):
        past.lineup.append(LineupItem(product_id=p.id, position=pos, live_price=live_price, stock_reserved=30))
    db.add(past)
    buyers = [await _account(db, f"buyer{i}", Role.VIEWER, name, _password())
              for i, name in enumerate(("단골 김씨", "이웃 박씨", "새댁 최씨"), start=1)]
    await db.flush()
    for i in range(40):  # a message every minute and a half, from the buyers and the host
        who = host if i % 5 == 0 else buyers[i % 3]
        db.add(ChatMessage(broadcast_id=past.id, user_id=who.id, author_name=who.display_name,
                           author_role=who.role.value, text=PAST_CHAT[i % len(PAST_CHAT)],
                           created_at=start + timedelta(seconds=30 + 88 * i)))
    sold: dict[int, int] = {}
    for i in range(12):  # purchases through the hour, more in the middle
        p, live_price = shown[(i * 3) % len(shown)]
        quantity = 1 + i % 3
        second = 300 + 270 * i
        buyer = buyers[i % 3]
        at = start + timedelta(seconds=second)
        purchase = Purchase(broadcast_id=past.id, market_id=market_id, user_id=buyer.id, stream_second=second,
                            status=OrderStatus.DELIVERED, subtotal=live_price * quantity, total=live_price * quantity,
                            delivery_option=DeliveryOption.NEXT_DAY, delivery_promise_at=at + timedelta(days=1),
                            payment_method="cod", contact_name=buyer.display_name, contact_phone="010-0000-0000",
                            postal_code="04524", address1="서울 중구 세종대로 110", placed_at=at, updated_at=at)
        db.add(purchase)
        await db.flush()
        db.add(PurchaseLine(purchase_id=purchase.id, product_id=p.id, merchant_id=p.merchant_id, quantity=quantity,
                            unit_price=live_price, usual_price=p.price, line_total=live_price * quantity,
                            status=OrderStatus.DELIVERED, updated_at=at))
        sold[p.id] = sold.get(p.id, 0) + quantity
    for product_id, units in sold.items():
        db.add(LineupSale(broadcast_id=past.id, product_id=product_id, sold=units))
    await db.flush()
    return past.id


async def _coupons(db: AsyncSession, market_id: int, live: Broadcast, host: User, now: datetime) -> None:
    """Coupons ready for the shows, one of them dropped in the live broadcast, and a giveaway open in it, so
    that a newcomer sees a coupon card and a giveaway on the live page and in the console."""
    templates = await claims.templates(db, market_id)
    if not templates:
        templates = [
            await claims.save_template(db, market_id, claims.TemplateInput(
                name_ko="라이브 3천원 할인", name_en="3,000 won off, live only", kind="fixed", value=3000,
                min_order=15000, quantity=100, claim_minutes=30)),
            await claims.save_template(db, market_id, claims.TemplateInput(
                name_ko="10% 할인 (최대 5천원)", name_en="10% off (up to 5,000 won)", kind="percent", value=10,
                max_discount=5000, quantity=50, claim_minutes=10)),
        ]
    if await db.scalar(select(CouponDrop.id).where(CouponDrop.broadcast_id == live.id).limit(1)) is None:
        await claims.drop_now(db, live.id, templates[0].id, host, now)
    if await db.scalar(select(Giveaway.id).where(Giveaway.broadcast_id == live.id).limit(1)) is None:
        await giveaways.start(db, live.id, host, giveaways.GiveawayInput(
            "들기름 한 병", "A bottle of perilla oil", 1, EntryMode.BUTTON, "", 30), now)
