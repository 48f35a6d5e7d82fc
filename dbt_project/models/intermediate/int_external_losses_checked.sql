{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Each trip lost that the operator classed external (aléa externe), checked against the city's
-- own data: corroborated when the line's other trips that ran within corroboration_window_s
-- before its scheduled start, or within it after (either direction), were late: their median
-- departure delay at least corroboration_min_extra_delay_s above the line's median of the day
-- -- a disruption shows in the trips around it. Uncorroborated otherwise, including when no other trip of the line ran
-- in the window (nothing to corroborate with). Measured on the simulator's truth (issue #33).
-- One row per (service_date, trip_id).
with trips as (
    select * from {{ ref('int_trips_delivered') }}
    where {{ service_date_filter() }}
),

line_day as (
    select
        service_date,
        route_short_name,
        median(delay_s) as line_delay_s
    from trips
    where is_run and delay_s is not null
    group by all
),

lost_external as (
    select * from trips
    where not is_run and cancel_cause_class = 'externe'
),

around as (
    -- the trips before it and those after it apart: a disruption begins at some moment, and the
    -- trips on its far side ran as usual
    select
        lost.service_date,
        lost.trip_id,
        count(other.trip_id) as window_trips_run,
        greatest(
            median(other.delay_s) filter (where other.scheduled_start_s < lost.scheduled_start_s),
            median(other.delay_s) filter (where other.scheduled_start_s >= lost.scheduled_start_s)
        ) as window_delay_s
    from lost_external as lost
    left join trips as other
        on lost.service_date = other.service_date
            and lost.route_short_name = other.route_short_name
            and lost.trip_id != other.trip_id
            and other.is_run
            and other.delay_s is not null
            and abs(other.scheduled_start_s - lost.scheduled_start_s) <= {{ var('corroboration_window_s') }}
    group by all
)

select
    lost.service_date,
    lost.trip_id,
    lost.route_short_name,
    lost.direction_id,
    lost.scheduled_start_s,
    lost.scheduled_km,
    lost.reported_sha256,
    lost.reported_row,
    around.window_trips_run,
    around.window_delay_s,
    line_day.line_delay_s,
    coalesce(
        around.window_delay_s - line_day.line_delay_s >= {{ var('corroboration_min_extra_delay_s') }}, false
    ) as is_corroborated
from lost_external as lost
inner join around using (service_date, trip_id)
left join line_day using (service_date, route_short_name)
{{ in_period_order('service_date') }}
