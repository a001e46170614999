"""The report's headline: which backend for which model.

For each model and device (and machine, and computation where a section holds several, such as a batch
sweep's sizes): the fastest row by training throughput, and every other row's steady epoch time over the
fastest's, paired by round (analysis.standings), with its 95% interval and its verdict (stats.verdict):
slower or faster where the interval excludes 1, tied within the noise where it spans 1, undecided where
there is no interval. The same headline is a markdown table at the top of report.md, plain text at the
end of `kerasmnist compare` and `kerasmnist report`, and a plot (plots.write_headline_plot).

Rows of different Python environments are ranked against each other, each backend once: in its chosen
environment (load.choose_environments: the config's, else the newest); its other environments' rows are set
against that one under "What changed between environments" (analysis.environment_changes).

Where several machines (hosts, Slurm machine kinds) ran a model's computation, report.md also sets every
(backend, machine, device) row against the fastest of all (across_machines): paired by round on the fastest's
machine, and across machines, which never share a round, from unpaired runs with Welch's interval, said so.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from kerasmnist.config import ACCURACY_MARGIN_POINTS
from kerasmnist.report import analysis
from kerasmnist.report.load import EXECUTION_KNOBS, Row, describe, section_settings
from kerasmnist.report.mdtable import head, line
from kerasmnist.report.stats import AS_WELL, CONFIDENCE, Learning, Ratio, order_text, ratio, unpaired_ratio, verdict

# What a row's headline name keeps: the backend and how it ran; the rest is what its group computed.
HOW_IT_RAN = (*EXECUTION_KNOBS, "implementation", "jit_compile_resolved", "environment")


@dataclass(frozen=True)
class Ranked:
    """What a headline ranks rows by: a time in their records (lower is faster)."""

    seconds: str  # the RunRecord figure
    throughput: str  # what a faster time means, as the headline says it
    time: str  # the figure, as the headline says it
    missing: str  # why a finished row may lack it
    absent: str = "no figure"  # what a finished run lacking it is, as "(ABSENT in 2 of 6 runs)" says it


TRAINING = Ranked("steady_epoch_seconds", "training throughput", "steady epoch time", "it needs 2 or more epochs")
INFERENCE = Ranked("inference_median_seconds", "inference throughput", "model.predict time over the test set",
                   "the native loops and older records time no inference")
# MLPerf's measure: training seconds from the first step, compilation included, to a target validation accuracy,
# checked at epoch ends (validation runs there); a run that never reached it has no time.
TIME_TO_ACCURACY = Ranked("time_to_accuracy_seconds", "time to the target validation accuracy (checked at epoch ends)",
                          "time to accuracy", "no run reached the target validation accuracy", "not reached")


def missing_runs(row: Row, ranked: Ranked) -> str:
    """' (not reached in 2 of 6 runs)' where some of a row's finished runs lack the ranked time (here, runs that
    never reached the target accuracy); "" where none does."""
    missing = sum(getattr(entry.record, ranked.seconds) is None for entry in row.entries)
    return f" ({ranked.absent} in {missing} of {len(row.entries)} runs)" if missing else ""


def section_of(row: Row) -> Hashable:
    """Which model a row trained: its headline section. This is the one place the headline's sections are
    chosen (with section_title, how a section is named)."""
    return row.model_key


def section_title(row: Row) -> str:
    """How the headline names a row's section."""
    return row.model_title


@dataclass(frozen=True)
class Contender:
    """A row that ran the group's computation, set against its fastest row."""

    row: Row
    versus_fastest: Ratio  # its steady epoch time over the fastest's, per round; above 1: slower
    learning: Learning | None = None  # its test accuracy against the fastest's, per round; None: no round shared

    @property
    def name(self) -> str:
        return contender_name(self.row)

    @property
    def throughput(self) -> Ratio:
        """Its training throughput relative to the fastest's: below 1, slower."""
        return self.versus_fastest.inverse()

    @property
    def verdict(self) -> str:
        return verdict(self.versus_fastest)


