"""``python -m devtools evaluate --truth DIR``: accuracy of the transit marts against a simulator's truth.

Figures (each printed as ``name: value``):

* ``inferred_share`` — share of located, deduplicated validations with an inferred alighting;
* ``load_profile_wape`` — weighted absolute percentage error of the mean load per (line,
  direction, stop, day type, time band) of ``mart_bus_load_profile`` against the same cells
  computed from the true loads: sum |estimate - truth| / sum truth;
* ``line_boardings_wape`` and ``line_boardings_max_abs_error`` — daily boardings per line
  (``fct_stop_visit_loads``) against true boardings, and ``network_boardings_error`` the signed
  error of the total;
* ``load_wape_per_stop_visit`` and ``boardings_wape_per_stop_visit`` — the same at the level a
  planner reads a trip: each trip at each stop (``fct_stop_visit_loads`` against the true load
  and boardings of the stop visit), and ``peak_load_per_trip_wape`` — each trip's highest load;
* ``alighting_stop_accuracy`` and ``alighting_within_one_stop`` — share of inferred alightings
  at the true alighting stop, or at most one stop away along the trip (needs the
  pseudonymisation key, to link cards to the truth's journeys);
* the floors (:func:`floors`): ``<loads>_load_profile_wape``, ``<loads>_load_wape_per_stop_visit``
  and ``<loads>_peak_load_per_trip_wape`` for the loads ``estimated`` (the method as is),
  ``true_boardings`` and ``true_alightings`` (one input of the method swapped for the truth).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl

from citylake.core.calendar_fr import day_info
from citylake.core.settings import Settings
from ingestion.pseudonym import Pseudonymiser


def _truth(truth: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(truth / table / "**" / "*.parquet", hive_partitioning=False)


def _time_band(hour: pl.Expr) -> pl.Expr:
    bands = [
        (5, "00-05 nuit"),
        (7, "05-07 début de service"),
        (9, "07-09 pointe du matin"),
        (12, "09-12 matinée"),
        (14, "12-14 midi"),
        (16, "14-16 après-midi"),
        (19, "16-19 pointe du soir"),
        (21, "19-21 soirée"),
    ]
    expr = pl.when(hour < bands[0][0]).then(pl.lit(bands[0][1]))
    for limit, name in bands[1:]:
        expr = expr.when(hour < limit).then(pl.lit(name))
    return expr.otherwise(pl.lit("21-24 nuit"))


def _wape(estimate: pl.Series, truth: pl.Series) -> float:
    """Weighted absolute percentage error: sum |estimate - truth| / sum truth."""
    total = float(truth.sum())
    return float((estimate - truth).abs().sum() / total) if total else 0.0


#: the method's loads with one input swapped for the simulator's truth (:func:`floors`)
FLOOR_LOADS = {
    # the true boardings of each visit, sent downstream as the method sends its own: the flows'
    # shares (int_od_flows), even over the stops downstream where it had none; on a trip that
    # uses its counter's alightings, those, scaled to the true boardings
    "true_boardings": """
        with shares as (
            select
                service_date, trip_id, board_position, alight_position,
                passengers / sum(passengers) over (partition by service_date, trip_id, board_position) as share
            from int_od_flows
        ),
        downstream as (
            select b.service_date, b.trip_id, b.stop_position as board_position, a.stop_position as alight_position,
                b.b_true * coalesce(s.share, case when max(s.share) over board is null
                    then 1.0 / count(*) over board end) as passengers
            from v as b
            inner join v as a
                on a.service_date = b.service_date and a.trip_id = b.trip_id and a.stop_position > b.stop_position
            left join shares as s
                on s.service_date = b.service_date and s.trip_id = b.trip_id
                    and s.board_position = b.stop_position and s.alight_position = a.stop_position
            window board as (partition by b.service_date, b.trip_id, b.stop_position)
        ),
        offs as (
            select service_date, trip_id, alight_position as stop_position, sum(passengers) as a_flow
            from downstream group by all
        ),
        chosen as (
            select v.*,
                case when v.alightings_method = 'apc'
                    then v.a_est * sum(v.b_true) over trip / nullif(sum(v.b_est) over trip, 0)
                    else coalesce(offs.a_flow, 0) end as a_variant,
                v.b_true as b_variant
            from v left join offs using (service_date, trip_id, stop_position)
            window trip as (partition by v.service_date, v.trip_id)
        )
        select *, sum(b_variant - coalesce(a_variant, 0)) over (
            partition by service_date, trip_id order by stop_position) as load_variant
        from chosen
    """,
    # the method's boardings, and the true alightings scaled to them on each trip (ons = offs)
    "true_alightings": """
        select *, sum(b_variant - a_variant) over (
            partition by service_date, trip_id order by stop_position) as load_variant
        from (
            select v.*, v.b_est as b_variant,
                coalesce(v.a_true * sum(v.b_est) over trip / nullif(sum(v.a_true) over trip, 0), 0) as a_variant
            from v
            window trip as (partition by v.service_date, v.trip_id)
        )
    """,
}


def floors(con: duckdb.DuckDBPyConnection, truth_visits: pl.DataFrame, keys: list[str]) -> dict[str, float]:
    """How far each part of the load method is from what the data allows (issue #31): the cell,
    per-visit and trip-peak errors of the loads the method gives with *perfect boardings* (the
    truth's, sent downstream by the method's shares) and with *perfect alightings* (the truth's,
    scaled to the method's boardings on each trip), on the visits the marts saw. ``estimated`` is
    the method as is, on the same footing (cells keyed by the truth's day type and time band, so
    that only the loads differ). A figure far below the method's says that input is where its
    error comes from; close to it, that the error is elsewhere."""
    con.register("truth_visits", truth_visits.to_arrow())
    con.sql(
        """
        create or replace temp table v as
        select f.service_date, f.trip_id, f.stop_sequence, f.stop_position, f.alightings_method,
            f.boardings_estimated as b_est, f.alightings_estimated as a_est, f.load_estimated,
            coalesce(t.boardings, 0)::double as b_true, coalesce(t.alightings, 0)::double as a_true
        from fct_stop_visit_loads as f
        left join truth_visits as t
            on t.service_date = f.service_date and t.trip_id = f.trip_id
                and t.stop_sequence::bigint = f.stop_sequence::bigint
        """
    )
    variants = {"estimated": "select *, load_estimated as load_variant from v"} | FLOOR_LOADS
    out: dict[str, float] = {}
    for name, sql in variants.items():
        est = con.sql(f"select service_date, trip_id, stop_sequence, load_variant from ({sql})").pl()
        visits = truth_visits.join(
            est.with_columns(pl.col("stop_sequence").cast(truth_visits["stop_sequence"].dtype)),
            on=["service_date", "trip_id", "stop_sequence"],
            how="left",
        ).with_columns(pl.col("load_variant").fill_null(0.0))
        cells = visits.group_by(keys).agg(pl.col("load_variant").mean(), pl.col("load").mean())
        peaks = visits.group_by("service_date", "trip_id").agg(pl.col("load_variant").max(), pl.col("load").max())
        out[f"{name}_load_profile_wape"] = _wape(cells["load_variant"], cells["load"])
        out[f"{name}_load_wape_per_stop_visit"] = _wape(visits["load_variant"], visits["load"])
        out[f"{name}_peak_load_per_trip_wape"] = _wape(peaks["load_variant"], peaks["load"])
    con.unregister("truth_visits")
    return out


def evaluate(
    truth_dir: Path,
    warehouse: Path,
    tz: str | None = None,
    school_zone: str | None = None,
    holidays: str | None = None,
) -> dict[str, float]:
    """Return the accuracy figures of the warehouse's marts against the truth in ``truth_dir``.

    The city's clock and calendar are the simulated city's (its ``simulation.json``) unless given."""
    summary = Path(truth_dir) / "simulation.json"
    simulated = json.loads(summary.read_text()) if summary.is_file() else {}
    tz = tz or simulated.get("timezone", "Europe/Paris")
    school_zone = school_zone or simulated.get("school_zone", "C")
    holidays = holidays or simulated.get("holidays", "metropole")
    truth_dir = Path(truth_dir) / "truth" if (Path(truth_dir) / "truth").is_dir() else Path(truth_dir)
    con = duckdb.connect(str(warehouse), read_only=True)
    est_profile = con.sql("select * from mart_bus_load_profile").pl()
    est_loads = con.sql(
        "select service_date, route_short_name, sum(boardings_estimated) as boardings from fct_stop_visit_loads "
        "group by all"
    ).pl()
    chained = con.sql(
        "select service_date, fare_media_id, trip_id, board_stop_id, alight_stop_id, alight_stop_sequence, "
        "is_inferred from int_journey_stages_chained"
    ).pl()
    dates = sorted(set(est_loads["service_date"].to_list()))
    figures: dict[str, float] = {}
    figures["inferred_share"] = float(chained["is_inferred"].mean()) if chained.height else 0.0

    sv = _truth(truth_dir, "stop_visits").filter(pl.col("service_date").is_in(dates))
    served = sv.filter(pl.col("is_served"))
    # only the trips the marts saw (AVL delivered and valid); day type and time band as the marts
    seen = con.sql("select distinct service_date, trip_id from fct_stop_visit_loads").pl()
    served = served.join(seen, on=["service_date", "trip_id"], how="semi")
    day_types = pl.DataFrame(
        {"service_date": dates, "day_type": [day_info(d, school_zone, holidays).label for d in dates]},
        schema={"service_date": pl.Date, "day_type": pl.Utf8},
    )
    trip_start = served.group_by("service_date", "trip_id").agg(pl.col("scheduled_departure_at").min().alias("start"))
    truth_cells = (
        served.join(trip_start, on=["service_date", "trip_id"])
        .join(day_types, on="service_date")
        .with_columns(_time_band(pl.col("start").dt.convert_time_zone(tz).dt.hour()).alias("time_band"))
        .with_columns(pl.col("service_date").dt.truncate("1mo").alias("month"))
        .group_by("route_short_name", "direction_id", "month", "stop_sequence", "stop_id", "day_type", "time_band")
        .agg(pl.col("load").mean().alias("true_mean_load"))
    )
    keys = ["route_short_name", "direction_id", "month", "stop_sequence", "stop_id", "day_type", "time_band"]
    # the marts' cells are per network version too: the truth knows no version, so weigh them together
    est_cells = est_profile.group_by(keys).agg(
        ((pl.col("mean_load") * pl.col("trips_observed")).sum() / pl.col("trips_observed").sum()).alias("mean_load")
    )
    cells = truth_cells.join(
        est_cells.select(*keys, pl.col("mean_load").alias("est_mean_load")).with_columns(
            pl.col("direction_id").cast(truth_cells["direction_id"].dtype),
            pl.col("stop_sequence").cast(truth_cells["stop_sequence"].dtype),
        ),
        on=keys,
        how="full",
        coalesce=True,
    ).fill_null(0.0)
    figures["load_profile_wape"] = float(
        (cells["est_mean_load"] - cells["true_mean_load"]).abs().sum() / cells["true_mean_load"].sum()
    )
    figures["load_profile_cells"] = float(cells.height)

    true_lines = served.group_by("service_date", "route_short_name").agg(pl.col("boardings").sum().alias("truth"))
    lines = true_lines.join(est_loads, on=["service_date", "route_short_name"], how="full", coalesce=True).fill_null(
        0.0
    )
    err = lines["boardings"] - lines["truth"]
    figures["line_boardings_wape"] = float(err.abs().sum() / lines["truth"].sum())
    figures["line_boardings_max_abs_error"] = float((err.abs() / lines["truth"].clip(lower_bound=1)).max())
    figures["network_boardings_error"] = float(err.sum() / lines["truth"].sum())

    # each trip at each stop, and each trip's peak, on the visits the marts saw
    est_visits = con.sql(
        "select service_date, trip_id, stop_sequence, boardings_estimated, load_estimated from fct_stop_visit_loads"
    ).pl()
    visits = served.select("service_date", "trip_id", "stop_sequence", "boardings", "load").join(
        est_visits.with_columns(pl.col("stop_sequence").cast(served["stop_sequence"].dtype)),
        on=["service_date", "trip_id", "stop_sequence"],
        how="full",
        coalesce=True,
    )
    visits = visits.fill_null(0.0)
    figures["load_wape_per_stop_visit"] = _wape(visits["load_estimated"], visits["load"])
    figures["boardings_wape_per_stop_visit"] = _wape(visits["boardings_estimated"], visits["boardings"])
    peaks = visits.group_by("service_date", "trip_id").agg(pl.col("load_estimated").max(), pl.col("load").max())
    figures["peak_load_per_trip_wape"] = _wape(peaks["load_estimated"], peaks["load"])
    truth_visits = (
        served.join(trip_start, on=["service_date", "trip_id"])
        .join(day_types, on="service_date")
        .with_columns(
            _time_band(pl.col("start").dt.convert_time_zone(tz).dt.hour()).alias("time_band"),
            pl.col("service_date").dt.truncate("1mo").alias("month"),
        )
        .select(*keys, "service_date", "trip_id", "boardings", "alightings", "load")
    )
    figures.update(floors(con, truth_visits, keys))

    settings = Settings()
    key = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else None
    if key and chained.height:
        stages = _truth(truth_dir, "stages").filter(
            pl.col("service_date").is_in(dates) & pl.col("card_serial").is_not_null()
        )
        pseudo = Pseudonymiser(key, settings.pseudonym_rotation)
        stages = pl.concat(
            [
                part.with_columns(pseudo.series(part["card_serial"], d).alias("fare_media_id"))
                for d in dates
                if (part := stages.filter(pl.col("service_date") == d)).height
            ]
        )
        inferred = chained.filter(pl.col("is_inferred"))
        joined = inferred.join(
            stages.select(
                "service_date",
                "fare_media_id",
                "trip_id",
                pl.col("board_stop_id"),
                pl.col("alight_stop_id").alias("true_alight"),
                pl.col("alight_stop_sequence").alias("true_alight_sequence"),
            ),
            on=["service_date", "fare_media_id", "trip_id", "board_stop_id"],
            how="inner",
        ).unique(["service_date", "fare_media_id", "trip_id", "board_stop_id"], keep="first", maintain_order=True)
        if joined.height:
            figures["alighting_stop_accuracy"] = float((joined["alight_stop_id"] == joined["true_alight"]).mean())
            # "one stop away" counted along the trip's stops, whatever its stop_sequence numbering
            order = sv.select(
                "service_date",
                "trip_id",
                "stop_sequence",
                pl.col("stop_sequence").rank("dense").over("service_date", "trip_id").alias("rank"),
            )
            ranked = (
                joined.with_columns(
                    pl.col("alight_stop_sequence").cast(order["stop_sequence"].dtype),
                    pl.col("true_alight_sequence").cast(order["stop_sequence"].dtype),
                )
                .join(
                    order.rename({"stop_sequence": "alight_stop_sequence", "rank": "est_rank"}),
                    on=["service_date", "trip_id", "alight_stop_sequence"],
                    how="left",
                )
                .join(
                    order.rename({"stop_sequence": "true_alight_sequence", "rank": "true_rank"}),
                    on=["service_date", "trip_id", "true_alight_sequence"],
                    how="left",
                )
            )
            figures["alighting_within_one_stop"] = float(
                ((ranked["est_rank"] - ranked["true_rank"]).abs() <= 1).fill_null(False).mean()
            )
            figures["alighting_stop_linked"] = float(joined.height / inferred.height)
    return figures
