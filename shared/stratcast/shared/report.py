"""Plain-text tables of a run's results from its ``metrics.json`` data, for the CLI, the daemon and the TUI.

Pure Python on plain data: no numpy, pandas or torch, so a torch-free client can print the same tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stratcast.shared.objectives import evidence_text, values_text

PROGRESS_FIELDS = (
    ("epoch", "epoch {:.2f}"),
    ("train_loss", "loss {:.4g}"),
    ("val_loss", "val {:.4g}"),
    ("val_score", "rmse/zero {:.4g}"),
    ("windows_per_s", "{:,.0f} win/s"),
    ("eta_s", "eta {}"),
)
"""Progress fields a progress line shows, in order, with their formats (``eta_s`` as :func:`duration_text`)."""


def progress_text(p: Mapping[str, Any]) -> str:
    """One line of a progress report (the fields a worker sends; any may be missing)."""
    parts = []
    if "step" in p:
        parts.append(f"step {p['step']}/{p.get('max_steps', '?')}")
    for key, fmt in PROGRESS_FIELDS:
        value = p.get(key)
        if isinstance(value, int | float):
            parts.append(fmt.format(duration_text(value) if key == "eta_s" else value))
    return " ".join(parts) or "-"


def duration_text(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``2h 10m``, ``4d 03h``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


METHOD_LABELS = {
    "model": "model",
    "model_raw": "model, raw",
    "zero": "zero forecast",
    "trailing_mean": "trailing mean",
    "last_value": "last value",
    "seasonal_naive": "seasonal naive",
    "oracle": "best possible",
}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width text table; numbers right-aligned with 4 significant digits."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(r[i]) or r[i] == MISSING for r in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


MISSING = "-"
"""Shown where a method has no figure (the zero forecast cannot rank)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def skill_table(metrics: Mapping[str, Any]) -> str:
    """Errors of the model and every baseline on the holdout, and the realized profit of their top picks."""
    errors: Mapping[str, Mapping[str, float]] = metrics["errors"]
    picks: Mapping[str, Mapping[str, float]] = metrics["ranking"]["picks"]
    k = metrics["ranking"]["k"]
    headers = ["method", "MAE", "RMSE", "total MAE", f"top {k['top10']} mean", f"top 1% ({k['top1pct']}) mean"]
    rows = []
    for name in [*errors, "oracle"]:
        err = errors.get(name, {})
        pick = picks.get(name, {})
        rows.append(
            [
                METHOD_LABELS.get(name, name),
                err.get("mae", MISSING),
                err.get("rmse", MISSING),
                err.get("total_mae", MISSING),
                pick.get("top10", MISSING),
                pick.get("top1pct", MISSING),
            ]
        )
    universe = metrics["ranking"]["universe_mean"]
    foot = "top-k mean: realized mean profit per period of the k strategies each method ranks highest; "
    foot += f"average strategy: {universe:.4g}"
    for line in (ensemble_line(metrics), combination_line(metrics)):
        if line:
            foot += "\n" + line
    return table(headers, rows) + "\n" + foot


def ensemble_line(metrics: Mapping[str, Any]) -> str | None:
    """What the model is when the run trained an ensemble: the mean of its members, each scored alone below it.

    None for one model.
    """
    members: Sequence[Mapping[str, Any]] = (metrics.get("ensemble") or {}).get("members") or []
    if not members:
        return None
    each = ", ".join(f"{m['label']} (seed {m['seed']}, {m['steps']} steps)" for m in members)
    return f"ensemble: model, raw = the mean of {len(members)} members: {each}; member rows: each alone"


def combination_line(metrics: Mapping[str, Any]) -> str | None:
    """The weights of the model's combination with the baselines, when the run fitted one (None otherwise).

    ``model`` is then the combined forecast and ``model, raw`` the model alone.
    """
    combo = metrics.get("combination") or {}
    if not combo.get("fitted"):
        return None
    w, per_step = combo["mean"], combo["weights"]

    def step(i: int) -> str:
        return "/".join(f"{per_step[k][i]:.2f}" for k in ("model", "trailing_mean", "zero"))

    line = (
        f"model = combination fitted on validation, weights model/trailing mean/zero: mean "
        f"{w['model']:.2f}/{w['trailing_mean']:.2f}/{w['zero']:.2f}, step 1 {step(0)}, "
        f"step {len(per_step['model'])} {step(-1)}; model, raw = the model alone"
    )
    return line + ("; no signal: the forecast is zero, ranked by the raw model" if combo.get("no_signal") else "")