@dataclass(frozen=True)
class Headline:
    """One model on one device: which row trained fastest, and how every other row compares with it."""

    section: str  # its section's title (section_title)
    device: str
    detail: str  # what tells it apart from its section's other groups on that device (machine, settings), or ""
    fastest: Row | None  # None where no row has the ranked time (every run had a single epoch, say)
    contenders: list[Contender]  # in order of their ratio to the fastest
    unranked: list[tuple[Row, str]]  # rows with no ratio to the fastest, and why
    ranked: Ranked = TRAINING
    margin: float = ACCURACY_MARGIN_POINTS  # of the learning verdicts, in points of test accuracy

    @property
    def label(self) -> str:
        """'cnn on cpu', with its detail in brackets where it has one."""
        return f"{self.section} on {self.device}" + (f" ({self.detail})" if self.detail else "")

    @property
    def decided(self) -> bool:
        """Whether the fastest is faster than every other row by an interval that excludes 1."""
        return bool(self.contenders) and all(c.versus_fastest.excludes(1.0) and c.versus_fastest.estimate > 1
                                             for c in self.contenders)

    @property
    def none_finished(self) -> str | None:
        """Where no cell of the group finished (a device no backend could use here, say): that, and why, as
        'every cell was skipped: REASON' (where the rows' reasons differ, each row says its own); else None."""
        if self.fastest is not None or not self.unranked or any(row.entries for row, _ in self.unranked):
            return None
        cells = [entry for row, _ in self.unranked for entry in row.others]
        counts = {status: sum(e.status == status for e in cells) for status in ("skipped", "failed")}
        said = ("every cell was skipped" if not counts["failed"] else "every cell failed" if not counts["skipped"]
                else f"no cell finished ({counts['skipped']} skipped, {counts['failed']} failed)")
        reasons = list(dict.fromkeys(e.reason for e in cells))
        if len(reasons) == 1 and reasons[0]:
            return f"{said}: {reasons[0]}"
        return f"{said}; each row says why"

    def fastest_text(self, mark: str = "") -> str:
        """Which row was fastest and how sure that is; `mark` goes either side of its name (markdown's **)."""
        if self.fastest is None:
            return f"no fastest: {self.none_finished or f'no row has a {self.ranked.time} ({self.ranked.missing})'}"
        name = f"{mark}{contender_name(self.fastest)}{mark}{missing_runs(self.fastest, self.ranked)}"
        if not self.contenders:
            return f"only {name} has a {self.ranked.time} here: nothing to compare it with"
        if self.decided:
            return f"{name} is the fastest"
        if not any(c.versus_fastest.has_interval for c in self.contenders):
            return f"{name} ran fastest in a single round: no order is decided"
        return f"{name} ran fastest, but not every order is decided"


    def learning_text(self) -> str:
        """Whether the other rows learn as well as the fastest: 'all three learn as well (within ±1.0 points)', or
        each row's verdict where not all do; "" where no row has a learning verdict."""
        judged = [c for c in self.contenders if c.learning]
        if not judged or self.fastest is None:
            return ""
        within = f"within ±{self.margin:.1f} points of test accuracy, paired by round"
        if len(judged) == len(self.contenders) and all(c.learning.verdict == AS_WELL for c in judged):
            every = {1: "both", 2: "all three"}.get(len(judged), f"all {len(judged) + 1}")
            return f"{every} learn as well ({within})"
        said = [f"{c.name} {c.learning.text()}" for c in judged]
        return f"against {contender_name(self.fastest)}'s test accuracy ({within}): " + "; ".join(said)


def contender_name(row: Row) -> str:
    """The row's backend and the settings that say how it ran (the rest is its group's computation)."""
    return row.name_without(*(key for key in row.settings if key not in HOW_IT_RAN))


