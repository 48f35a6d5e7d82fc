{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

-- Average daily use of each stop per month, with the rarely used ones flagged
-- (fewer than var rarely_used_boardings_per_day estimated boardings a day). One row per (month, stop_id).
with daily as (
    select
        service_date,
        stop_id,
        any_value(stop_name) as stop_name,
        sum(boardings_estimated) as boardings
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
        avg(boardings) < {{ var('rarely_used_boardings_per_day') }} as is_rarely_used
    from daily
    group by all
)

select * from usage
{{ in_period_order('month') }}
