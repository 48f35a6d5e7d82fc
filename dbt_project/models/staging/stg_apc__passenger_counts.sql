-- APC counts back to one row per stop visit (boardings and alightings side by side).
with source as (
    select * from {{ source('staged', 'passenger_events') }}
),

valid as (
    select * from source
    where is_valid
),

pivoted as (
    select
        operator,
        cast(service_date as date) as service_date,
        trip_id,
        trip_stop_sequence as stop_sequence,
        any_value(stop_id) as stop_id,
        any_value(vehicle_id) as vehicle_id,
        sum(event_count) filter (where event_type = 'boarding') as apc_boardings,
        sum(event_count) filter (where event_type = 'alighting') as apc_alightings
    from valid
    group by all
)

select * from pivoted
