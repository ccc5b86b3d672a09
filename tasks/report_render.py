"""The quarterly audit report's files: a self-contained HTML page (charts inline as SVG,
nothing loaded from the network, a print stylesheet), an Excel workbook (one sheet per
section) and one CSV per section; and what a run leaves in the Prefect UI.

Every text value goes through tasks.export_safety.neutralise_frame before any of the three
writers sees it (spreadsheet-formula injection); the HTML is escaped by Jinja2 as well.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.export_safety import neutralise, neutralise_frame
from tasks.report_data import SECTIONS, ReportData, timed

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "quarterly_report.html.j2"
MONEY = {
    "unit_cost",
    "true_up_cost",
    "waste",
    "annual_cost",
    "annual_spend",
    "annual_saving",
    "monthly_cost",
    "saving",
    "extra_cost",
    "annual_value",
}
NUMERIC_KINDS = ("int", "float", "money")
TOP_VENDORS = 12
TOP_PRODUCTS = 15
LINK_KEY = "quarterly-audit-report"
SUMMARY_KEY = "quarterly-audit-summary"


@dataclass(frozen=True)
class ReportFiles:
    folder: Path
    html: Path
    workbook: Path
    csv_dir: Path
    csvs: dict[str, Path]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "vendor"


def report_folder(data: ReportData, reports_dir: Path) -> Path:
    folder = Path(reports_dir) / data.label
    return folder / "vendors" / slug(data.vendor) if data.vendor else folder


def file_stem(data: ReportData) -> str:
    if data.vendor:
        return f"audit_pack_{data.label}_{slug(data.vendor)}"
    return f"quarterly_report_{data.label}"


# --- cells ---------------------------------------------------------------------------------


def column_kind(series: pd.Series, name: str) -> str:
    """How a column is typed in the exports: money, int, float, date, datetime, bool, text."""
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "money" if name in MONEY else "float"
    sample = series.dropna()
    if len(sample):
        first = sample.iloc[0]
        if isinstance(first, dt.datetime):
            return "datetime"
        if isinstance(first, dt.date):
            return "date"
        if isinstance(first, bool | np.bool_):
            return "bool"
    return "text"


def plain_values(series: pd.Series, kind: str) -> list:
    """The column as Python values a writer can type (missing = None, datetimes naive UTC)."""
    if kind == "datetime":
        moments = pd.to_datetime(series, utc=True).dt.tz_localize(None)
        return [None if pd.isna(v) else v.to_pydatetime() for v in moments]
    if kind == "int":
        return [None if pd.isna(v) else int(v) for v in series.astype(object)]
    if kind in ("float", "money"):
        return [None if pd.isna(v) else float(v) for v in series.astype(object)]
    if kind == "bool":
        return [None if v is None or v is pd.NA else bool(v) for v in series.astype(object)]
    values = series.astype(object).tolist()  # element-wise iteration of Arrow strings is slow
    return [None if v is None or (not isinstance(v, str) and pd.isna(v)) else v for v in values]


def export_frame(frame: pd.DataFrame) -> tuple[list[str], list[str], list[list]]:
    """Neutralised header, column kinds and columns of plain values: what all three writers
    write (one neutralising step for all of them)."""
    safe = neutralise_frame(frame)
    kinds = [column_kind(frame[c], c) for c in frame.columns]
    columns = [plain_values(safe.iloc[:, i], k) for i, k in enumerate(kinds)]
    return list(safe.columns), kinds, columns


def html_cell(value, kind: str, column: str) -> str:
    if value is None:
        return "unlimited" if column == "entitled" else ""
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "int":
        return f"{value:,d}"
    if kind == "float":
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if kind == "datetime":
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if kind == "date":
        return value.isoformat()
    if kind == "bool":
        return "yes" if value else "no"
    return str(value)


def _label(column: str) -> str:
    return column.replace("_", " ")


NOWRAP = {"product_code", "contract_number", "hostname", "batch_id", "deadline", "date"}


def html_table(frame: pd.DataFrame, limit: int | None) -> dict:
    """Header and rows of cell texts for the template (the first `limit` rows)."""
    shown = frame if limit is None else frame.head(limit)
    header, kinds, columns = export_frame(shown)
    texts = [
        [html_cell(value, kind, name) for value in values]
        for name, kind, values in zip(header, kinds, columns, strict=True)
    ]
    if header == ["measure", "currency", "value", "detail"]:  # amounts and counts side by side
        kinds[2] = "money"
        texts[2] = [
            "" if value is None else f"{value:,.2f}" if currency else f"{round(value):,d}"
            for value, currency in zip(columns[2], columns[1], strict=True)
        ]
    classes = [
        " ".join(
            c
            for c, on in (
                ("num", kind in NUMERIC_KINDS),
                ("nowrap", name in NOWRAP or kind in ("date", "datetime")),
            )
            if on
        )
        for name, kind in zip(header, kinds, strict=True)
    ]
    rows = [
        [{"text": texts[j][i], "cls": classes[j]} for j in range(len(header))]
        for i in range(len(shown))
    ]
    return {
        "header": [{"text": _label(h), "cls": c} for h, c in zip(header, classes, strict=True)],
        "rows": rows,
        "total": len(frame),
        "shown": len(shown),
    }


# --- charts -------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _chart_label(text, width: int = 34) -> str:
    text = str(neutralise("" if text is None or pd.isna(text) else text))
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _svg(fig, name: str) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    with plt.rc_context({"svg.hashsalt": f"licenseflow-{name}"}):
        fig.savefig(
            buffer,
            format="svg",
            bbox_inches="tight",
            metadata={"Creator": None, "Date": None, "Format": None, "Type": None},
        )
    plt.close(fig)
    svg = buffer.getvalue()
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.S)
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    return svg.strip()


def _figure(height: float = 3.4, width: float = 6.4):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#e3e6ea", linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#666", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def main_currency(position: pd.DataFrame) -> str | None:
    """The currency holding the most annual spend (charts show money in one currency)."""
    priced = position[position["currency"].notna()]
    if priced.empty:
        return None
    return str(priced.groupby("currency")["annual_cost"].sum().sort_values().index[-1])


def spend_chart(position: pd.DataFrame) -> str:
    plt = _pyplot()
    currency = main_currency(position)
    with plt.rc_context({"text.parse_math": False}):
        fig, ax = _figure()
        if currency is None or position["annual_cost"].sum() == 0:
            _empty(ax, "no contract in force")
            return _svg(fig, "spend")
        priced = position[position["currency"] == currency]
        spend = priced.groupby(priced["vendor"].fillna("(no vendor)"))["annual_cost"].sum()
        spend = spend[spend > 0].sort_values(ascending=False)
        if len(spend) > TOP_VENDORS:
            rest = spend.iloc[TOP_VENDORS - 1 :].sum()
            spend = pd.concat([spend.iloc[: TOP_VENDORS - 1], pd.Series({"(other vendors)": rest})])
        spend = spend.iloc[::-1]
        ax.barh([_chart_label(v) for v in spend.index], spend.to_numpy(), color="#2f6690")
        ax.set_xlabel(f"annual spend in force ({currency})")
        ax.xaxis.set_major_formatter(_thousands())
        ax.set_title("Spend by vendor", loc="left", fontsize=11, fontweight="bold")
        return _svg(fig, "spend")


def _thousands():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}")


def position_chart(position: pd.DataFrame) -> str:
    plt = _pyplot()
    with plt.rc_context({"text.parse_math": False}):
        fig, ax = _figure(0.3 * min(len(position), TOP_PRODUCTS) + 1.4, 12.0)
        frame = position.assign(_rank=position["annual_cost"] + position["true_up_cost"].fillna(0))
        frame = frame[frame["consumed"] + frame["entitled"].fillna(0) > 0]
        top = frame.sort_values(["_rank", "consumed"], ascending=False).head(TOP_PRODUCTS)
        if top.empty:
            _empty(ax, "no product entitled or consumed")
            return _svg(fig, "position")
        top = top.iloc[::-1]
        y = np.arange(len(top))
        entitled = top["entitled"].astype("Float64").fillna(np.nan).astype(float).to_numpy()
        consumed = top["consumed"].astype(float).to_numpy()
        short = (top["shortfall"] > 0).to_numpy()
        ax.barh(y + 0.2, entitled, height=0.38, color="#9ec5e8", label="entitled")
        ax.barh(
            y - 0.2,
            consumed,
            height=0.38,
            color=np.where(short, "#c0392b", "#2f6690"),
            label="consumed",
        )
        ax.set_yticks(y, labels=[_chart_label(n) for n in top["product_name"]])
        ax.xaxis.set_major_formatter(_thousands())
        ax.set_xlabel("seats (red: consumed beyond entitlement; no bar: unlimited)")
        ax.legend(loc="lower right", frameon=False)
        ax.set_title(
            f"Position of the top {len(top)} products by spend",
            loc="left",
            fontsize=11,
            fontweight="bold",
        )
        return _svg(fig, "position")


def usage_chart(trend: pd.DataFrame) -> str:
    fig, ax = _figure(2.8, 12.0)
    ax.grid(axis="y", color="#e3e6ea", linewidth=0.8)
    if trend.empty or trend["seats_in_use"].sum() == 0:
        _empty(ax, "no usage metered in the 52 weeks")
        return _svg(fig, "usage")
    weeks = pd.to_datetime(trend["week_start"])
    ax.plot(weeks, trend["seats_in_use"], color="#2f6690", linewidth=2)
    ax.fill_between(weeks, trend["seats_in_use"], color="#9ec5e8", alpha=0.5)
    ax.set_ylabel("seats in use per day")
    ax.yaxis.set_major_formatter(_thousands())
    fig.autofmt_xdate()
    ax.set_title("Usage trend, weekly average", loc="left", fontsize=11, fontweight="bold")
    return _svg(fig, "usage")


def savings_chart(months: pd.DataFrame, data: ReportData, currency: str | None) -> str:
    fig, ax = _figure()
    ax.grid(axis="y", color="#e3e6ea", linewidth=0.8)
    start = data.period.start
    labels = [
        dt.date(start.year, start.month + i, 1).strftime("%Y-%m")
        for i in range(3)
        if dt.date(start.year, start.month + i, 1) <= data.period.as_of
    ]
    shown = months[months["currency"] == currency] if currency else months.iloc[0:0]
    if shown["annual_saving"].sum() == 0:
        _empty(ax, "no seat reclaimed or offboarded in the quarter")
        ax.set_title(
            "Savings realised in the quarter, by month", loc="left", fontsize=11, fontweight="bold"
        )
        return _svg(fig, "savings")
    bottom = np.zeros(len(labels))
    for cause, color in (("reclaimed", "#2f6690"), ("offboarding", "#81c3d7")):
        part = shown[shown["cause"] == cause].set_index("month")["annual_saving"]
        values = part.reindex(labels).fillna(0.0).to_numpy()
        ax.bar(labels, values, bottom=bottom, color=color, label=f"{cause} seats", width=0.5)
        bottom = bottom + values
    ax.yaxis.set_major_formatter(_thousands())
    ax.set_ylabel(f"per year ({currency or 'no priced seats'})")
    ax.legend(loc="upper left", frameon=False)
    ax.set_title(
        "Savings realised in the quarter, by month", loc="left", fontsize=11, fontweight="bold"
    )
    return _svg(fig, "savings")


def charts(data: ReportData) -> dict[str, str]:
    position = data.sections["position"]
    return {
        "spend": spend_chart(position),
        "position": position_chart(position),
        "usage": usage_chart(data.sections["usage_trend"]),
        "savings": savings_chart(
            data.charts.get(
                "savings_by_month",
                pd.DataFrame(columns=["month", "cause", "currency", "annual_saving"]),
            ),
            data,
            main_currency(position),
        ),
    }


# --- the writers ---------------------------------------------------------------------------


def headline(data: ReportData) -> list[dict]:
    """The executive summary's key figures (money per currency)."""
    summary = data.sections["summary"]
    cards = []
    for measure, label in (
        ("Spend in force (per year)", "spend in force / year"),
        ("True-up exposure", "true-up exposure"),
        ("Reclaimable waste (per year)", "reclaimable waste / year"),
        ("Savings realised: reclaimed seats (per year)", "saved by reclaiming / year"),
        ("Savings realised: offboarded seats (per year)", "saved by offboarding / year"),
    ):
        rows = summary[summary["measure"] == measure]
        values = [
            f"{float(r.value):,.2f} {r.currency}".strip() for r in rows.itertuples(index=False)
        ]
        cards.append({"label": label, "values": values or ["0"], "detail": _first(rows)})
    return cards


