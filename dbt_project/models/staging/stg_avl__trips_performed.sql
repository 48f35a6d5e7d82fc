with source as (
    select * from {{ source('staged', 'trips_performed') }}
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
        vehicle_id,
        schedule_trip_start as scheduled_start_at,
        schedule_trip_end as scheduled_end_at,
        trip_status,
        cancel_cause,
        cancel_cause_class,
        scheduled_km,
        is_valid,
        invalid_reason
    from source
)

select * from renamed
