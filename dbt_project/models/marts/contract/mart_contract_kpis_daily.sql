-- The contract KPIs measured day by day (all but preventive maintenance, counted per month),
-- per operator and service date, with numerator and denominator: what the monthly figure
-- (fct_contract_kpi_values_monthly, summing these numerators and denominators) is made of, and
-- the trend a contract report draws while the lake holds less than two months. The operator
-- accountable for a network-wide KPI is the one whose contract holds it.
-- One row per (operator, kpi_code, service_date).
with accountable as (
    select distinct
        operator,
        kpi_code
    from {{ ref('contract_kpis') }}
),

offer as (
    select
        'OFFER_DELIVERED' as kpi_code,
        service_date,
        sum(km_scheduled) - coalesce(sum(km_lost_attributable), 0) as numerator,
        -- the second reading: the external losses the city's data does not corroborate count
        -- against the operator too (int_external_losses_checked); the contract says which binds
        sum(km_scheduled) - coalesce(sum(km_lost_attributable), 0) - coalesce(sum(km_lost_external_uncorroborated), 0)
            as numerator_corroborated,
        sum(km_scheduled) as denominator,
        'mart_service_delivered' as computed_from
    from {{ ref('mart_service_delivered') }}
    group by all
),

punctuality as (
    select
        'PUNCTUALITY' as kpi_code,
        service_date,
        sum(punctuality_all_stops * departures_observed) as numerator,
        sum(departures_observed) as denominator,
        'mart_punctuality' as computed_from
    from {{ ref('mart_punctuality') }}
    group by all
),

availability as (
    select
        'FLEET_AVAILABILITY' as kpi_code,
        service_date,
        sum(available_at_peak) as numerator,
        sum(fleet_size) as denominator,
        'mart_fleet_availability_daily' as computed_from
    from {{ ref('mart_fleet_availability_daily') }}
    group by all
),

network_wide as (
    select
        accountable.operator,
        kpis.*
    from (
        select * from offer
        union all by name
        select * from punctuality
        union all by name
        select * from availability
    ) as kpis
    inner join accountable on kpis.kpi_code = accountable.kpi_code
),

data_delivery as (
    select
        compliance.operator,
        'DATA_DELIVERY' as kpi_code,
        compliance.service_date,
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
        occupancy.service_date,
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
    union all by name
    select * from data_delivery
    union all by name
    select * from occupancy_info
)

select
    operator,
    kpi_code,
    service_date,
    numerator::double as numerator,
    denominator::double as denominator,
    case when denominator > 0 then numerator / denominator end as value,
    coalesce(numerator_corroborated, numerator)::double as numerator_corroborated,
    case when denominator > 0 then coalesce(numerator_corroborated, numerator) / denominator end as value_corroborated,
    computed_from
from unioned
order by service_date, operator, kpi_code