def _first(rows: pd.DataFrame) -> str:
    return str(neutralise(str(rows["detail"].iloc[0]))) if len(rows) else ""


def render_html(data: ReportData, path: Path, svgs: dict[str, str] | None = None) -> Path:
    from jinja2 import Environment, FileSystemLoader
    from markupsafe import Markup

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)
    svgs = svgs if svgs is not None else charts(data)
    sections = [
        {
            "key": s.key,
            "title": s.title,
            "description": s.description,
            "table": html_table(data.sections[s.key], s.html_rows),
        }
        for s in SECTIONS
    ]
    v = data.verification
    html = env.get_template(TEMPLATE).render(
        title=(
            f"Vendor audit pack: {neutralise(data.vendor)}"
            if data.vendor
            else "Quarterly license audit"
        ),
        quarter=data.label,
        period=data.period.title,
        to_date=data.period.to_date,
        as_of=data.period.as_of.isoformat(),
        vendor=neutralise(data.vendor) if data.vendor else None,
        generated_at=data.generated_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cards=headline(data),
        sections=sections,
        charts={k: Markup(v) for k, v in svgs.items()},  # noqa: S704 - matplotlib's own SVG
        chain={
            "ok": v.ok,
            "entries": v.entries,
            "last_hash": v.last_hash or "",
            "problem": v.problem or "",
        },
        files={"workbook": file_stem(data) + ".xlsx", "csv": "csv/"},
    )
    path.write_text(html, encoding="utf-8")
    return path


