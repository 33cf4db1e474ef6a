"""Keep the message catalogues complete: `python -m livecommerce.i18n_extract` collects every
message from the templates and the code into `locale/messages.pot` and merges it into each
`.po` file (new messages arrive untranslated, for a translator to fill in)."""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from .i18n import LOCALE_DIR, LOCALES

ROOT = Path(__file__).resolve().parent.parent

# Calls whose first argument is a message: gettext, the N_ marker and every domain error.
KEYWORDS: dict[str, tuple[int, ...] | None] = {
    "_": None, "gettext": None, "ngettext": (1, 2), "N_": None,
    "AppError": None, "BadRequest": None, "ValidationFailed": None, "Unauthenticated": None, "Forbidden": None,
    "CsrfFailed": None, "NotFound": None, "Conflict": None, "InvalidCredentials": None,
}
METHODS = [
    ("livecommerce/**.py", "python"), ("sessions/**.py", "python"), ("orders/**.py", "python"),
    ("coupons/**.py", "python"),
    ("web/templates/**.html", "jinja2"),
]
OPTIONS = {"web/templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}


def extract() -> Catalog:
    catalog = Catalog(project="livecommerce", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
            str(ROOT), METHODS, OPTIONS, KEYWORDS, strip_comment_tags=True):
        if "/.venv/" in filename or filename.startswith(".venv"):
            continue
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def main() -> int:
    template = extract()
    LOCALE_DIR.mkdir(parents=True, exist_ok=True)
    with (LOCALE_DIR / "messages.pot").open("wb") as fh:
        write_po(fh, template, omit_header=False, sort_output=True)
    for loc in LOCALES:
        po = LOCALE_DIR / loc / "LC_MESSAGES" / "messages.po"
        po.parent.mkdir(parents=True, exist_ok=True)
        if po.exists():
            with po.open("rb") as fh:
                catalog = read_po(fh, locale=loc)
        else:
            catalog = Catalog(locale=loc, project="livecommerce", charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True)
        with po.open("wb") as fh:
            write_po(fh, catalog, sort_output=True, ignore_obsolete=True, include_previous=False)
        missing = [m.id for m in catalog if m.id and not m.string and loc != "en"]
        print(f"{loc}: {len(catalog)} messages, {len(missing)} untranslated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
