"""bench.accuracy's outputs: its section replaces only itself in benchmarks.md, the chart is
well-formed SVG with one line per series, and a tiny run states the figures it promises."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from bench.accuracy import run, section, write_section
from bench.accuracy_svg import Series, chart
from calltracking.simulate.model import TrafficModel, generate


def test_the_section_is_replaced_in_place_and_the_rest_kept(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## One\nkept\n\n## Accuracy\nold\n\n## Two\nalso kept\n")
    write_section(doc, "## Accuracy\n\nnew\n")
    text = doc.read_text()
    assert "old" not in text and "new" in text
    assert text.index("## One") < text.index("## Accuracy") < text.index("## Two")
    assert "kept" in text and "also kept" in text
    write_section(doc, "## Accuracy\n\nnewer\n")
    assert doc.read_text().count("## Accuracy") == 1


def test_the_chart_is_svg_with_a_line_per_series() -> None:
    series = [
        Series("a", [(5, 0.1), (10, 0.5)], "#000", False),
        Series("b <&>", [(5, 0.0), (10, 1.0)], "#f00", True),
    ]
    root = ElementTree.fromstring(chart(series))
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert len(root.findall(f"{ns}polyline")) == 2
    assert "b <&>" in [t.text for t in root.findall(f"{ns}text")]


def test_a_small_run_states_the_product_and_seed_figures() -> None:
    model = TrafficModel(days=2, visits_per_day=300)
    product, seed, week_s = run([2, 40], model)
    assert week_s > 0
    text = section(product, seed, week_s, generate(model))
    assert "| 2 |" in text and "| 40 |" in text
    assert "The product's defaults" in text and "seed policy" in text
