-- The operators' monthly reports as delivered: one row per (operator, month, line or the
-- network, figure), in the city's figure codes and staged units (ingestion/declared.py), with
-- the delivery and the row each value was read from. Invalid rows (an unknown figure, a wrong
-- unit, a figure given twice, a row of another month) keep their reason.
with source as (
    select * from {{ source('staged', 'declared_figures') }}
),

renamed as (
    select
        operator,
        cast(service_date as date) as report_date,
        cast(try_strptime(month || '-01', '%Y-%m-%d') as date) as month,
        route_short_name,
        figure_code,
        value,
        unit,
        unit_delivered,
        source_sha256,
        source_row,
        is_valid,
        invalid_reason
    from source
)

select * from renamed
