-- Work orders as last exported: the GMAO export is a daily delta, an order appears again when
-- it changes (opened, then closed): the latest export of each order wins.
with source as (
    select * from {{ source('staged', 'work_orders') }}
    where is_valid
),

latest as (
    select * from source
    qualify row_number() over (partition by operator, work_order_id order by service_date desc, source_row desc) = 1
)

select
    operator,
    cast(service_date as date) as last_export_date,
    work_order_id,
    vehicle_id,
    work_order_type,
    component,
    opened_at,
    closed_at,
    odometer_km,
    due_km,
    due_date,
    labour_hours,
    parts_cost_eur,
    is_immobilising,
    status,
    source_sha256,
    source_row
from latest
