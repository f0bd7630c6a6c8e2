"""Dataset inspection: the summary, a token-length histogram with the cutoff, the findings, and a row viewer."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tunedeck.core.inspect.messages import InspectError, InspectMessage, Progress, RawRow, ReportReady, RowPreview
from tunedeck.core.inspect.report import Finding, InspectReport
from tunedeck.tui.inspector import CommandFactory, InspectorProcess, InspectRequest, worker_command
from tunedeck.tui.styles import SEVERITY_STYLE
from tunedeck.tui.widgets.length_histogram import LengthHistogram

TRAINED, MASKED, PAST_CUTOFF = "bold green", "dim", "strike red"


def summary_text(report: InspectReport) -> Text:
    """The report's head: source, format, rows and samples, template, token lengths, findings per kind."""
    text = Text()

    def line(label: str, value: str, style: str = "") -> None:
        text.append(f"{label:<10}", style="bold")
        text.append(f"{value}\n", style=style)

    line("source", report.source)
    line("format", report.format)
    line("rows", f"{report.rows} · samples {report.samples}")
    line("template", report.template)
    stats = report.lengths.summary() if report.lengths else {}
    if stats.get("count"):
        line("tokens", f"min {stats['min']} · p50 {stats['p50']} · p90 {stats['p90']} · max {stats['max']}")
        line("", f"mean {stats['mean']} · total {stats['total']}")
        over = stats["over_cutoff"]
        line("cutoff", f"{stats['cutoff']} · {over} over · {stats['assistant_lost']} lose every answer token",
             "yellow" if over else "")
        for said in cut_lines(stats):
            line("", said, "bold yellow")
    if report.layout:
        line("read as", report.layout)
    if report.placeholders:
        line("unfilled", " · ".join(f"{{{{{name}}}}} in {n} rows" for name, n in report.placeholders.items())
             + " (data.placeholders fills them)", "yellow")
    counts = report.counts()
    line("findings", " · ".join(f"{kind} {n}" for kind, n in counts.items()) if counts else "none",
         "" if not counts else "yellow")
    return text


def cut_warning(stats: dict[str, Any]) -> str:
    """What the cutoff takes, said where the dataset is accepted: samples cut, trained tokens lost, and the cutoffs
    (measured percentiles) that keep 95% and 99% of the samples whole; empty when nothing is cut."""
    over = stats.get("over_cutoff", 0)
    if not over:
        return ""
    lost = stats.get("answer_tokens_lost")
    tokens = f", {lost} of {stats['answer_tokens']} trained tokens lost" if lost is not None else ""
    return (f"{over} of {stats['count']} samples are cut{tokens}; cutoff {keeping(stats, 0.95)} keeps 95% whole (5), "
            f"{keeping(stats, 0.99)} keeps 99% (9)")


def cut_lines(stats: dict[str, Any]) -> list[str]:
    """The same, short enough for the summary pane."""
    if not stats.get("over_cutoff"):
        return []
    lost = stats.get("answer_tokens_lost")
    return [f"{stats['over_cutoff']} of {stats['count']} cut" + (f" · {lost} trained tokens lost" if lost else ""),
            f"{keeping(stats, 0.95)} keeps 95% whole (5) · {keeping(stats, 0.99)} 99% (9)"]


def keeping(stats: dict[str, Any], share: float) -> int:
    """The cutoff that keeps `share` of the samples whole, never below the cutoff already set."""
    return max(stats["cutoff"], stats["cutoff_keeps_95" if share < 0.99 else "cutoff_keeps_99"])


