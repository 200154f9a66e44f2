"""Layout checks for screenshots: the page's cards and controls do not overlap and nothing
overflows the viewport horizontally (read from the browser's own bounding boxes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The boxes that must not intersect: top-level cards of the page, and the controls inside one
# card (buttons, selects, inputs, the legend buttons of chart groups).
_BOXES = """() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height,
            name: el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                  (typeof el.className === 'string' && el.className
                    ? '.' + el.className.split(' ').join('.') : '')}; };
  const shown = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'; };
  const cards = [...document.querySelectorAll('main > .card, main > .callout, #results > .card')]
    .filter(shown);
  const controls = cards.map((card) => [...card.querySelectorAll(
      'button, select, input:not([type=hidden]), .btn, .legend-item')]
    .filter(shown).filter((el) => !el.closest('.js-plotly-plot') && !el.closest('.table-scroll'))
    .map(box));
  // A chart's own legend must stay inside its card (plotly draws it past the chart's box).
  const legends = cards.flatMap((card) => [...card.querySelectorAll('.js-plotly-plot g.legend')]
    .filter(shown).map((g) => [box(card), box(g)]));
  return {cards: cards.map(box), controls: controls, legends: legends,
          scrollWidth: document.documentElement.scrollWidth, width: innerWidth};
}"""


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two boxes intersect by more than a pixel each way (touching edges do not)."""
    dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
    dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
    return dx > 1 and dy > 1


def layout_problems(page: Any) -> list[str]:
    """What is wrong with the layout at the page's current size (empty: nothing)."""
    found = page.evaluate(_BOXES)
    problems = []
    if found["scrollWidth"] > found["width"]:
        problems.append(f"page is {found['scrollWidth']} px wide in a {found['width']} px viewport")
    cards = found["cards"]
    for i, a in enumerate(cards):
        for b in cards[i + 1 :]:
            if _overlap(a, b):
                problems.append(f"cards overlap: {a['name']} and {b['name']}")
    for card, legend in found["legends"]:
        inside = card["y"] <= legend["y"] and legend["y"] + legend["h"] <= card["y"] + card["h"]
        if not inside or legend["x"] + legend["w"] > card["x"] + card["w"] + 1:
            problems.append(f"a chart legend runs out of its card: {card['name']}")
    for group in found["controls"]:
        for i, a in enumerate(group):
            if a["x"] + a["w"] > found["width"] + 1:
                problems.append(f"control past the right edge: {a['name']}")
            for b in group[i + 1 :]:
                if _overlap(a, b):
                    problems.append(f"controls overlap: {a['name']} and {b['name']}")
    return problems


def screenshots(page: Any, out: Path, name: str) -> dict[int, list[str]]:
    """Full-page PNGs at 1280 and 390 px into `out`; the layout problems found at each width."""
    found = {}
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 844 if width < 500 else 900})
        page.wait_for_timeout(600)  # plotly's responsive relayout
        page.screenshot(path=str(out / f"{name}-{width}.png"), full_page=True)
        found[width] = layout_problems(page)
    return found
