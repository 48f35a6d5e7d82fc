{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Punctuality: share of departures within [-punctuality_early_s, +punctuality_late_s] of the
-- timetable (methods_and_kpis.md §2.2: the window is a contract parameter), at every served
-- stop and at the first stop; regularity for frequent lines: coefficient of variation of actual
-- headways vs scheduled ones at each stop. One row per (service_date, route_short_name,
-- direction_id, time_band).
with visits as (
    select
        *,
        epoch(actual_departure_at) - epoch(scheduled_departure_at) as departure_delay_s
    from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
),

headways as (
    select
        *,
        epoch(actual_departure_at) - epoch(lag(actual_departure_at) over stop_order) as actual_headway_s,
        epoch(scheduled_departure_at) - epoch(lag(scheduled_departure_at) over stop_order) as scheduled_headway_s
    from visits
    window stop_order as (
        partition by service_date, route_short_name, direction_id, stop_id order by scheduled_departure_at, trip_id
    )
),

final as (
    select
        service_date,
        route_short_name,
        direction_id,
        time_band,
        count(*) as departures_observed,
        avg(case when departure_delay_s between -{{ var('punctuality_early_s') }} and {{ var('punctuality_late_s') }}
                then 1.0
            else 0.0
        end) as punctuality_all_stops,
        avg(case when departure_delay_s between -{{ var('punctuality_early_s') }} and {{ var('punctuality_late_s') }}
                then 1.0
            else 0.0
        end) filter (where stop_position = 1) as punctuality_first_stop,
        avg(departure_delay_s) as mean_delay_s,
        quantile_cont(departure_delay_s, 0.9) as p90_delay_s,
        avg(case when departure_delay_s < -{{ var('punctuality_early_s') }} then 1.0 else 0.0 end) as early_share,
        stddev_samp(actual_headway_s) filter (where scheduled_headway_s between 1 and 900)
        / nullif(avg(actual_headway_s) filter (where scheduled_headway_s between 1 and 900), 0)
            as headway_cv,
        -- excess wait: mean wait with actual headways minus mean wait with scheduled ones
        (
            sum(actual_headway_s * actual_headway_s) filter (where scheduled_headway_s between 1 and 900)
            / nullif(2 * sum(actual_headway_s) filter (where scheduled_headway_s between 1 and 900), 0)
        )
        - (
            sum(scheduled_headway_s * scheduled_headway_s) filter (where scheduled_headway_s between 1 and 900)
            / nullif(2 * sum(scheduled_headway_s) filter (where scheduled_headway_s between 1 and 900), 0))
            as excess_wait_s
    from headways
    group by all
)

select * from final
{{ in_period_order('service_date') }}
