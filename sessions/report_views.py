"""A broadcast's report as a page (`/staff/broadcasts/{id}/report`, and the same at `/host/…` for its hosts)
and as JSON (`GET /api/v1/broadcasts/{id}/report`): for staff and the broadcast's hosts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from livecommerce import i18n
from livecommerce.api import Api, Call, path_id
from livecommerce.auth import HOST, STAFF, access
from livecommerce.errors import N_
from livecommerce.keys import AppKeys, signed_in_user
from livecommerce.templating import page

from . import report, services
from .models import BroadcastState

CHART_WIDTH, CHART_HEIGHT = 640, 120


class ReportFigureOut(BaseModel):
    key: str
    label: str
    money: bool = Field(description="whole won")
    value: int
    previous: list[int] = Field(description="the same figure in the series' previous episodes, newest first")
    change: int | None = Field(description="against the newest previous episode")
    change_percent: float | None


class EpisodeOut(BaseModel):
    broadcast_id: int
    title_ko: str
    title_en: str
    starts_at: datetime


class ReportOut(BaseModel):
    broadcast_id: int
    state: BroadcastState
    title_ko: str
    title_en: str
    started_at: datetime | None
    ended_at: datetime | None
    minutes: int = Field(description="the minutes of the show the per-minute figures span")
    figures: list[ReportFigureOut]
    per_minute: dict[str, list[int]] = Field(description="chat, orders, revenue: one value per minute of the show")
    previous: list[EpisodeOut] = Field(description="the series' previous episodes, newest first")
    details: dict[str, dict[str, Any]] = Field(description="each part's own section: top products, what the "
                                                           "replay sold after the show, drops, giveaways")


def report_out(r: report.Report) -> ReportOut:
    b = r.broadcast
    return ReportOut(
        broadcast_id=b.id, state=b.state, title_ko=b.title_ko, title_en=b.title_en, started_at=b.started_at,
        ended_at=b.ended_at, minutes=r.minutes,
        figures=[ReportFigureOut(key=row.metric.key, label=i18n.gettext(row.metric.label), money=row.metric.money,
                                 value=row.value, previous=list(row.previous),
                                 change=row.change.delta if row.change else None,
                                 change_percent=row.change.percent if row.change else None) for row in r.rows],
        per_minute=r.series,
        previous=[EpisodeOut(broadcast_id=p.id, title_ko=p.title_ko, title_en=p.title_en, starts_at=p.starts_at)
                  for p in r.previous],
        details={name: d.data for name, d in r.details.items()})


async def _read(app: web.Application, broadcast_id: int, user: Any) -> report.Report:
    async with app[AppKeys.reader]() as db:
        await services.get_broadcast(db, broadcast_id)
        await services.check_host(db, broadcast_id, user.id, user.role)
        return await report.build(db, report.report_parts(app), broadcast_id)


def register_api(api: Api) -> None:
    @api.route("GET", "/broadcasts/{broadcast_id}/report", access=HOST, tag="broadcasts", response=ReportOut,
               errors=[403, 404], summary="After the show: peak viewers, chat, hearts, orders, revenue, per minute, "
                                          "top products, coupons and giveaways, beside the series' previous "
                                          "episodes (the broadcast's hosts, staff)")
    async def report_get(call: Call[None, None]) -> ReportOut:
        return report_out(await _read(call.app, call.param("broadcast_id"), call.user))


CHARTS = (("revenue", N_("Revenue per minute"), True), ("orders", N_("Orders per minute"), False),
          ("chat", N_("Chat messages per minute"), False))


async def _report_context(request: web.Request) -> dict[str, Any]:
    broadcast_id = path_id(request, "broadcast_id", N_("No broadcast with this id."), "broadcast_not_found")
    r = await _read(request.app, broadcast_id, signed_in_user(request))
    charts = [{"key": key, "title": title, "money": money, "total": sum(r.series[key]),
               "bars": report.bars(r.series[key], CHART_WIDTH, CHART_HEIGHT)}
              for key, title, money in CHARTS if key in r.series]
    parts = [(d.template, d.data) for d in r.details.values() if d.template]
    return {"r": r, "b": r.broadcast, "charts": charts, "parts": parts, "width": CHART_WIDTH,
            "height": CHART_HEIGHT, "staff_view": request.path.startswith("/staff/")}


@access(STAFF)
@page("report.html")
async def staff_report_page(request: web.Request) -> dict[str, Any]:
    return await _report_context(request)


@access(HOST)
@page("report.html")
async def host_report_page(request: web.Request) -> dict[str, Any]:
    """The same report for the broadcast's hosts (staff may read it here too)."""
    return await _report_context(request)


def register_pages(app: web.Application) -> None:
    app.router.add_get(r"/staff/broadcasts/{broadcast_id:\d+}/report", staff_report_page,
                       name="staff_broadcast_report")
    app.router.add_get(r"/host/broadcasts/{broadcast_id:\d+}/report", host_report_page, name="host_broadcast_report")
