"""A model's layer table (layer, kind, inputs, output shape, params, precision, memory), the one
``deploy inspect`` prints and ``repr(graph)`` returns (torchinfo-style: no weight arrays)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from deploy.core import ir


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1024 or unit == "MB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    return f"{n:,.2f} MB"


def graph_table(graph: ir.Graph, layers: list[dict[str, Any]] | None = None) -> Table:
    """The layer table of ``graph``; ``layers``: rows with ``memory_bytes`` per layer (default:
    :meth:`Graph.summary_rows`), e.g. :func:`deploy.inspect`'s, whose memory includes neuron state."""
    from rich.table import Table

    rows = layers if layers is not None else graph.summary_rows()
    table = Table(title=f"{graph.name}: input {tuple(graph.input_shape)}, T={graph.timesteps}, "
                        f"{graph.encoding} encoding")
    for col in ("layer", "kind", "inputs", "output shape", "params", "precision", "memory"):
        table.add_column(col, justify="right" if col in ("params", "memory") else "left",
                         no_wrap=col in ("output shape", "params", "memory"))
    for row, node in zip(rows, graph.nodes, strict=True):
        prec = ", ".join(f"{k}:{v}b" for k, v in node.precision.items()) or "float32"
        table.add_row(row["name"], row["kind"], ",".join(node.inputs), "x".join(map(str, row["shape"])),
                      f"{row['params']:,}", prec, _bytes(row["memory_bytes"]))
    table.add_section()
    table.add_row("total", "", "", "", f"{sum(r['params'] for r in rows):,}", "",
                  _bytes(sum(r["memory_bytes"] for r in rows)))
    return table


def graph_text(graph: ir.Graph, width: int = 100) -> str:
    """:func:`graph_table` as plain text (no colours), ``width`` columns wide at most."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(graph_table(graph))
    return buf.getvalue().rstrip("\n")
