-- One row per delivered validation, typed and pseudonymised at ingestion. Invalid rows are
-- kept here (quality checks count them); intermediate models use valid rows only.
with source as (
    select * from {{ source('staged', 'fare_transactions') }}
),

renamed as (
    select
        operator,
        cast(service_date as date) as service_date,
        source_sha256,
        source_row,
        event_timestamp as validated_at,
        fare_media_id,
        fare_media_type,
        fare_product_id,
        fare_action,
        amount,
        route_short_name,
        direction_id,
        stop_id,
        vehicle_id,
        device_id,
        is_valid,
        invalid_reason
    from source
)

select * from renamed
