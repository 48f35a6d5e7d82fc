{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Method step 1 (methods_and_kpis.md §1.1): put each valid validation on the stop visit its
-- vehicle was at. Its own stop code decides when given (matched on the same vehicle within
-- 15 minutes, which survives a validator clock off by a few minutes); otherwise the AVL stop
-- visit of its vehicle at that time (ASOF join). A card tapping again on the same vehicle
-- within the duplicate window is the same boarding.
with transactions as (
    select * from {{ ref('stg_ticketing__fare_transactions') }}
    where is_valid and {{ service_date_filter() }}
),

deduplicated as (
    select
        *,
        coalesce(
            validated_at - lag(validated_at) over (
                partition by service_date, fare_media_id, vehicle_id order by validated_at, source_sha256, source_row
            ) <= to_seconds({{ var('duplicate_window_s') }}),
            false
        ) as is_duplicate
    from transactions
),

visits as (
    select
        service_date,
        trip_id,
        vehicle_id,
        stop_id,
        stop_sequence,
        stop_position,
        is_last_stop,
        actual_arrival_at,
        actual_departure_at,
        actual_arrival_at - to_seconds({{ var('locate_before_arrival_s') }}) as window_start_at,
        route_short_name,
        direction_id,
        time_band,
        stop_lat,
        stop_lon
    from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
),

-- one visit per vehicle and window start, so that the ASOF join below has no tie to break by
-- row order: where a trip ends and the vehicle's next trip starts at the same second, the next
-- trip's first stop (a validation there boards it), then the smaller trip id and position
visits_in_time as (
    select * from visits
    qualify row_number() over (
            partition by service_date, vehicle_id, window_start_at
            order by is_last_stop, trip_id, stop_position
        ) = 1
),

-- the vehicle's visit in progress at the validation time (latest arrival before it)
by_time as (
    select
        deduplicated.service_date,
        deduplicated.source_sha256,
        deduplicated.source_row,
        visits.trip_id,
        visits.stop_position,
        visits.is_last_stop,
        visits.actual_departure_at
    from deduplicated
    asof left join visits_in_time as visits
        on deduplicated.service_date = visits.service_date
            and deduplicated.vehicle_id = visits.vehicle_id
            and deduplicated.validated_at >= visits.window_start_at
),

-- the vehicle's visit of the validation's own stop nearest in time (ties: the smaller trip id,
-- then the earlier visit: a trip may list a stop twice in a row), by one hash aggregate rather
-- than a window sort (profiled on a metro night; the sort also left those ties to chance)
by_stop as (
    select
        service_date,
        source_sha256,
        source_row,
        nearest.trip_id,
        nearest.stop_position
    from (
        select
            deduplicated.service_date,
            deduplicated.source_sha256,
            deduplicated.source_row,
            arg_min(
                { 'trip_id': visits.trip_id, 'stop_position': visits.stop_position },
                {
                    'd': abs(epoch(deduplicated.validated_at) - epoch(visits.actual_arrival_at)),
                    't': visits.trip_id, 'p': visits.stop_position
                }
            ) as nearest
        from deduplicated
        inner join visits
            on deduplicated.service_date = visits.service_date
                and deduplicated.vehicle_id = visits.vehicle_id
                and deduplicated.stop_id = visits.stop_id
                and abs(epoch(deduplicated.validated_at) - epoch(visits.actual_arrival_at)) <= 900
        group by deduplicated.service_date, deduplicated.source_sha256, deduplicated.source_row
    ) as nearest_visits
),

chosen as (
    select
        deduplicated.*,
        case
            when by_stop.trip_id is not null then 'stop_code'
            when by_time.trip_id is null then 'unlocated'
            when by_time.is_last_stop then 'terminus'
            when deduplicated.validated_at
                > by_time.actual_departure_at + to_seconds({{ var('locate_after_departure_s') }})
                then 'avl_time_late'
            else 'avl_time'
        end as location_method,
        coalesce(by_stop.trip_id, by_time.trip_id) as located_trip_id,
        coalesce(by_stop.stop_position, by_time.stop_position) as located_position
    from deduplicated
    left join by_stop using (service_date, source_sha256, source_row)
    left join by_time using (service_date, source_sha256, source_row)
),

final as (
    select
        chosen.service_date,
        chosen.source_sha256,
        chosen.source_row,
        chosen.fare_media_id,
        chosen.fare_media_type,
        chosen.fare_product_id,
        chosen.fare_action,
        chosen.validated_at,
        chosen.vehicle_id,
        chosen.is_duplicate,
        chosen.location_method,
        -- a validation at a trip's terminus cannot ride this trip: it is left unlocated
        chosen.location_method not in ('unlocated', 'terminus') as is_located,
        case when chosen.location_method not in ('unlocated', 'terminus') then visits.trip_id end as trip_id,
        case when chosen.location_method not in ('unlocated', 'terminus') then visits.stop_position end
            as board_position,
        visits.stop_id as board_stop_id,
        visits.stop_sequence as board_stop_sequence,
        visits.actual_departure_at as boarded_at,
        visits.route_short_name,
        visits.direction_id,
        visits.time_band,
        visits.stop_lat as board_lat,
        visits.stop_lon as board_lon
    from chosen
    left join visits
        on chosen.service_date = visits.service_date
            and chosen.located_trip_id = visits.trip_id
            and chosen.located_position = visits.stop_position
)

select * from final
{{ in_period_order('service_date') }}
