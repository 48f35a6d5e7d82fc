with source as (
    select * from {{ source('staged', 'vehicles') }}
),

renamed as (
    select
        operator,
        cast(as_of_date as date) as as_of_date,
        source_row,
        vehicle_id,
        model,
        seated_capacity,
        standing_capacity,
        capacity,
        commissioned_on,
        odometer_km,
        apc_equipped as has_apc
    from source
    where is_valid
)

select * from renamed