def coverage_table(intervals: Mapping[str, Any]) -> str | None:
    """The intervals' coverage on the holdout per level: nominal, pooled, the worst step, MSIS (None: not scored).

    ``intervals`` is ``metrics.json["intervals"]``; a line under the table names the calibration's source.
    """
    levels: Mapping[str, Mapping[str, Any]] = intervals.get("levels") or {}
    if not levels:
        return None
    rows = []
    for level, got in levels.items():
        worst = got.get("worst_step") or {}
        step = f"{_percent(worst.get('coverage'))} (step {worst.get('step', '?')})"
        rows.append([f"{level}%", _percent(got.get("nominal")), _percent(got.get("coverage")), step, got.get("msis")])
    source = next(iter(levels.values())).get("source", "")
    foot = f"calibrated on the {source}" if source else ""
    return table(["level", "nominal", "covered", "worst step", "MSIS"], rows) + (f"\n{foot}" if foot else "")


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if _is_number(value) else MISSING


def intervals_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The coverage block of :func:`results_text`: a heading and :func:`coverage_table`, or why there is none."""
    intervals: Mapping[str, Any] = metrics.get("intervals") or {}
    if not intervals:
        return []
    if not intervals.get("calibrated", True):
        return ["", *(f"- {note}" for note in intervals.get("notes", []))]
    notes = [f"- {note}" for note in (intervals.get("calibration") or {}).get("notes", [])]
    if (coverage := coverage_table(intervals)) is None:
        return notes
    future = (intervals.get("future_calibration") or {}).get("source")
    return [
        "",
        "Prediction intervals on the holdout (coverage next to nominal; MSIS: mean scaled interval score):",
        coverage,
        *([f"the forecast's bands calibrated on the {future}"] if future else []),
        *notes,
    ]


def quantiles_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The model's quantiles on the holdout: per column its level, share at or below it and pinball loss.

    A line under the table gives the band's coverage (lowest to highest quantile). Empty for a run without
    quantiles (``metrics.json["quantiles"]``) or without a holdout.
    """
    quantiles: Mapping[str, Any] = metrics.get("quantiles") or {}
    holdout: Mapping[str, Any] = quantiles.get("holdout") or {}
    if not holdout:
        return []
    below: Mapping[str, Any] = holdout.get("below") or {}
    pinball: Mapping[str, Any] = holdout.get("pinball_by_column") or {}
    levels = dict(zip(quantiles.get("columns") or [], quantiles.get("levels") or [], strict=False))
    rows = [[name, _percent(levels.get(name)), _percent(share), pinball.get(name)] for name, share in below.items()]
    lines = [
        "",
        "The model's quantiles on the holdout (share of outcomes at or below each, next to its level):",
        table(["quantile", "level", "below", "pinball"], rows),
    ]
    if band := holdout.get("band"):
        lines.append(
            f"{band[0]}-{band[1]} band: {_percent(holdout.get('coverage'))} covered "
            f"(nominal {_percent(holdout.get('nominal'))}); mean pinball loss {holdout.get('pinball', 0.0):.4g}"
        )
    return lines


def top_table(rows: Sequence[Mapping[str, Any]], limit: int = 10, *, window: int | None = None) -> str:
    """The best strategies by forecast: rank, id, forecast mean ("Avg Profit") and sum, trailing mean.

    A strategy that stopped before the panel's end (``ended_early``) is marked ``*`` with a footnote: its forecast
    follows its own last period. A line under the table says when most of them lost money over their trailing
    ``window`` (see :func:`bet_line`).
    """
    shown = rows[:limit]
    body = [[r["rank"], _flagged(r), r["forecast_mean"], r["forecast_sum"], r["trailing_mean"]] for r in shown]
    lines = [table(["rank", "strategy", "avg profit", "horizon total", "trailing mean"], body)]
    if any(r.get("ended_early") for r in shown):
        lines.append(STOPPED_NOTE)
    if line := bet_line(shown, window):
        lines.append(line)
    return "\n".join(lines)


STOPPED_NOTE = "* stopped before the panel's end: its forecast follows its own last period (last_period)"
"""The footnote of the strategies :func:`top_table` marks ``*``."""


def _flagged(row: Mapping[str, Any]) -> Any:
    return f"{row['strategy']} *" if row.get("ended_early") else row["strategy"]


