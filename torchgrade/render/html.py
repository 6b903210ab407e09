"""jinja2 for every HTML page (autoescape on: whatever a submission wrote arrives as text)."""

from __future__ import annotations

import re
from functools import lru_cache

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from .safe import plain

_INLINE_CODE = re.compile(r"`([^`\n]+)`")


def with_code(text) -> Markup:
    """Escape, then show `backticked` spans as <code>."""
    escaped = str(escape(plain(text)))
    return Markup(_INLINE_CODE.sub(lambda m: f"<code>{m.group(1)}</code>", escaped))


def points(value) -> str:
    return "" if value is None else f"{round(float(value), 4):g}"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("torchgrade.render", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(code=with_code, points=points, plain=plain)
    return env


def render_page(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