_EXCEL_FORMATS = {
    "money": "#,##0.00",
    "int": "#,##0",
    "date": "yyyy-mm-dd",
    "datetime": "yyyy-mm-dd hh:mm:ss",
}
EXCEL_MAX_ROWS = 1_048_575  # below the header
STREAM_CHUNK = 5_000  # rows per write while streaming a sheet


def write_workbook(data: ReportData, path: Path, chunk_rows: int = STREAM_CHUNK) -> Path:
    """One sheet per section (after "report": what the workbook is): typed cells, a styled
    header row, frozen panes, an autofilter and column widths.

    openpyxl makes the workbook: every sheet, its header row, widths, panes, filter and the
    cell styles. Its per-cell path costs ~19 us a cell, 25 s for the 1.3 million cells of
    the reference enterprise's report, so the data rows are streamed into the sheets
    openpyxl wrote, in the same SpreadsheetML (inline strings, typed numbers, dates as
    serial numbers with the date style openpyxl registered for the column), built a column
    at a time from the neutralised frame."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    bold = Font(bold=True, color="FFFFFF")
    fill = PatternFill("solid", fgColor="2F6690")
    wrap = Alignment(vertical="top", wrap_text=True)

    about = [
        ("report", "Vendor audit pack" if data.vendor else "Quarterly license audit"),
        ("quarter", data.label),
        ("period", data.period.title),
        ("as_of", data.period.as_of),
        ("vendor", neutralise(data.vendor) if data.vendor else "(all vendors)"),
        ("generated_at", data.generated_at.astimezone(dt.UTC).replace(tzinfo=None)),
        ("audit_chain", "intact" if data.verification.ok else "BROKEN"),
        ("audit_entries", data.verification.entries),
        ("audit_last_hash", data.verification.last_hash or ""),
    ]
    streamed, dimensions = {}, {}
    for index, key in enumerate(["report", *data.sections], start=1):
        sheet = book.create_sheet(key)
        if key == "report":
            header, kinds = ["item", "value"], ["text", "text"]
            samples = [[a for a, _ in about], [b for _, b in about]]
            rows = len(about)
        else:
            frame = data.sections[key].head(EXCEL_MAX_ROWS)
            safe = neutralise_frame(frame)
            header = list(safe.columns)
            kinds = [column_kind(frame[c], c) for c in frame.columns]
            head = safe.head(500)
            samples = [plain_values(head.iloc[:, j], k) for j, k in enumerate(kinds)]
            rows = len(frame)
        letters = [get_column_letter(j) for j in range(1, len(header) + 1)]
        for letter, name, kind, values in zip(letters, header, kinds, samples, strict=True):
            width = max([len(name)] + [len(_excel_text(v, kind)) for v in values])
            sheet.column_dimensions[letter].width = min(max(width + 2, 9), 60)
        sheet.freeze_panes = "A2"
        sheet.auto_filter.ref = f"A1:{letters[-1]}{rows + 1}"
        dimensions[f"xl/worksheets/sheet{index}.xml"] = f"A1:{letters[-1]}{rows + 1}"
        head_cells = []
        for name in header:
            cell = WriteOnlyCell(sheet, value=name)
            cell.font, cell.fill, cell.alignment = bold, fill, wrap
            head_cells.append(cell)
        sheet.append(head_cells)
        if key == "report":
            for item, value in about:
                cell = WriteOnlyCell(sheet, value=value)
                if isinstance(value, dt.date):
                    is_time = isinstance(value, dt.datetime)
                    cell.number_format = _EXCEL_FORMATS["datetime" if is_time else "date"]
                sheet.append([item, cell])
            continue
        # a prototype row: an empty cell per styled column, so openpyxl registers the style
        prototype = []
        for kind in kinds:
            cell = WriteOnlyCell(sheet)
            if kind in _EXCEL_FORMATS:
                cell.number_format = _EXCEL_FORMATS[kind]
            prototype.append(cell)
        sheet.append(prototype)
        streamed[f"xl/worksheets/sheet{index}.xml"] = (letters, kinds, safe)
    book.save(path)
    _stream_rows(path, streamed, dimensions, chunk_rows)
    return path


_PROTOTYPE = re.compile(r'<row r="2"(?: [^>]*)?(?:/>|>(.*?)</row>)', re.S)
_CELL_STYLE = re.compile(r'<c r="([A-Z]+)2" s="(\d+)"')
_ILLEGAL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # not allowed in XML 1.0
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")


def _stream_rows(path: Path, streamed: dict, dimensions: dict, chunk_rows: int) -> None:
    """Replace each streamed sheet's prototype row by its data rows and give every sheet
    its dimension (what readers size the sheet by), rewriting the zip."""
    import zipfile

    temporary = path.with_suffix(".tmp")
    with (
        zipfile.ZipFile(path) as source,
        zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target,
    ):
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename not in dimensions:
                target.writestr(info, content)
                continue
            xml = content.decode("utf-8")
            dimension = f'<dimension ref="{dimensions[info.filename]}"/>'
            xml = xml.replace("</sheetPr>", "</sheetPr>" + dimension, 1)
            if info.filename not in streamed:
                target.writestr(info, xml.encode("utf-8"))
                continue
            letters, kinds, safe = streamed[info.filename]
            found = _PROTOTYPE.search(xml)
            if found is None:
                raise RuntimeError(f"{info.filename}: openpyxl's prototype row is missing")
            styles = dict(_CELL_STYLE.findall(found.group(1) or ""))
            with target.open(info.filename, "w", force_zip64=True) as out:
                out.write(xml[: found.start()].encode("utf-8"))
                for start in range(0, len(safe), chunk_rows):
                    part = safe.iloc[start : start + chunk_rows]
                    out.write(_rows_xml(part, start + 2, letters, kinds, styles))
                out.write(xml[found.end() :].encode("utf-8"))
    temporary.replace(path)


def _rows_xml(frame: pd.DataFrame, first_row: int, letters, kinds, styles) -> bytes:
    """Rows of SpreadsheetML for a slice of a neutralised section, numbered from
    `first_row` (the section's first row is the sheet's row 2)."""
    numbers = pd.Series(np.arange(len(frame)) + first_row, index=frame.index).astype(str)
    numbers = numbers.astype("string")
    content = None
    for j, (letter, kind) in enumerate(zip(letters, kinds, strict=True)):
        cells = _cells(frame.iloc[:, j], kind, letter, styles.get(letter), numbers)
        content = cells if content is None else content + cells
    rows = '<row r="' + numbers + '">' + content + "</row>"
    return "".join(rows.tolist()).encode("utf-8")


def _cells(series: pd.Series, kind: str, letter: str, style, numbers: pd.Series) -> pd.Series:
    """One column's cells as SpreadsheetML strings ("" where the cell is empty)."""
    at = f'<c r="{letter}' + numbers
    s = f' s="{style}"' if style else ""
    if kind in ("int", "float", "money"):
        values = pd.to_numeric(series.astype(object), errors="coerce").astype("float64")
        values = values.where(np.isfinite(values))
        text = values.astype("Int64" if kind == "int" else "float64").astype("string")
        cells = at + f'"{s} t="n"><v>' + text + "</v></c>"
    elif kind in ("date", "datetime"):
        moments = pd.to_datetime(series, utc=True).dt.tz_localize(None)
        serial = (moments - _EXCEL_EPOCH) / pd.Timedelta(days=1)
        text = serial.round().astype("Int64") if kind == "date" else serial
        cells = at + f'"{s} t="n"><v>' + text.astype("string") + "</v></c>"
    elif kind == "bool":
        text = series.astype("boolean").astype("Int64").astype("string")
        cells = at + '" t="b"><v>' + text + "</v></c>"
    else:
        text = series.astype("string").str.replace(_ILLEGAL, "", regex=True)
        text = text.str.replace("&", "&amp;").str.replace("<", "&lt;").str.replace(">", "&gt;")
        text = text.where((text != "").fillna(False).astype(bool))
        space = (text != text.str.strip()).fillna(False).astype(bool)
        opening = pd.Series("<t>", index=text.index, dtype="string").where(
            ~space, '<t xml:space="preserve">'
        )
        cells = at + '" t="inlineStr"><is>' + opening + text + "</t></is></c>"
    return cells.fillna("")


