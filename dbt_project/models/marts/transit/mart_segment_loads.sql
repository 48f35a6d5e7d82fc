{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

-- The serpent de charge drawn along the route: the estimated load on board between each stop and
-- the next one served, per line, direction, month, day type and time band, with the segment's
-- path (dim_network_segments) so that a map reads it directly. The load on a segment is the load
-- leaving its first stop (fct_stop_visit_loads). Branches of a line are segments of their own.
-- One row per (month, feed_version, route_short_name, direction_id, day_type, time_band,
-- from_stop_id, to_stop_id).
with visits as (
    select
        service_date,
        feed_version,
        route_short_name,
        direction_id,
        time_band,
        stop_id as from_stop_id,
        lead(stop_id) over (partition by service_date, trip_id order by stop_position) as to_stop_id,
        load_estimated,
        load_factor,
        vehicle_capacity
    from {{ ref('fct_stop_visit_loads') }}
    where {{ month_filter() }}
),

calendar as (
    select
        service_date,
        day_type
    from {{ ref('dim_calendar') }}
),

loads as (
    select
        date_trunc('month', visits.service_date)::date as month,
        visits.feed_version,
        visits.route_short_name,
        visits.direction_id,
        calendar.day_type,
        visits.time_band,
        visits.from_stop_id,
        visits.to_stop_id,
        count(*) as trips_observed,
        count(distinct visits.service_date) as service_dates,
        avg(visits.load_estimated) as mean_load,
        quantile_cont(visits.load_estimated, 0.9) as p90_load,
        max(visits.load_estimated) as max_load,
        avg(visits.vehicle_capacity) as mean_capacity,
        avg(visits.load_estimated) / nullif(avg(visits.vehicle_capacity), 0) as load_factor,
        quantile_cont(visits.load_factor, 0.9) as p90_load_factor
    from visits
    inner join calendar using (service_date)
    where visits.to_stop_id is not null
    group by all
),

final as (
    select
        loads.*,
        segments.from_stop_name,
        segments.to_stop_name,
        segments.length_m,
        segments.length_source,
        segments.geometry
    from loads
    left join {{ ref('dim_network_segments') }} as segments
        using (feed_version, route_short_name, direction_id, from_stop_id, to_stop_id)
)

select * from final
{{ in_period_order('month') }}
