{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Occupancy per car park and local hour: mean and peak rate over usable readings, saturation,
-- entries and exits, completeness (usable readings / readings expected in the hour) and
-- anomalies counted apart. One row per (operator, facility_id, service_date, local_hour).
with readings as (
    select * from {{ ref('int_parking_readings_flagged') }}
    where {{ service_date_filter() }}
),

intervals as (
    {{ parking_reading_intervals() }}
),

hourly as (
    select
        readings.operator,
        readings.facility_id,
        any_value(readings.facility_name) as facility_name,
        readings.service_date,
        readings.local_hour,
        max(readings.capacity) as capacity,
        count(*) filter (where readings.is_usable) as readings_usable,
        count(*) filter (where not readings.is_usable) as readings_anomalous,
        count(*) filter (where readings.anomaly = 'stuck') as readings_stuck,
        count(*) filter (where readings.anomaly = 'over_capacity') as readings_over_capacity,
        avg(readings.occupancy_rate) filter (where readings.is_usable) as mean_occupancy_rate,
        max(readings.occupancy_rate) filter (where readings.is_usable) as peak_occupancy_rate,
        count(*) filter (where readings.is_usable and readings.occupancy_rate >= {{ var('parking_saturation_rate') }})
        * any_value(intervals.interval_min) as saturated_minutes,
        sum(readings.entries) filter (where readings.is_usable) as entries,
        sum(readings.exits) filter (where readings.is_usable) as exits,
        60.0 / any_value(intervals.interval_min) as readings_expected
    from readings
    left join intervals using (operator)
    group by all
)

select
    *,
    least(readings_usable / readings_expected, 1.0) as completeness
from hourly
{{ in_period_order('service_date') }}