def _excel_text(value, kind: str) -> str:
    if value is None:
        return ""
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "datetime":
        return "2026-01-01 00:00:00"
    return str(value)


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The section as the CSV holds it: text neutralised, timestamps ISO 8601 in UTC."""
    safe = neutralise_frame(frame)
    for i, column in enumerate(frame.columns):
        if column_kind(frame[column], column) == "datetime":
            moments = pd.to_datetime(frame[column], utc=True)
            safe.isetitem(i, moments.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return safe


def write_csvs(data: ReportData, folder: Path) -> dict[str, Path]:
    """One UTF-8 CSV per section (with a byte-order mark, so Excel reads the accents)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, frame in data.sections.items():
        path = folder / f"{key}.csv"
        csv_frame(frame).to_csv(path, index=False, encoding="utf-8-sig")
        written[key] = path
    return written


def write_report(
    data: ReportData,
    reports_dir: Path | None = None,
    *,
    timings: dict[str, tuple[float, float]] | None = None,
) -> ReportFiles:
    """The HTML page, the workbook and the CSVs of one report, under
    <reports>/<quarter>/ (a vendor's pack: <reports>/<quarter>/vendors/<vendor>/)."""
    if reports_dir is None:
        from licenseflow.settings import get_settings

        reports_dir = get_settings().path("reports_dir")
    folder = report_folder(data, Path(reports_dir))
    folder.mkdir(parents=True, exist_ok=True)
    stem = file_stem(data)
    with timed(timings, "charts"):
        svgs = charts(data)
    with timed(timings, "HTML"):
        html = render_html(data, folder / f"{stem}.html", svgs)
    with timed(timings, "workbook"):
        workbook = write_workbook(data, folder / f"{stem}.xlsx")
    with timed(timings, "CSVs"):
        csv_dir = folder / "csv"
        csvs = write_csvs(data, csv_dir)
    return ReportFiles(folder, html, workbook, csv_dir, csvs)


