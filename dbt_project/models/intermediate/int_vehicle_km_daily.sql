{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Kilometres each vehicle ran in service per day, from its AVL odometer. One row per
-- (service_date, vehicle_id).
select
    service_date,
    vehicle_id,
    max(odometer_km) - min(odometer_km) as km,
    max(odometer_km) as odometer_end_km
from {{ ref('stg_avl__stop_visits') }}
where is_valid and {{ service_date_filter() }}
group by all
{{ in_period_order('service_date') }}
