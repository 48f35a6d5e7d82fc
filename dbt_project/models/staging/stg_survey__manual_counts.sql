-- Manual counts (enquête de comptage): boardings and alightings surveyors counted at each stop of
-- the trips they rode. Invalid rows are kept here; the calibration uses valid rows only.
with source as (
    select * from {{ source('staged', 'manual_counts') }}
),

renamed as (
    select
        operator,
        cast(service_date as date) as service_date,
        source_sha256,
        source_row,
        trip_id,
        route_short_name,
        trip_stop_sequence as stop_sequence,
        stop_id,
        boardings,
        alightings,
        surveyor_id,
        is_valid,
        invalid_reason
    from source
)

select * from renamed
