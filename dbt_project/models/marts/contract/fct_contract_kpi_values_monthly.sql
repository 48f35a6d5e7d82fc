-- The value of every contract KPI per operator and month, from the marts, with numerator and
-- denominator (what a contract manager must be able to recompute). Null when not computable.
-- A building block of mart_contract_kpis (meta published: false): it reads marts, so it lives in
-- the marts layer. The operator accountable for a network-wide KPI (the transit and fleet marts
-- carry no operator column) is the one whose contract holds that KPI; delivery and parking KPIs
-- come per operator, for the operators whose contract holds them.
-- One row per (operator, kpi_code, month).
with accountable as (
    select distinct
        operator,
        kpi_code
    from {{ ref('contract_kpis') }}
),

offer as (
    select
        'OFFER_DELIVERED' as kpi_code,
        date_trunc('month', service_date)::date as month,
        sum(km_scheduled) - coalesce(sum(km_lost_attributable), 0) as numerator,
        sum(km_scheduled) as denominator,
        'mart_service_delivered' as computed_from
    from {{ ref('mart_service_delivered') }}
    group by all
),

punctuality as (
    select
        'PUNCTUALITY' as kpi_code,
        date_trunc('month', service_date)::date as month,
        sum(punctuality_all_stops * departures_observed) as numerator,
        sum(departures_observed) as denominator,
        'mart_punctuality' as computed_from
    from {{ ref('mart_punctuality') }}
    group by all
),

availability as (
    select
        'FLEET_AVAILABILITY' as kpi_code,
        date_trunc('month', service_date)::date as month,
        sum(available_at_peak) as numerator,
        sum(fleet_size) as denominator,
        'mart_fleet_availability_daily' as computed_from
    from {{ ref('mart_fleet_availability_daily') }}
    group by all
),

preventive as (
    select
        'PREVENTIVE_COMPLIANCE' as kpi_code,
        month,
        sum(preventive_within_tolerance) as numerator,
        sum(preventive_jobs) as denominator,
        'mart_maintenance_monthly' as computed_from
    from {{ ref('mart_maintenance_monthly') }}
    group by all
),

network_wide as (
    select
        accountable.operator,
        kpis.*
    from (
        select * from offer
        union all
        select * from punctuality
        union all
        select * from availability
        union all
        select * from preventive
    ) as kpis
    inner join accountable on kpis.kpi_code = accountable.kpi_code
),

data_delivery as (
    select
        compliance.operator,
        'DATA_DELIVERY' as kpi_code,
        date_trunc('month', compliance.service_date)::date as month,
        count(*) filter (where compliance.delivery_status = 'on_time') as numerator,
        count(*) as denominator,
        'int_delivery_compliance_daily' as computed_from
    from {{ ref('int_delivery_compliance_daily') }} as compliance
    inner join accountable
        on compliance.operator = accountable.operator and accountable.kpi_code = 'DATA_DELIVERY'
    group by all
),

occupancy_info as (
    select
        occupancy.operator,
        'OCCUPANCY_INFO_PUBLISHED' as kpi_code,
        date_trunc('month', occupancy.service_date)::date as month,
        sum(occupancy.readings_usable) as numerator,
        sum(occupancy.readings_expected) as denominator,
        'mart_parking_occupancy_daily' as computed_from
    from {{ ref('mart_parking_occupancy_daily') }} as occupancy
    inner join accountable
        on occupancy.operator = accountable.operator and accountable.kpi_code = 'OCCUPANCY_INFO_PUBLISHED'
    group by all
),

unioned as (
    select * from network_wide
    union all
    select * from data_delivery
    union all
    select * from occupancy_info
),

final as (
    select
        operator,
        kpi_code,
        month,
        numerator,
        denominator,
        case when denominator > 0 then numerator / denominator end as value,
        case
            when denominator is null or denominator = 0
                then 'nothing to measure in the month (denominator is zero)'
        end as not_computable_reason,
        computed_from
    from unioned
)

select * from final