def bet_line(rows: Sequence[Mapping[str, Any]], window: int | None = None) -> str | None:
    """The bet the ranking makes when most of ``rows`` have a negative trailing mean (None otherwise).

    A model that ranks last year's losers first bets on a turnaround; the user should see that bet.
    """
    losers = sum(1 for r in rows if _is_number(r.get("trailing_mean")) and r["trailing_mean"] < 0)
    if 2 * losers <= len(rows):
        return None
    over = "their trailing window" if window is None else f"their last {window} periods"
    return f"{losers} of the top {len(rows)} lost money over {over} (trailing mean < 0): the model bets on a turnaround"


def trailing_window(metrics: Mapping[str, Any]) -> int | None:
    """The periods of a run's trailing mean, from its ``metrics.json`` spec (None when it does not say)."""
    window = metrics.get("spec", {}).get("train", {}).get("trailing_window")
    return window if isinstance(window, int) else None


def results_text(metrics: Mapping[str, Any], top: Sequence[Mapping[str, Any]], limit: int = 10, where: str = "") -> str:
    """A finished run as every printer shows it: the top strategies, the best one, the skill table and verdict.

    ``top`` holds ``summary.parquet`` rows by rank; ``where`` names the run's outputs in the heading. Without a
    holdout there is no verdict, so the run's warnings (which the verdict repeats) are listed instead.
    """
    outputs = f" (outputs in {where})" if where else ""
    lines = [f"Top strategies by forecast mean profit per period{outputs}:"]
    lines.append(top_table(top, limit, window=trailing_window(metrics)))
    if best := metrics.get("best_strategy"):
        lines.append(f"Best strategy: {best['strategy']} (forecast {best['forecast_mean']:.4g} per period)")
    if "errors" in metrics:
        h = metrics["holdout"]
        lines += ["", f"Skill on the holdout ({h['periods']} periods, {h['strategies']} strategies):"]
        lines += [skill_table(metrics), *(f"- {line}" for line in metrics.get("verdict", []))]
    else:
        lines += [f"- warning: {w['message']}" for w in metrics.get("warnings", [])]
    lines += scored_lines(metrics.get("scored"))
    lines += intervals_lines(metrics)
    lines += quantiles_lines(metrics)
    return "\n".join(lines)


def scored_lines(scored: Mapping[str, Any] | None) -> list[str]:
    """What a scoring job's ``metrics.json["scored"]`` says: the saved model, new and skipped strategies."""
    if not scored:
        return []
    lines = [f"- scored with saved model {scored['saved_model']} (trained by {scored['source_run']}), no retraining"]
    if new := scored.get("new"):
        lines.append(f"- {len(new)} strategies the model never saw were forecast: {', '.join(map(str, new[:10]))}"
                     + (", ..." if len(new) > 10 else ""))  # fmt: skip
    lines += [f"- {s['strategy']}: skipped, {s['reason']}" for s in scored.get("skipped", [])[:10]]
    return lines


def models_text(result: Mapping[str, Any]) -> str:
    """``stratcast models`` and ``stratcastd models``: each model's parameters, then the training options.

    A model's heading names the training options it trains with in place of their defaults (its ``train_defaults``)
    and those the panel chooses for it (``from_panel``).
    """
    blocks = []
    for m in result["models"]:
        own = ", ".join(f"{k}={_default(v)}" for k, v in (m.get("train_defaults") or {}).items())
        panel = ", ".join(m.get("from_panel") or ())
        said = "; ".join(
            ([f"training defaults: {own}"] if own else []) + ([f"from the panel: {panel}"] if panel else [])
        )
        head = f"{m['name']}: {m['summary']} ({m['paper']}){f' ({said})' if said else ''}"
        head += "" if m["stackable"] else " [batch mode only]"
        rows = [[p["name"], _default(p["default"]), _range(p), p["help"]] for p in m["params"]]
        blocks.append(head + "\n  " + table(["parameter", "default", "range", "help"], rows).replace("\n", "\n  "))
    options = [[p["name"], _default(p["default"]), _range(p), p["help"]] for p in result.get("train_options", [])]
    if options:
        body = table(["option", "default", "range", "help"], options).replace("\n", "\n  ")
        blocks.append("training options (--set KEY=VALUE, as model parameters):\n  " + body)
    return "\n\n".join(blocks)


