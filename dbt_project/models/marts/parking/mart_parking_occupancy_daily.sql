{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Occupancy per car park and day: mean and peak rate, hours saturated, entries, exits,
-- turnover (entries per place), completeness against the readings a local day should have
-- (23 or 25 hours on DST days), anomalies by kind. One row per (operator, facility_id, service_date).
with hourly as (
    select
        *,
        -- minutes in the local day: 1380 on the March DST day, 1500 in October, else 1440
        (
            epoch(timezone('{{ var("timezone") }}', (service_date + interval 1 day)::timestamp))
            - epoch(timezone('{{ var("timezone") }}', service_date::timestamp))
        ) / 60.0 as day_minutes
    from {{ ref('mart_parking_occupancy_hourly') }}
    where {{ service_date_filter() }}
),

intervals as (
    {{ parking_reading_intervals() }}
),

daily as (
    select
        hourly.operator,
        hourly.facility_id,
        any_value(hourly.facility_name) as facility_name,
        hourly.service_date,
        max(hourly.capacity) as capacity,
        sum(hourly.mean_occupancy_rate * hourly.readings_usable) / nullif(sum(hourly.readings_usable), 0)
            as mean_occupancy_rate,
        max(hourly.peak_occupancy_rate) as peak_occupancy_rate,
        sum(hourly.saturated_minutes) / 60.0 as hours_saturated,
        sum(hourly.entries) as entries,
        sum(hourly.exits) as exits,
        sum(hourly.entries) / nullif(max(hourly.capacity), 0) as turnover,
        sum(hourly.readings_usable) as readings_usable,
        sum(hourly.readings_anomalous) as readings_anomalous,
        sum(hourly.readings_stuck) as readings_stuck,
        sum(hourly.readings_over_capacity) as readings_over_capacity,
        any_value(hourly.day_minutes) / any_value(intervals.interval_min) as readings_expected
    from hourly
    left join intervals using (operator)
    group by all
)

select
    *,
    least(readings_usable / readings_expected, 1.0) as completeness
from daily
{{ in_period_order('service_date') }}
