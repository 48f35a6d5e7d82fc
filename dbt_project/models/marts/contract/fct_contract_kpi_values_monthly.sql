-- The value of every contract KPI per operator and month, with numerator and denominator (what
-- a contract manager must be able to recompute). Null when not computable. The KPIs measured day
-- by day sum the numerators and denominators of mart_contract_kpis_daily over the month;
-- preventive maintenance compliance is counted per month (mart_maintenance_monthly), for the
-- operator whose contract holds it.
-- A building block of mart_contract_kpis (meta published: false): it reads marts, so it lives in
-- the marts layer. One row per (operator, kpi_code, month).
with daily as (
    select
        operator,
        kpi_code,
        date_trunc('month', service_date)::date as month,
        sum(numerator) as numerator,
        sum(denominator) as denominator,
        sum(numerator_corroborated) as numerator_corroborated,
        any_value(computed_from) as computed_from
    from {{ ref('mart_contract_kpis_daily') }}
    group by all
),

accountable as (
    select distinct
        operator,
        kpi_code
    from {{ ref('contract_kpis') }}
),

preventive as (
    select
        'PREVENTIVE_COMPLIANCE' as kpi_code,
        month,
        sum(preventive_within_tolerance)::double as numerator,
        sum(preventive_jobs)::double as denominator,
        sum(preventive_within_tolerance)::double as numerator_corroborated,
        'mart_maintenance_monthly' as computed_from
    from {{ ref('mart_maintenance_monthly') }}
    group by all
),

preventive_accountable as (
    select
        accountable.operator,
        preventive.kpi_code,
        preventive.month,
        preventive.numerator,
        preventive.denominator,
        preventive.numerator_corroborated,
        preventive.computed_from
    from preventive
    inner join accountable on preventive.kpi_code = accountable.kpi_code
),

unioned as (
    select * from daily
    union all
    select * from preventive_accountable
),

final as (
    select
        operator,
        kpi_code,
        month,
        numerator,
        denominator,
        case when denominator > 0 then numerator / denominator end as value,
        numerator_corroborated,
        case when denominator > 0 then numerator_corroborated / denominator end as value_corroborated,
        case
            when denominator is null or denominator = 0
                then 'nothing to measure in the month (denominator is zero)'
        end as not_computable_reason,
        computed_from
    from unioned
)

select * from final
