"""The screenshots of the browser tests as a gallery: `python -m tests.browser.gallery` writes
docs/screens.md from the pictures in the artifacts folder (`tmp/artifacts/screens`, or
LIVECOMMERCE_ARTIFACTS); `--run` first runs the browser tests (on SQLite) to take them afresh.
The pictures themselves are not committed: the gallery links to where the tests leave them."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ARTIFACTS, ROOT

GALLERY = ROOT / "docs" / "screens.md"
SIZES = ("phone", "desk")

# What each screenshot shows, in the order a visitor meets the pages.
CAPTIONS = {
    "home": "Home: live now and coming",
    "live-before-the-start": "Before the start: a countdown on the server's time",
    "live-guest": "Live sale page, a guest",
    "live-buy-guest": "A guest taps Buy: asked to join first",
    "live-signed-in": "Live sale page, signed in",
    "live-lineup-sheet": "The line-up, one tap away",
    "live-buy-sheet": "Buying in the bottom sheet: delivery options",
    "live-buy-sheet-coupon": "Buying with a claimed coupon",
    "live-giveaway-won": "The giveaway drawn: you won",
    "live-buy-postcode": "Finding the postcode in the buy sheet",
    "live-english": "Live sale page in English",
    "live-ended": "An ended broadcast",
    "live-ended-by-the-clock": "The hour is over: the server ended the show by itself",
    "live-replay": "After the show: the replay, its chat in time, the line-up at the regular price",
    "buy-page-guest": "The buy page (fallback), a guest",
    "buy-page": "The buy page (fallback)",
    "orders": "My orders",
    "orders-after-purchase": "My orders after buying with a coupon",
    "console": "Host console",
    "console-moderation-undo": "Moderating in the console: undo for a few seconds",
    "console-figures": "Sales figures",
    "report": "After the show: the broadcast's report",
    "report-after-the-hour": "The report of a show that ended at the hour, with its purchase",
    "merchant-orders": "A stall's orders as cards: what to pack, for whom, by when",
    "merchant-orders-packed": "The stall-keeper marked the order packed, on a phone",
    "merchant-packing": "A day's packing list to print",
    "staff-schedule": "Staff: the schedule, series in words",
    "staff-orders": "Staff: every order",
    "staff-broadcasts": "Staff: every broadcast",
    "staff-special-broadcast-lineup": "Staff: a special broadcast and its line-up, on a phone",
    "staff-catalogue": "Staff: the catalogue",
    "staff-product": "Staff: a product with its picture",
    "schedule-staff": "The schedule",
}


def _split(stem: str) -> tuple[str, str]:
    for size in SIZES:
        if stem.endswith("-" + size):
            return stem[: -len(size) - 1], size
    return stem, ""


def write(artifacts: Path = ARTIFACTS, out: Path = GALLERY) -> int:
    shots: dict[str, dict[str, Path]] = {}
    for png in sorted(artifacts.glob("*.png")):
        name, size = _split(png.stem)
        shots.setdefault(name, {})[size or "phone"] = png
    order = [n for n in CAPTIONS if n in shots] + sorted(n for n in shots if n not in CAPTIONS)
    rel = os.path.relpath(artifacts, out.parent)
    lines = [
        "# Screens",
        "",
        "The pages as the browser tests see them, at phone size (390×844) and desk size (1280×800).",
        f"The pictures are not committed: `python -m tests.browser.gallery --run` takes them afresh into "
        f"`{os.path.relpath(artifacts, ROOT)}/` and writes this page.",
        "",
        "| page | phone | desk |",
        "|---|---|---|",
    ]
    for name in order:
        cells = [f"![{name} {size}]({rel}/{shots[name][size].name})" if size in shots[name] else "—"
                 for size in SIZES]
        lines.append(f"| {CAPTIONS.get(name, name)} | {cells[0]} | {cells[1]} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(order)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--run", action="store_true", help="run the browser tests first (SQLite only)")
    args = parser.parse_args(argv)
    if args.run:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOMMERCE_TEST_")}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/browser"],
                              cwd=ROOT, env=env, check=False)
        if done.returncode != 0:
            return done.returncode
    n = write()
    print(f"{GALLERY.relative_to(ROOT)}: {n} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
