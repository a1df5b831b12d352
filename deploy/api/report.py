"""``deploy.report``: load a report, or compare several side by side."""

from __future__ import annotations

from pathlib import Path


def report(*paths: str | Path, out: str | Path | None = None):
    """One report.json: its :class:`Report` (re-rendered into ``out`` when given). Several: the
    comparison table as Markdown text (ratios vs the first), written to ``out``/comparison.md
    with its figures when ``out`` is given."""
    from deploy.io.atomic import staged_dir, write_text
    from deploy.report.render import render_comparison
    from deploy.report.schema import Report

    loaded = [Report.load(p) for p in paths]
    if len(loaded) == 1:
        if out is not None:
            loaded[0].save(out)
        return loaded[0]
    if out is None:
        return render_comparison(loaded, None)
    with staged_dir(out) as stage:
        text = render_comparison(loaded, stage)
        write_text(stage / "comparison.md", text)
    return text
