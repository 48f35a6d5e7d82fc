{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

-- Occupancy per car park and month, with the car park's place (dim_car_parks) so that a map
-- reads it directly. One row per (operator, facility_id, month).
with monthly as (
    select
        operator,
        facility_id,
        any_value(facility_name) as facility_name,
        date_trunc('month', service_date)::date as month,
        count(*) as days_observed,
        avg(mean_occupancy_rate) as mean_occupancy_rate,
        max(peak_occupancy_rate) as peak_occupancy_rate,
        sum(hours_saturated) as hours_saturated,
        sum(entries) as entries,
        avg(turnover) as mean_daily_turnover,
        sum(readings_usable) / nullif(sum(readings_expected), 0) as completeness,
        sum(readings_anomalous) as readings_anomalous
    from {{ ref('mart_parking_occupancy_daily') }}
    where {{ month_filter() }}
    group by all
)

select
    monthly.*,
    car_parks.geometry
from monthly
left join {{ ref('dim_car_parks') }} as car_parks using (operator, facility_id)
{{ in_period_order('month') }}