def _default(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"  # as --set takes it
    return "-" if value is None else str(value)


def _range(p: Mapping[str, Any]) -> str:
    if p.get("choices"):
        return "|".join(map(str, p["choices"]))
    if p.get("lo") is None and p.get("hi") is None:
        return "-"
    return f"{'' if p.get('lo') is None else p['lo']}..{'' if p.get('hi') is None else p['hi']}"


def metrics_text(metrics: Mapping[str, Any]) -> str:
    """``1.31 vs 1.41 trailing_mean (-7.1%) beats``: holdout RMSE against the better naive baseline's, and verdict.

    A tie loses: the baseline is the simpler forecast.
    """
    errors: Mapping[str, Mapping[str, float]] = metrics.get("errors") or {}
    model = errors.get("model", {}).get("rmse")
    baselines = {k: e["rmse"] for k, e in errors.items() if k not in ("model", "oracle") and "rmse" in e}
    if model is None:
        return "no holdout"
    if not baselines:
        return f"{model:.4g}"
    name, base = min(baselines.items(), key=lambda kv: kv[1])
    change = f" ({(model - base) / base:+.1%})" if base else ""
    return f"{model:.4g} vs {base:.4g} {name}{change} {'beats' if model < base else 'loses'}"


def saved_evidence(manifest: Mapping[str, Any]) -> str:
    """The version's own holdout skill, else (a study's best kept on all the data) its trial's values."""
    text = metrics_text(manifest.get("metrics") or {})
    study = manifest.get("study")
    if text != "no holdout" or not study:
        return text
    values = values_text(study["objectives"][:1], study["values"][:1], digits=4)
    return f"trial {study['trial']}: {study['objectives'][0]} {values}"


def data_text(sig: Mapping[str, Any]) -> str:
    """``300 × 7 days · 104→52 · 3f2a9c1e``: strategies, period, input and horizon, the strategies' fingerprint."""
    every = str(sig["frequency"]).removesuffix(" 00:00:00")
    return f"{sig['strategies']:,} × {every} · {sig['input_size']}→{sig['horizon']} · {str(sig['fingerprint'])[:8]}"


def saved_table(result: Sequence[Mapping[str, Any]]) -> str:
    """``saved ls``: name, versions, aliases, and the latest version's model, save time and evidence."""
    rows = []
    for m in result:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(m["aliases"].items())) or "-"
        latest = m.get("summary")
        model = f"{latest['model']} ({latest['mode']})" if latest else "?"
        saved = str(latest["created"])[:16].replace("T", " ") if latest else "?"
        proof = saved_evidence(latest) if latest else "manifest unreadable: `saved show` says why"
        rows.append([m["name"], ",".join(map(str, m["versions"])), aliases, model, saved, proof])
    headers = ["name", "versions", "aliases", "latest model", "saved", "evidence (holdout RMSE vs baseline)"]
    return table(headers, rows) if rows else "no saved models"


def saved_text(result: Mapping[str, Any]) -> str:
    """``saved show``: a version's model, training, data signature and trained metrics' verdict."""
    m = result["manifest"]
    sig, training = m["data"], m["training"]
    intervals = m.get("intervals")
    levels = ", ".join(f"{v:g}%" for v in intervals["levels"]) if intervals else "none"
    lines = [
        f"{result['ref']}: {m['model']} ({m['mode']}), members {', '.join(m['members'])}",
        f"trained     by {m['source_run']}, saved {m['created']}: {training['steps']} steps, "
        f"{training['train_seconds']:.1f} s",
        f"data        {sig['strategies']:,} strategies, columns {sig['id_col']}, {sig['time_col']}, "
        f"{sig['target_col']}, every {sig['frequency']}",
        f"windows     input {sig['input_size']}, horizon {sig['horizon']}",
        f"intervals   {levels}",
        f"folder      {result['path']}",
    ]
    if m.get("study"):
        lines.insert(2, f"kept best   {evidence_text(m['study'])}")
    return "\n".join(lines + [f"- {v}" for v in m.get("metrics", {}).get("verdict", [])])


def saved_alias_text(r: Mapping[str, Any]) -> str:
    """``saved alias``: where the alias points now, or that it was removed."""
    if r.get("removed"):
        return f"removed alias {r['alias']} of {r['name']}"
    return f"{r['name']}@{r['alias']} -> {r['ref']}"


SAVED_TEXT: dict[str, Callable[[Any], str]] = {
    "save": lambda r: f"saved {r['ref']} ({r['path']})",
    "ls": saved_table,
    "show": saved_text,
    "alias": saved_alias_text,
    "rm": lambda r: f"removed {r['ref']}",
    "export": lambda r: f"exported {r['ref']} to {r['exported_to']} ({r['bytes']:,} bytes)",
    "import": lambda r: f"imported as {r['ref']} ({r['path']})",
}
"""Lines for people for each ``saved`` subcommand's reply (the client's and the daemon's foreground commands)."""
