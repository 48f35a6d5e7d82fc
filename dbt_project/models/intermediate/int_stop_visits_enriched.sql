{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Valid stop visits with their position along the trip, the stop's coordinates in the network
-- version in force, its place along the trip's GTFS shape (shape_along_m, metres; null without a
-- usable shape) and pattern, and the trip's time band. One row per (service_date, trip_id, stop_sequence).
with visits as (
    select * from {{ ref('stg_avl__stop_visits') }}
    where is_valid and {{ service_date_filter() }}
    qualify row_number() over (partition by service_date, trip_id, stop_sequence order by source_sha256, source_row) = 1
),

version as (
    select * from {{ ref('int_gtfs_version_by_date') }}
),

stops as (
    select * from {{ ref('stg_gtfs__stops') }}
),

distances as (
    select * from {{ ref('stg_gtfs__stop_distances') }}
),

located as (
    select
        visits.*,
        version.feed_version,
        stops.stop_name,
        stops.stop_lat,
        stops.stop_lon,
        distances.pattern_id,
        distances.along_m as shape_along_m
    from visits
    left join version using (service_date)
    left join stops
        on version.feed_version = stops.feed_version
            and visits.stop_id = stops.stop_id
    left join distances
        on version.feed_version = distances.feed_version
            and visits.trip_id = distances.trip_id
            and visits.stop_sequence = distances.stop_sequence
),

positioned as (
    select
        *,
        row_number() over trip_order as stop_position,
        count(*) over trip_all as stops_served,
        first_value(scheduled_departure_at) over trip_order as trip_scheduled_start_at
    from located
    window
        trip_order as (partition by service_date, trip_id order by stop_sequence),
        trip_all as (partition by service_date, trip_id)
),

final as (
    select
        *,
        stop_position = stops_served as is_last_stop,
        {{ time_band('trip_scheduled_start_at') }} as time_band
    from positioned
)

select * from final
{{ in_period_order('service_date') }}