# --- the Prefect UI -------------------------------------------------------------------------


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#|!])")


def _md(text) -> str:
    """A name from the store as plain text in markdown (no link, no markup)."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def summary_markdown(data: ReportData, files: ReportFiles) -> str:
    title = f"Vendor audit pack: {_md(data.vendor)}" if data.vendor else "Quarterly license audit"
    lines = [f"# {title}, {data.period.title}", ""]
    for card in headline(data):
        lines.append(
            f"- {card['label']}: **{', '.join(card['values'])}** {_md(card['detail'])}".rstrip()
        )
    risk = data.sections["vendor_risk"]
    high = risk.loc[risk["risk"] == "high", "vendor"].drop_duplicates().tolist()
    lines += [
        f"- vendors at high compliance risk: **{len(high)}**"
        + (f" ({', '.join(_md(v) for v in high[:10])})" if high else ""),
        f"- renewals due by the end of next quarter: **{len(data.sections['renewals'])}**",
        f"- ownership gaps: **{len(data.sections['ownership_gaps'])}**",
    ]
    v = data.verification
    lines.append(
        f"- audit log: **{'chain intact' if v.ok else 'chain BROKEN'}**, {v.entries} entries, "
        f"last hash `{v.last_hash or '-'}`"
        + ("" if v.ok else f" (entry {v.first_bad_id}: {_md(v.problem)})")
    )
    lines += [
        "",
        f"Report: `{files.html}`  ",
        f"Workbook: `{files.workbook}`  ",
        f"CSV: `{files.csv_dir}`",
    ]
    return "\n".join(lines)


def publish(data: ReportData, files: ReportFiles) -> dict:
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    suffix = f"-{slug(data.vendor)}" if data.vendor else ""
    what = f"Audit pack {_md(data.vendor)}" if data.vendor else "Quarterly audit report"
    create_link_artifact(
        key=f"{LINK_KEY}{suffix}",
        link=files.html.resolve().as_uri(),
        link_text=f"{what} {data.period.title}",
        description="The report's HTML page (the workbook and CSVs are beside it)",
    )
    create_markdown_artifact(
        summary_markdown(data, files),
        key=f"{SUMMARY_KEY}{suffix}",
        description=f"Quarterly audit {data.period.title}",
    )
    return report_summary(data, files)


def report_summary(data: ReportData, files: ReportFiles) -> dict:
    v = data.verification
    return {
        "quarter": data.label,
        "as_of": data.period.as_of.isoformat(),
        "to_date": data.period.to_date,
        "vendor": data.vendor,
        "html": str(files.html),
        "workbook": str(files.workbook),
        "csv_dir": str(files.csv_dir),
        "rows": {k: int(len(f)) for k, f in data.sections.items()},
        "audit_chain_ok": v.ok,
        "audit_entries": v.entries,
        "audit_last_hash": v.last_hash,
    }


@task(cache_policy=NO_CACHE)
def render_task(data: ReportData) -> ReportFiles:
    return write_report(data)


@task(cache_policy=NO_CACHE)
def publish_task(data: ReportData, files: ReportFiles) -> dict:
    return publish(data, files)
