"""The catalogue edited in the staff pages: products with an uploaded picture (checked, resized, served
from the media directory), stalls, accounts and their passwords. Every refusal says why, keeps what
was typed and writes nothing; only staff get in, and only with the form's CSRF token."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.app import create_app
from livecommerce.config import Config
from livecommerce.media import process_picture
from livecommerce.models import Merchant, Product, Role, User
from tests.orders.support import browser
from tests.support import PASSWORD, World, csrf, fresh, sign_in

MAX_UPLOAD = 200_000


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.fixture
def app(config: Config, media_dir: Path) -> web.Application:
    return create_app(config.replace(media={"directory": str(media_dir), "max_upload_bytes": MAX_UPLOAD}))


def picture(fmt: str = "JPEG", size: tuple[int, int] = (2000, 1000), noise: bool = False, mode: str = "RGB") -> bytes:
    img = Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode))) if noise else \
        Image.new(mode, size, (200, 80, 40, 128)[:len(mode)])
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def product_form(token: str, world: World, upload: tuple[str, bytes, str] | None = None,
                 **over: str) -> aiohttp.FormData:
    values = {"csrf_token": token, "merchant_id": str(world.merchant.id), "name_ko": "김치만두",
              "name_en": "Kimchi dumplings", "price": "12,900", "stock": "40", "unit_ko": "팩", "unit_en": "pack",
              "description_ko": "", "description_en": "", "is_active": "1"}
    values.update(over)
    form = aiohttp.FormData()
    for k, v in values.items():
        if v is not None:
            form.add_field(k, v)
    if upload is None:
        form.add_field("picture", b"", filename="", content_type="application/octet-stream")  # none chosen
    else:
        name, data, ctype = upload
        form.add_field("picture", data, filename=name, content_type=ctype)
    return form


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def count_products(db: AsyncSession) -> int:
    await fresh(db)
    return int(await db.scalar(select(func.count()).select_from(Product)) or 0)


def test_a_picture_is_checked_and_shrunk() -> None:
    out = process_picture(picture("JPEG", (2000, 1000)), 1200, 5_000_000)
    assert (out.width, out.height) == (1200, 600)
    assert Image.open(io.BytesIO(out.data)).format == "WEBP"
    small = process_picture(picture("PNG", (300, 200), mode="RGBA"), 1200, 5_000_000)
    assert (small.width, small.height) == (300, 200)  # never enlarged
    assert Image.open(io.BytesIO(small.data)).mode == "RGBA"  # transparency kept
    assert process_picture(picture("WEBP", (500, 900)), 300, 5_000_000).height == 300
    for bad in (picture("GIF", (20, 20)), picture("BMP", (20, 20)), b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                b"\xff\xd8\xff\xe0 not really a jpeg", b""):
        with pytest.raises(Exception) as info:
            process_picture(bad, 1200, 5_000_000)
        assert getattr(info.value, "code", "") in ("picture_type", "picture_missing"), bad[:20]
    with pytest.raises(Exception) as info:
        process_picture(picture("PNG", (300, 300), noise=True), 1200, 100_000)
    assert getattr(info.value, "code", "") == "picture_too_large"


async def test_staff_add_and_edit_a_product_with_a_picture(client: TestClient, world: World, db: AsyncSession,
                                                          media_dir: Path) -> None:
    token = await sign_in(client, "staff")
    html = await (await client.get("/staff/catalogue")).text()
    assert 'href="/staff/catalogue/products/new"' in html and f'id="product-{world.products[0].id}"' in html
    assert "12,900원" in html and f'id="stall-{world.merchant.id}"' in html and f'id="account-{world.staff.id}"' in html
    html = await (await client.get("/staff/catalogue/products/new")).text()
    assert 'enctype="multipart/form-data"' in html and 'accept="image/jpeg,image/png,image/webp"' in html
    assert "195 KB" in html  # the largest picture, as configured

    photo = ("photo.jpg", picture("JPEG", (2000, 1000)), "image/jpeg")
    resp = await client.post("/staff/catalogue/products/new", allow_redirects=False,
                             data=product_form(token, world, photo))
    assert resp.status == 303, await resp.text()
    await fresh(db)
    p = await db.scalar(select(Product).where(Product.name_ko == "김치만두"))
    assert p is not None and p.price == 12900 and p.stock == 40 and p.unit_ko == "팩" and p.is_active
    assert resp.headers["Location"] == f"/staff/catalogue?saved=product-{p.id}#product-{p.id}"
    assert p.image.startswith("/media/products/") and p.image.endswith(".webp")
    stored = files_in(media_dir)
    assert len(stored) == 1 and stored[0].name == p.image.rsplit("/", 1)[1]
    resp = await client.get(p.image)
    assert resp.status == 200 and resp.headers["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(await resp.read())).size == (1200, 600)
    assert (await client.get("/media/../secret")).status in (403, 404)
    html = await (await client.get("/staff/catalogue")).text()
    assert f'src="{p.image}"' in html
    image, pid = p.image, p.id

    # no new picture: the one there stays; the price as a person types it
    resp = await client.post(f"/staff/catalogue/products/{pid}", allow_redirects=False,
                             data=product_form(token, world, price="13900원", name_en="", is_active=None))  # type: ignore[arg-type]
    assert resp.status == 303
    await fresh(db)
    again = await db.get(Product, pid)
    assert again is not None and again.price == 13900 and again.image == image and not again.is_active
    assert again.name_en == "김치만두"  # an empty English name takes the Korean one
    resp = await client.post(f"/staff/catalogue/products/{pid}", allow_redirects=False,
                             data=product_form(token, world, remove_picture="1"))
    assert resp.status == 303
    await fresh(db)
    assert (await db.get(Product, pid)).image == ""  # type: ignore[union-attr]
    assert (await client.get("/staff/catalogue/products/999999")).status == 404


@pytest.mark.parametrize("case", ["no name", "bad price", "negative stock", "huge price", "no stall", "gif",
                                  "text as jpeg", "too large", "far too large"])
async def test_a_bad_product_form_says_why_and_writes_nothing(client: TestClient, world: World, db: AsyncSession,
                                                              media_dir: Path, case: str) -> None:
    token = await sign_in(client, "staff")
    before = await count_products(db)
    noise = picture("PNG", (300, 300), noise=True)
    assert MAX_UPLOAD < len(noise) < 2 * MAX_UPLOAD
    form, status, says = {
        "no name": (product_form(token, world, name_ko=""), 422, "이름 (한국어): 꼭 입력해 주세요."),
        "bad price": (product_form(token, world, price="열두 개"), 422, "정수를 넣어 주세요"),
        "negative stock": (product_form(token, world, stock="-3"), 422, "정수를 넣어 주세요"),
        "huge price": (product_form(token, world, price="1000000000"), 422, "100,000,000 이하"),
        "no stall": (product_form(token, world, ("a.png", picture("PNG", (40, 40)), "image/png"), merchant_id="999999"),
                     422, "이 번호의 가게가 없어요"),
        "gif": (product_form(token, world, ("a.gif", picture("GIF", (40, 40)), "image/gif")), 422,
                "JPEG, PNG, WebP 사진이 아니에요"),
        "text as jpeg": (product_form(token, world, ("a.jpg", b"hello, not a picture", "image/jpeg")), 422,
                         "JPEG, PNG, WebP 사진이 아니에요"),
        "too large": (product_form(token, world, ("big.png", noise, "image/png")), 422,
                      "사진이 너무 커요 (최대 195 KB)"),
        "far too large": (product_form(token, world, ("huge.png", noise * 3, "image/png")), 413, ""),
    }[case]
    resp = await client.post("/staff/catalogue/products/new", data=form)
    assert resp.status == status
    if says:
        html = await resp.text()
        assert says in html and 'role="alert"' in html
        assert 'value="Kimchi dumplings"' in html  # what was typed is kept
    assert await count_products(db) == before
    assert files_in(media_dir) == []


async def test_only_staff_with_the_token_change_the_catalogue(client: TestClient, world: World, db: AsyncSession,
                                                              media_dir: Path) -> None:
    before = await count_products(db)
    token = await sign_in(client, "merchant")
    upload = ("photo.jpg", picture("JPEG", (50, 50)), "image/jpeg")
    resp = await client.post("/staff/catalogue/products/new", data=product_form(token, world, upload))
    assert resp.status == 403
    assert (await client.get("/staff/catalogue")).status == 403
    resp = await client.post("/staff/catalogue/stalls/new", data={"csrf_token": token, "name_ko": "가게",
                                                                   "market_id": str(world.market.id)})
    assert resp.status == 403
    token = await sign_in(client, "staff")
    resp = await client.post("/staff/catalogue/products/new", data=product_form("wrong", world, upload))
    assert resp.status == 403
    resp = await client.post(f"/staff/catalogue/accounts/{world.viewer.id}/password",
                             data={"password": "new-password-1", "password_again": "new-password-1"})
    assert resp.status == 403
    assert await count_products(db) == before and files_in(media_dir) == []


async def test_staff_add_and_rename_a_stall(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    resp = await client.post("/staff/catalogue/stalls/new", data={
        "csrf_token": token, "market_id": str(world.market.id), "name_ko": "", "name_en": "Rice cakes"})
    assert resp.status == 422 and "꼭 입력해 주세요" in await resp.text()
    resp = await client.post("/staff/catalogue/stalls/new", allow_redirects=False, data={
        "csrf_token": token, "market_id": str(world.market.id), "name_ko": "떡집", "name_en": ""})
    assert resp.status == 303
    await fresh(db)
    m = await db.scalar(select(Merchant).where(Merchant.name_ko == "떡집"))
    assert m is not None and m.name_en == "떡집" and m.market_id == world.market.id
    mid = m.id
    resp = await client.post(f"/staff/catalogue/stalls/{mid}", allow_redirects=False,
                             data={"csrf_token": token, "name_ko": "떡방앗간", "name_en": "Rice cake mill"})
    assert resp.status == 303
    await fresh(db)
    assert (await db.get(Merchant, mid)).name_en == "Rice cake mill"  # type: ignore[union-attr]
    html = await (await client.get("/staff/catalogue?lang=en")).text()
    assert "Rice cake mill" in html
    resp = await client.post("/staff/catalogue/stalls/new", data={"csrf_token": token, "market_id": "999999",
                                                                   "name_ko": "유령가게"})
    assert resp.status == 422
    assert (await client.get("/staff/catalogue/stalls/999999")).status == 404


async def login(client: TestClient | aiohttp.ClientSession, username: str, password: str) -> int:
    token = await csrf(client)  # type: ignore[arg-type]
    resp = await client.post("/api/v1/auth/login", json={"username": username, "password": password},
                             headers={"X-CSRF-Token": token})
    return resp.status


async def test_staff_manage_accounts_and_reset_a_password(client: TestClient, world: World,
                                                          db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    new = {"csrf_token": token, "username": "tteok", "display_name": "떡집 사장님", "role": "merchant",
           "merchant_id": str(world.other_merchant.id), "password": "rice-cake-1"}
    refusals: list[tuple[dict[str, Any], int, str]] = [
        ({"password": "short"}, 422, "8"),
        ({"merchant_id": ""}, 422, "가게"),
        ({"username": "Not Valid!"}, 422, "아이디"),
        ({"username": "staff"}, 409, ""),
        ({"role": "owner"}, 422, "역할"),
    ]
    for over, status, says in refusals:
        resp = await client.post("/staff/catalogue/accounts/new", data={**new, **over})
        assert resp.status == status, over
        assert says in await resp.text()
    await fresh(db)
    assert await db.scalar(select(User).where(User.username == "tteok")) is None
    resp = await client.post("/staff/catalogue/accounts/new", data=new, allow_redirects=False)
    assert resp.status == 303
    await fresh(db)
    u = await db.scalar(select(User).where(User.username == "tteok"))
    assert u is not None and u.role is Role.MERCHANT and u.merchant_id == world.other_merchant.id
    db.expunge(u)
    other = browser(client.server)
    try:
        assert await login(other, "tteok", "rice-cake-1") == 200
        # a new role signs the account out; a host has no stall
        resp = await client.post(f"/staff/catalogue/accounts/{u.id}", allow_redirects=False, data={
            "csrf_token": token, "display_name": "떡집", "role": "host", "merchant_id": str(world.merchant.id),
            "is_active": "1"})
        assert resp.status == 303
        await fresh(db)
        u2 = await db.get(User, u.id)
        assert u2 is not None and u2.role is Role.HOST and u2.merchant_id is None and u2.display_name == "떡집"
        assert (await other.get("/api/v1/me")).status == 401
        # a new password, typed twice
        resp = await client.post(f"/staff/catalogue/accounts/{u.id}/password",
                                 data={"csrf_token": token, "password": "new-rice-2", "password_again": "other-one"})
        assert resp.status == 422 and "두 비밀번호가 같지 않아요" in await resp.text()
        resp = await client.post(f"/staff/catalogue/accounts/{u.id}/password",
                                 data={"csrf_token": token, "password": "short", "password_again": "short"})
        assert resp.status == 422
        assert await login(other, "tteok", "rice-cake-1") == 200
        resp = await client.post(f"/staff/catalogue/accounts/{u.id}/password", allow_redirects=False,
                                 data={"csrf_token": token, "password": "new-rice-2", "password_again": "new-rice-2"})
        assert resp.status == 303
        assert await login(other, "tteok", "rice-cake-1") == 401
        assert await login(other, "tteok", "new-rice-2") == 200
    finally:
        await other.close()
    # staff cannot take away their own role or sign-in
    resp = await client.post(f"/staff/catalogue/accounts/{world.staff.id}", data={
        "csrf_token": token, "display_name": "운영팀", "role": "host", "is_active": "1"})
    assert resp.status == 422 and "스스로 없앨 수 없어요" in await resp.text()
    await fresh(db)
    assert (await db.get(User, world.staff.id)).role is Role.STAFF  # type: ignore[union-attr]
    assert await login(client, "staff", PASSWORD) == 200
    html = await (await client.get(f"/staff/catalogue/accounts/{world.viewer.id}")).text()
    assert 'action="/staff/catalogue/accounts/' in html and "새 비밀번호" in html
