{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Commercial speed per trip (scheduled km / time from first departure to last arrival) and per
-- segment between consecutive served stops (distance along the GTFS shape, or straight line x
-- road_factor where no shape fits: segment_length_source; divided by the running time).
-- One row per (service_date, trip_id, from_stop_sequence); trip-level columns repeat.
with visits as (
    select * from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
),

trips as (
    select
        service_date,
        trip_id,
        scheduled_km
    from {{ ref('stg_avl__trips_performed') }}
    where is_valid and {{ service_date_filter() }}
),

segments as (
    select
        service_date,
        trip_id,
        route_short_name,
        direction_id,
        time_band,
        feed_version,
        stop_sequence as from_stop_sequence,
        stop_id as from_stop_id,
        lead(stop_id) over trip_order as to_stop_id,
        -- along the shape when both stops were placed on it, else straight line x road_factor
        case
            when lead(shape_along_m) over trip_order >= shape_along_m
                then lead(shape_along_m) over trip_order - shape_along_m
            else {{ haversine_m(
                'stop_lat', 'stop_lon', 'lead(stop_lat) over trip_order', 'lead(stop_lon) over trip_order'
            ) }} * {{ var('road_factor') }}
        end as segment_m,
        case
            when lead(shape_along_m) over trip_order >= shape_along_m then 'shape'
            else 'straight_line_x_road_factor'
        end as segment_length_source,
        epoch(lead(actual_arrival_at) over trip_order) - epoch(actual_departure_at) as running_s,
        epoch(last_value(actual_arrival_at) over trip_all) - epoch(first_value(actual_departure_at) over trip_all)
            as trip_duration_s
    from visits
    window
        trip_order as (partition by service_date, trip_id order by stop_position),
        trip_all as (
            partition by service_date, trip_id order by stop_position
            rows between unbounded preceding and unbounded following
        )
),

final as (
    select
        segments.*,
        trips.scheduled_km as trip_km,
        case when segments.running_s > 0 then segments.segment_m / segments.running_s * 3.6 end as segment_speed_kmh,
        case when segments.trip_duration_s > 0 then trips.scheduled_km / (segments.trip_duration_s / 3600) end
            as trip_commercial_speed_kmh
    from segments
    left join trips using (service_date, trip_id)
    where segments.to_stop_id is not null
)

select * from final
{{ in_period_order('service_date') }}
