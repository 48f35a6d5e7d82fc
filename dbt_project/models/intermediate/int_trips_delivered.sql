{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Every scheduled trip of a day and what became of it: scheduled by the GTFS version in force,
-- run when AVL shows at least trip_min_served_share of its stops served, and what the operator
-- reported (status, cause class, and the delivery and row of its report), with its scheduled
-- start (seconds after the service day's start), its km (along the GTFS shape when every stop
-- was placed on it, else straight line x road_factor: km_source) and median departure delay over the stops
-- served (the corroboration of external losses, int_external_losses_checked). The unit of the offer
-- delivered (mart_service_delivered) and of the evidence a reconciliation sends the operator
-- (fct_reconciliation_evidence: a trip reported run with no AVL trace).
-- One row per (service_date, trip_id).
with version as (
    select * from {{ ref('int_gtfs_version_by_date') }}
    where {{ service_date_filter() }}
),

scheduled_trips as (
    select
        version.service_date,
        trips.trip_id,
        routes.route_short_name,
        trips.direction_id
    from version
    inner join {{ ref('stg_gtfs__service_dates') }} as calendar
        on version.feed_version = calendar.feed_version and version.service_date = calendar.service_date
    inner join {{ ref('stg_gtfs__trips') }} as trips
        on version.feed_version = trips.feed_version and calendar.service_id = trips.service_id
    inner join {{ ref('stg_gtfs__routes') }} as routes
        on version.feed_version = routes.feed_version and trips.route_id = routes.route_id
),

scheduled_km as (
    select
        stop_times.feed_version,
        stop_times.trip_id,
        count(*) as scheduled_stops,
        min(departure_s) as scheduled_start_s,
        -- along the trip's shape when every stop was placed on it, else straight line x road_factor
        bool_and(along_m is not null) as is_along_shape,
        case
            when bool_and(along_m is not null) then (max(along_m) - min(along_m)) / 1000
            else
                sum({{ haversine_m('prev_lat', 'prev_lon', 'stop_lat', 'stop_lon') }}) / 1000
                * {{ var('road_factor') }}
        end as km
    from (
        select
            st.feed_version,
            st.trip_id,
            st.departure_s,
            stops.stop_lat,
            stops.stop_lon,
            distances.along_m,
            lag(stops.stop_lat) over (partition by st.feed_version, st.trip_id order by st.stop_sequence) as prev_lat,
            lag(stops.stop_lon) over (partition by st.feed_version, st.trip_id order by st.stop_sequence) as prev_lon
        from {{ ref('stg_gtfs__stop_times') }} as st
        inner join {{ ref('stg_gtfs__stops') }} as stops
            on st.feed_version = stops.feed_version and st.stop_id = stops.stop_id
        left join {{ ref('stg_gtfs__stop_distances') }} as distances
            on
                st.feed_version = distances.feed_version
                and st.trip_id = distances.trip_id
                and st.stop_sequence = distances.stop_sequence
    ) as stop_times
    group by all
),

served as (
    select
        service_date,
        trip_id,
        count(*) as stops_served,
        median(epoch(actual_departure_at) - epoch(scheduled_departure_at)) as delay_s
    from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
    group by all
),

reported as (
    select
        service_date,
        trip_id,
        trip_status,
        cancel_cause_class,
        source_sha256 as reported_sha256,
        source_row as reported_row
    from {{ ref('stg_avl__trips_performed') }}
    where is_valid and {{ service_date_filter() }}
),

per_trip as (
    select
        scheduled_trips.*,
        scheduled_km.km as scheduled_km,
        case when scheduled_km.is_along_shape then 'shape' else 'straight_line_x_road_factor' end as km_source,
        scheduled_km.scheduled_stops,
        scheduled_km.scheduled_start_s,
        coalesce(served.stops_served, 0) as stops_served,
        served.delay_s,
        coalesce(served.stops_served, 0) >= {{ var('trip_min_served_share') }} * scheduled_km.scheduled_stops as is_run,
        reported.trip_status,
        reported.cancel_cause_class,
        reported.reported_sha256,
        reported.reported_row
    from scheduled_trips
    left join version using (service_date)
    left join scheduled_km
        on version.feed_version = scheduled_km.feed_version and scheduled_trips.trip_id = scheduled_km.trip_id
    left join served
        on scheduled_trips.service_date = served.service_date and scheduled_trips.trip_id = served.trip_id
    left join reported
        on scheduled_trips.service_date = reported.service_date and scheduled_trips.trip_id = reported.trip_id
)

select * from per_trip
{{ in_period_order('service_date') }}
