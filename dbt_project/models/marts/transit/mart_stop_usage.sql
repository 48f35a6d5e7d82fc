{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

-- Average daily use of each stop per month, with the rarely used ones flagged
-- (fewer than var rarely_used_boardings_per_day estimated boardings a day), and the stop's place
-- (coordinates and point geometry of the network version last in force that month) so that a
-- map reads it directly. One row per (month, stop_id).
with daily as (
    select
        service_date,
        stop_id,
        any_value(stop_name) as stop_name,
        any_value(feed_version) as feed_version,
        sum(boardings_estimated) as boardings,
        sum(alightings_estimated) as alightings
    from {{ ref('fct_stop_visit_loads') }}
    where {{ month_filter() }}
    group by all
),

usage as (
    select
        date_trunc('month', service_date)::date as month,
        stop_id,
        any_value(stop_name) as stop_name,
        count(*) as service_dates,
        avg(boardings) as mean_daily_boardings,
        avg(boardings) < {{ var('rarely_used_boardings_per_day') }} as is_rarely_used,
        avg(alightings) as mean_daily_alightings,
        arg_max(feed_version, service_date) as feed_version
    from daily
    group by all
),

final as (
    select
        usage.* exclude (feed_version),
        stops.stop_lat,
        stops.stop_lon,
        stops.geometry
    from usage
    left join {{ ref('dim_stops') }} as stops using (feed_version, stop_id)
)

select * from final
{{ in_period_order('month') }}