def row_text(answer: RowPreview | RawRow, findings: list[Finding]) -> Text:
    """A row as the model sees it: template applied, trained tokens bold green, masked dim, cut-off struck red."""
    text = Text()
    if isinstance(answer, RawRow):
        text.append(f"row {answer.row} is not a sample: {answer.problem}\n\n", style="bold red")
        text.append(answer.raw or "(nothing readable)")
        return text
    task = f" · task {answer.task}" if answer.task else ""
    text.append(f"row {answer.row} · {answer.where}{task}\n", style="bold")
    text.append(f"{answer.tokens} tokens, cutoff {answer.cutoff} · {answer.trained} trained tokens kept\n")
    for finding in findings:
        text.append(f"{finding.kind}: {finding.message}\n", style=SEVERITY_STYLE.get(finding.severity, ""))
    text.append("legend: ")
    text.append("trained", style=TRAINED)
    text.append(" · ")
    text.append("masked", style=MASKED)
    text.append(" · ")
    text.append("past the cutoff", style=PAST_CUTOFF)
    text.append("\n\n")
    for piece, trained, past in answer.segments:
        text.append(piece, style=PAST_CUTOFF if past else TRAINED if trained else MASKED)
    return text


class DataScreen(Screen[bool]):
    """Inspect a dataset through the inspection worker; dismisses with True when the user accepts it."""

    CSS_PATH = "data.tcss"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("enter", "jump", "Jump to row", priority=True),
        Binding("f", "filter", "Filter kind"),
        Binding("left_square_bracket", "step_row(-1)", "Prev row", key_display="["),
        Binding("right_square_bracket", "step_row(1)", "Next row", key_display="]"),
        Binding("tab", "app.focus_next", "Next pane"),
        Binding("shift+tab", "app.focus_previous", "Prev pane"),
        Binding("a", "accept", "Accept dataset"),
        Binding("5", "accept_cutoff(0.95)", "Keep 95% whole"),
        Binding("9", "accept_cutoff(0.99)", "Keep 99% whole"),
    ]

    def __init__(self, request: InspectRequest, command: CommandFactory = worker_command):
        super().__init__()
        self.request = request
        self.command = command
        self.report: InspectReport | None = None
        self.findings: list[Finding] = []
        self.kind_filter: str | None = None
        self.current_row: int | None = None
        self.shown_row: int | None = None
        self._inspector: InspectorProcess | None = None
        self._leaving = False
        self.chosen_cutoff: int | None = None  # a cutoff picked on accepting (5 / 9), for the run's config

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="data-top"):
            yield Static(f"inspecting {self.request.path}…", id="data-summary")

            yield LengthHistogram(id="data-histogram")
        yield Static("starting the inspection worker…", id="data-status")
        with Horizontal(id="data-bottom"):
            table: DataTable = DataTable(id="data-findings", cursor_type="row", zebra_stripes=True)
            table.add_columns("kind", "severity", "where", "message")
            yield table
            with VerticalScroll(id="data-row-pane"):
                yield Static("Enter on a finding shows its row here.", id="data-row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.request.path
        self.query_one("#data-summary").border_title = "summary"
        self.query_one("#data-row-pane").border_title = "row"
        try:
            self._inspector = InspectorProcess(self.command(self.request))
        except OSError as exc:
            self._fail(f"cannot start the inspection worker: {exc}")
            return
        self.read_worker(self._inspector)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def read_worker(self, process: InspectorProcess) -> None:
        for message in process.messages():
            if self._leaving:
                return
            self.app.call_from_thread(self._worker_line, message)
        if not self._leaving:
            self.app.call_from_thread(self._worker_ended, process)

    def _worker_line(self, message: InspectMessage) -> None:
        if isinstance(message, Progress):
            count = f" {message.done}/{message.total}" if message.total else ""
            self.query_one("#data-status", Static).update(f"{message.phase}{count}…")
        elif isinstance(message, ReportReady):
            self._show_report(message.report)
        elif isinstance(message, RowPreview | RawRow):
            self._show_row(message)
        elif isinstance(message, InspectError) and not message.fatal:
            self.notify(message.message, title="cannot show the row", severity="warning")
        elif isinstance(message, InspectError):
            hint = f"\n{message.hint}" if message.hint else ""
            self._fail(f"{message.message}{hint}")

    def _worker_ended(self, process: InspectorProcess) -> None:
        if self.report is None and not self.query_one("#data-status", Static).has_class("error-text"):
            words = process.last_words()
            self._fail(f"the inspection worker stopped (exit {process.returncode}) before its report"
                       + (f": {words}" if words else ""))
        elif self.report is not None:
            self.notify("the inspection worker stopped: rows can no longer be shown", severity="warning")

    def _fail(self, message: str) -> None:
        status = self.query_one("#data-status", Static)
        status.update(f"✗ {message}")
        status.add_class("error-text")
        self.notify(message, title="inspection failed", severity="error")

    def _show_report(self, report: InspectReport) -> None:
        self.report = report
        self.findings = list(report.findings)
        self.query_one("#data-summary", Static).update(summary_text(report))
        cutoff = report.lengths.cutoff if report.lengths else self.request.cutoff
        self.query_one(LengthHistogram).show(report.lengths.lengths if report.lengths else [], cutoff)
        warning = cut_warning(report.lengths.summary() if report.lengths else {})
        self.query_one("#data-status", Static).update(
            f"{len(self.findings)} findings · Enter shows a finding's row · a accepts the dataset"
            + (f" as it is · {warning}" if warning else ""))
        if warning:
            self.notify(warning, title="the cutoff cuts samples", severity="warning", timeout=10)
        self._fill_findings()
        table = self.query_one(DataTable)
        table.focus()
        if self.findings:
            self.show_row(self.findings[0].row)
        elif report.rows:
            self.show_row(0)

    def _fill_findings(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for index, finding in enumerate(self.findings):
            if self.kind_filter and finding.kind != self.kind_filter:
                continue
            where = f"line {finding.line}" if finding.line else f"row {finding.row}"
            table.add_row(finding.kind, Text(finding.severity, style=SEVERITY_STYLE.get(finding.severity, "")),
                          where, finding.message, key=str(index))
        shown = table.row_count
        label = f"findings · {self.kind_filter}" if self.kind_filter else "findings"
        table.border_title = f"{label} ({shown})"

    def show_row(self, row: int) -> None:
        """Ask the worker for a row's preview; the viewer fills in when the answer comes."""
        self.current_row = row
        if self._inspector is None or not self._inspector.request_row(row):
            self.notify("the inspection worker is not running", severity="warning")
            return
        self.query_one("#data-row-pane").border_title = f"row {row} · loading…"

    def _show_row(self, answer: RowPreview | RawRow) -> None:
        row = answer.row
        self.shown_row = row
        findings = [f for f in self.findings if f.row == row]
        self.query_one("#data-row", Static).update(row_text(answer, findings))
        self.query_one("#data-row-pane").border_title = f"row {row}"
        self.query_one("#data-row-pane", VerticalScroll).scroll_home(animate=False)

    def action_jump(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.show_row(self.findings[int(key)].row)

    def action_step_row(self, delta: int) -> None:
        if self.report is None or self.current_row is None:
            return
        row = min(max(0, self.current_row + delta), max(0, self.report.rows - 1))
        self.show_row(row)

    def action_filter(self) -> None:
        if self.report is None:
            return
        kinds = [None, *self.report.counts()]
        self.kind_filter = kinds[(kinds.index(self.kind_filter) + 1) % len(kinds)]
        self._fill_findings()
        self.notify(f"showing {self.kind_filter or 'every kind'}", timeout=2)

    def action_accept(self) -> None:
        self._leave(True)

    def action_accept_cutoff(self, share: float) -> None:
        """Accept with the cutoff that keeps `share` of the samples whole (95% or 99%, measured)."""
        stats = self.report.lengths.summary() if self.report is not None and self.report.lengths else {}
        if not stats.get("over_cutoff"):
            self.notify("no sample is longer than the cutoff", timeout=3)
            return
        self.chosen_cutoff = keeping(stats, share)
        self._leave(True)

    def action_back(self) -> None:
        self._leave(False)

    def _leave(self, accepted: bool) -> None:
        self._leaving = True
        if self._inspector is not None:
            self._inspector.stop()
        self.dismiss(accepted)

    def on_unmount(self) -> None:
        self._leaving = True
        if self._inspector is not None:
            self._inspector.stop()