def headlines(rows: list[Row], ranked: Ranked = TRAINING, margin: float = ACCURACY_MARGIN_POINTS) -> list[Headline]:
    """Per section: every group of rows that computed the same thing (profiled rows aside), in the rows' order,
    ranked by `ranked`, each other row's test accuracy set against the fastest's within `margin` points."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        # rows with no finished run too (the headline says why they are missing); a backend in its chosen
        # environment only (load.choose_environments: the others are set against it, not ranked)
        if not row.profiled and row.superseded_by is None:
            groups.setdefault((section_of(row), row.computation()), []).append(row)
    found = []
    for group, detail in zip(groups.values(), _details(list(groups.values()))):
        standing_of = analysis.standings(group, ranked.seconds)  # one computation: one fastest, or none
        fastest = next(iter(standing_of.values())).fastest if standing_of else None
        contenders, unranked = [], []
        for row in group:
            versus = standing_of[id(row)].versus_fastest if id(row) in standing_of else None
            if versus:
                learning = analysis.learning_against(row, fastest, margin) if ranked is TRAINING else None
                contenders.append(Contender(row, versus, learning))
            elif row is not fastest:
                unranked.append((row, why_unranked(row, ranked)))
        found.append(Headline(section_title(group[0]), group[0].device, detail, fastest,
                              sorted(contenders, key=lambda c: c.versus_fastest.estimate), unranked, ranked,
                              margin))
    return found



def why_unranked(row: Row, ranked: Ranked = TRAINING) -> str:
    """Why a row that is not the fastest has no ratio to it."""
    if not row.entries:
        last = row.others[-1]
        return f"no finished run ({last.status}" + (f": {last.reason})" if last.reason else ")")
    if row.median(ranked.seconds) is None:
        return f"no {ranked.time} ({ranked.missing})"
    return "no round shared with the fastest"


def _details(groups: list[list[Row]]) -> list[str]:
    """The machine and the settings that tell apart several groups of one section and device."""
    by_place: dict[tuple, list[Row]] = {}
    for group in groups:
        by_place.setdefault((section_of(group[0]), group[0].device), []).append(group[0])
    details = []
    for group in groups:
        first = group[0]
        alike = by_place[(section_of(first), first.device)]
        parts = _what_differs(first, alike)
        if len({row.machine for row in alike}) > 1:
            parts.insert(0, first.machine)
        details.append(", ".join(part for part in parts if part))
    return details


def _what_differs(row: Row, alike: list[Row]) -> list[str]:
    """What `row` computed unlike the others of `alike`: the settings among them that differ, less how and on
    which device each ran."""
    _, differing = section_settings(alike)
    return [part for key in differing if key not in (*HOW_IT_RAN, "backend", "device")
            and (part := describe(key, row.settings.get(key)))]


@dataclass(frozen=True)
class AcrossMachines:
    """A row set against the fastest row of its model's computation on any machine and device."""

    row: Row
    # Its time over the fastest's: paired by round where it shares rounds with the fastest (on the fastest's machine
    # only), else from unpaired runs (stats.unpaired_ratio); None where a side has no positive time.
    versus_fastest: Ratio | None
    paired: bool
    median_ratio: float  # its median time over the fastest's: what an unpaired ratio without an interval shows

    @property
    def shown_ratio(self) -> float:
        """The ratio its table line shows: the paired or Welch estimate where it has an interval, else the medians'."""
        versus = self.versus_fastest
        return versus.estimate if versus and (self.paired or versus.has_interval) else self.median_ratio


@dataclass(frozen=True)
class MachinesGroup:
    """The rows of one model's computation run on several machines, against the fastest of them."""

    section: str  # its section's title (section_title)
    detail: str  # what tells it apart from its section's other groups (batch size, say), or ""
    fastest: Row
    others: list[AcrossMachines]  # by the ratio their lines show, fastest first


def across_machines(rows: list[Row], ranked: Ranked = TRAINING) -> list[MachinesGroup]:
    """Per model, each computation that more than one machine ran: every (backend, machine, device) row with
    the ranked time against the fastest. Rounds pair only rows of one machine: a row that shares rounds with the
    fastest has a paired ratio, any other (every row of another machine) a ratio of unpaired runs."""
    groups: dict[tuple, list[Row]] = {}
    for row in filter(analysis.ranked_for_backend, rows):
        if row.median(ranked.seconds) is not None:
            groups.setdefault((section_of(row), row.computation_anywhere()), []).append(row)
    several = [group for group in groups.values() if len({row.machine for row in group}) > 1]
    found = []
    for group in several:
        fastest = min(group, key=analysis.typical_time(group, ranked.seconds))
        alike = [other[0] for other in several if section_of(other[0]) == section_of(group[0])]
        others = [against_fastest(row, fastest, ranked) for row in group if row is not fastest]
        found.append(MachinesGroup(section_title(fastest), ", ".join(_what_differs(fastest, alike)), fastest,
                                   sorted(others, key=lambda other: other.shown_ratio)))
    return found


def against_fastest(row: Row, fastest: Row, ranked: Ranked) -> AcrossMachines:
    """The row's ranked time over the fastest's: paired by round where the two ran on one machine and share
    rounds; else (another machine, or another compare) from their runs, each one sample."""
    median_ratio = row.median(ranked.seconds) / fastest.median(ranked.seconds)
    one_machine = row.machine == fastest.machine
    paired = ratio(row.by_round(ranked.seconds), fastest.by_round(ranked.seconds)) if one_machine else None
    if paired:
        return AcrossMachines(row, paired, True, median_ratio)
    return AcrossMachines(row, unpaired_ratio(row.values(ranked.seconds), fastest.values(ranked.seconds)), False,
                          median_ratio)


UNPAIRED = "unpaired runs: the ratio of the medians, no interval"
UNPAIRED_WELCH = "unpaired runs, Welch's interval"


def versus_fastest_cells(other: AcrossMachines, fastest: Row, ranked: Ranked) -> tuple[str, str]:
    """An across-machines row's ratio to the fastest, and what it comes from with its verdict."""
    versus = other.versus_fastest
    if other.paired:
        return versus.text(), f"paired, {verdict(versus)}"
    if versus and versus.has_interval:
        runs = f"{len(other.row.values(ranked.seconds))} and {len(fastest.values(ranked.seconds))} runs"
        return versus.text(), f"{UNPAIRED_WELCH} ({runs}), {verdict(versus)}"
    return f"{other.median_ratio:.2f}×", UNPAIRED


