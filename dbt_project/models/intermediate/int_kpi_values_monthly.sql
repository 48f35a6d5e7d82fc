-- The value of every contract KPI per operator and month, from the marts, with numerator and
-- denominator (what a contract manager must be able to recompute). Null when not computable.
-- One row per (operator, kpi_code, month).
with offer as (
    select
        'bus' as operator, 'OFFER_DELIVERED' as kpi_code, date_trunc('month', service_date)::date as month,
        sum(km_scheduled) - coalesce(sum(km_lost_attributable), 0) as numerator,
        sum(km_scheduled) as denominator,
        'mart_service_delivered' as computed_from
    from {{ ref('mart_service_delivered') }} group by all
),

punctuality as (
    select
        'bus', 'PUNCTUALITY', date_trunc('month', service_date)::date,
        sum(punctuality_all_stops * departures_observed), sum(departures_observed), 'mart_punctuality'
    from {{ ref('mart_punctuality') }} group by all
),

availability as (
    select
        'bus', 'FLEET_AVAILABILITY', date_trunc('month', service_date)::date,
        sum(available_at_peak), sum(fleet_size), 'mart_fleet_availability_daily'
    from {{ ref('mart_fleet_availability_daily') }} group by all
),

preventive as (
    select
        'bus', 'PREVENTIVE_COMPLIANCE', month,
        sum(preventive_within_tolerance), sum(preventive_jobs), 'mart_maintenance_monthly'
    from {{ ref('mart_maintenance_monthly') }} group by all
),

data_delivery as (
    select
        operator, 'DATA_DELIVERY', date_trunc('month', service_date)::date,
        count(*) filter (where delivery_status = 'on_time'), count(*), 'int_delivery_compliance_daily'
    from {{ ref('int_delivery_compliance_daily') }}
    where operator in ('bus', 'parking')
    group by all
),

occupancy_info as (
    select
        operator, 'OCCUPANCY_INFO_PUBLISHED', date_trunc('month', service_date)::date,
        sum(readings_usable), sum(readings_expected), 'mart_parking_occupancy_daily'
    from {{ ref('mart_parking_occupancy_daily') }}
    where operator = 'parking'
    group by all
),

unioned as (
    select * from offer
    union all select * from punctuality
    union all select * from availability
    union all select * from preventive
    union all select * from data_delivery
    union all select * from occupancy_info
)

select
    operator,
    kpi_code,
    month,
    numerator,
    denominator,
    case when denominator > 0 then numerator / denominator end as value,
    case
        when denominator is null or denominator = 0 then 'nothing to measure in the month (denominator is zero)'
    end as not_computable_reason,
    computed_from
from unioned
