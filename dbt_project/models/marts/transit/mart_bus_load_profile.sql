{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

-- The "serpent de charge": on-board load stop by stop along a line, per direction, day type and
-- time band, per month and network version in force: a profile never mixes seasons, nor two
-- networks' stop sequences. One row per (route_short_name, direction_id, month, feed_version,
-- stop_sequence, stop_id, day_type, time_band).
with loads as (
    select * from {{ ref('fct_stop_visit_loads') }}
    where {{ month_filter() }}
),

calendar as (
    select
        service_date,
        day_type
    from {{ ref('dim_calendar') }}
),

profile as (
    select
        loads.route_short_name,
        loads.direction_id,
        date_trunc('month', loads.service_date)::date as month,
        loads.feed_version,
        loads.stop_sequence,
        loads.stop_id,
        any_value(loads.stop_name) as stop_name,
        calendar.day_type,
        loads.time_band,
        count(*) as trips_observed,
        count(distinct loads.service_date) as service_dates,
        avg(loads.boardings_estimated) as mean_boardings,
        avg(loads.alightings_estimated) as mean_alightings,
        avg(loads.load_estimated) as mean_load,
        max(loads.load_estimated) as max_load,
        quantile_cont(loads.load_estimated, 0.9) as p90_load,
        avg(loads.vehicle_capacity) as mean_capacity,
        avg(loads.load_estimated) / nullif(avg(loads.vehicle_capacity), 0) as load_factor,
        quantile_cont(loads.load_factor, 0.9) as p90_load_factor,
        avg(loads.validations) as mean_validations,
        sum(loads.apc_boardings) filter (where loads.has_apc) / nullif(count(*) filter (where loads.has_apc), 0)
            as mean_apc_boardings,
        count(*) filter (where loads.has_apc) as trips_with_apc,
        sum(loads.alightings_from_trip_chaining) filter (where loads.alightings_method != 'apc')
        / nullif(sum(loads.alightings_estimated), 0)
            as alightings_inferred_share,
        count(*) filter (where loads.is_over_capacity) as visits_over_capacity
    from loads
    inner join calendar using (service_date)
    group by all
)

select * from profile
{{ in_period_order('month') }}