def cross_machine_table(rows: list[Row], ranked: Ranked = TRAINING) -> list[str]:
    """report.md's table of each model across machines (none where every computation ran on one machine)."""
    found = across_machines(rows, ranked)
    if not found:
        return []
    lines = ["## Across machines", "",
             f"Per model, every backend, machine and device against the fastest by {ranked.throughput}. Rows on the "
             f"fastest's machine ran in its rounds: their ratio is paired by round, with its {CONFIDENCE:.0%} "
             "interval. Rows of different machines never share a round, so a ratio across machines comes from "
             f"unpaired runs, each run one sample: the ratio of the two rows' geometric mean {ranked.time}s, with "
             f"Welch's {CONFIDENCE:.0%} interval on their log times (scipy.stats.ttest_ind, unequal variances). The "
             "machines' drift does not cancel between unpaired runs, so that interval is wider than a paired one "
             "over as many rounds; an order is stated only where it excludes 1. With fewer than 2 runs on either "
             "side it is the ratio of the medians, with no interval, and no order is decided from it.", "",
             *head("model", "fastest", "other row", "machine", "device", f"{ranked.time} vs fastest", "from")]
    for group in found:
        fastest = group.fastest
        label = group.section + (f" ({group.detail})" if group.detail else "")
        for first, other in zip([True, *[False] * len(group.others)], group.others):
            lines.append(line(label if first else "",
                              f"**{contender_name(fastest)}**, {fastest.machine}, {fastest.device}" if first else "",
                              contender_name(other.row), other.row.machine, other.row.device,
                              *versus_fastest_cells(other, fastest, ranked)))
    return [*lines, ""]


TITLE = "Which backend for which model"


def explanation(ranked: Ranked) -> str:
    return (f"by {ranked.throughput}; each ratio is a row's {ranked.time} over the fastest's, paired by round, "
            f"with its {CONFIDENCE:.0%} interval (above 1: slower)")


def render_text(found: list[Headline]) -> list[str]:
    """The headline as plain-text lines, for a terminal, a log or a notebook cell (no colours, no table);
    none without a headline."""
    lines = [f"{TITLE}, {explanation(found[0].ranked)}.", ""] if found else []
    for headline in found:
        learning = headline.learning_text()
        lines.append(f"{headline.label}: {headline.fastest_text()}" + (f"; {learning}" if learning else ""))
        width = max((len(c.name) for c in headline.contenders), default=0)
        lines += [f"    {c.name:<{width}}  {order_text(c.versus_fastest)}" for c in headline.contenders]
        lines += [f"    {contender_name(row)}: {why}" for row, why in headline.unranked]
    return [*lines, *([""] if lines else [])]


def markdown_table(found: list[Headline], title: str = TITLE) -> list[str]:
    """The headline as a report.md table: a line per row set against its group's fastest."""
    if not found:
        return []
    ranked = found[0].ranked
    learns = any(c.learning for headline in found for c in headline.contenders)
    lines = [f"## {title}", "", f"By {explanation(ranked)[3:]}. "
                                 + (LEARNING_EXPLANATION.format(found[0].margin) + " " if learns else "")
                                 + "Each model's section below has the figures.", "",
             *head("model and device", "fastest", "other row", f"{ranked.time} vs fastest [{CONFIDENCE:.0%}]", "rounds",
                   "verdict", *([f"test accuracy vs fastest, points [{CONFIDENCE:.0%}]", "learning"] if learns else []))]
    for headline in found:
        against = [(c.name + missing_runs(c.row, ranked), c.versus_fastest.text(), str(c.versus_fastest.rounds),
                    c.verdict, *([c.learning.difference.text(unit="") if c.learning else "–",
                                  c.learning.verdict if c.learning else "–"] if learns else []))
                   for c in headline.contenders]
        against += [(contender_name(row), "–", "–", why, *(["–", "–"] if learns else [])) for row, why in headline.unranked]
        # The group's model and fastest on its first line only: the lines under it read as its members.
        lines += [line(headline.label if first else "", headline.fastest_text(mark="**") if first else "", *cells)
                  for first, cells in zip([True, *[False] * len(against)], against or [("–",) * (6 if learns else 4)])]
    learning = [f"- {headline.label}: {text}" for headline in found if (text := headline.learning_text())]
    return [*lines, "", *([*learning, ""] if learning else [])]


LEARNING_EXPLANATION = (
    "Each other row's test accuracy is set against the fastest's, paired by round (a round's cells share their "
    "seed): it learns as well where two one-sided t tests at 5% put the difference within ±{:.1f} points (its 90% "
    "interval inside the margin), worse or better where the 95% interval lies wholly beyond the margin, and is "
    "undecided otherwise (always with one round).")
