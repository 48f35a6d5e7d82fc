with source as (
    select * from {{ source('staged', 'stop_visits') }}
),

renamed as (
    select
        operator,
        cast(service_date as date) as service_date,
        source_sha256,
        source_row,
        trip_id,
        route_short_name,
        direction_id,
        trip_stop_sequence as stop_sequence,
        stop_id,
        vehicle_id,
        schedule_arrival_time as scheduled_arrival_at,
        schedule_departure_time as scheduled_departure_at,
        actual_arrival_time as actual_arrival_at,
        actual_departure_time as actual_departure_at,
        odometer_km,
        is_valid,
        invalid_reason
    from source
)

select * from renamed
