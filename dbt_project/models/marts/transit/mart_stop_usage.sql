-- Average daily use of each stop over the dates built, with the rarely used ones flagged
-- (fewer than var rarely_used_boardings_per_day estimated boardings a day). One row per stop_id.
with daily as (
    select
        service_date,
        stop_id,
        any_value(stop_name) as stop_name,
        sum(boardings_estimated) as boardings
    from {{ ref('fct_stop_visit_loads') }}
    group by all
),

usage as (
    select
        stop_id,
        any_value(stop_name) as stop_name,
        count(*) as service_dates,
        avg(boardings) as mean_daily_boardings,
        avg(boardings) < {{ var('rarely_used_boardings_per_day') }} as is_rarely_used
    from daily
    group by all
)

select * from usage
