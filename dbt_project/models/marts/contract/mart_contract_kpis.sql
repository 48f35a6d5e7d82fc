-- Contract KPIs per operator, KPI and month, against the contract version in force: value,
-- thresholds, status (met / tolerated / missed / not_computable, with why) and the bonus (+) or
-- penalty (-) in euros, capped per month. Bonus/penalty is a pure function of the published
-- value and the contract row: (value - target) x 100 points x bonus_per_point when at or above
-- target; (minimum - value) x 100 x penalty_per_point when below minimum; nothing in between;
-- values are compared at 1e-6. Lineage: the deliveries (sha256) the month rests on, the
-- contract version, the publication. Two readings of the offer delivered: as declared (a loss
-- the operator classes external is excused) and corroborated (an external loss the city's data
-- does not corroborate counts against it, int_external_losses_checked); the contract's
-- external_losses_binding says which one value and amount_eur are. One row per (operator,
-- kpi_code, month).
with contract as (
    select * from {{ ref('contract_kpis') }}
),

values_ as (
    select * from {{ ref('fct_contract_kpi_values_monthly') }}
),

months as (
    select distinct
        operator,
        month
    from values_
),

expected as (
    -- every KPI of the contract in force, for every month the operator has data
    select
        contract.*,
        months.month
    from contract
    inner join months
        on contract.operator = months.operator
            and months.month between date_trunc('month', cast(contract.valid_from as date)) and cast(
                contract.valid_to as date
            )
),

lineage as (
    select
        operator,
        cast(date_trunc('month', declared_date) as date) as month,
        count(distinct sha256) as source_deliveries,
        string_agg(distinct sha256, ',' order by sha256) as source_sha256s
    from {{ ref('stg_manifest__deliveries') }}
    where duplicate_of is null and declared_date is not null
    group by all
),

joined as (
    select
        expected.operator,
        expected.contract_version,
        expected.month,
        expected.kpi_code,
        expected.label,
        expected.unit,
        expected.direction,
        cast(expected.minimum as double) as minimum,
        cast(expected.target as double) as target,
        cast(expected.bonus_per_point_eur as double) as bonus_per_point_eur,
        cast(expected.penalty_per_point_eur as double) as penalty_per_point_eur,
        cast(expected.cap_eur as double) as cap_eur,
        coalesce(expected.external_losses_binding, 'as_declared') as external_losses_binding,
        round(
            case when expected.external_losses_binding = 'corroborated' then values_.value_corroborated
                else values_.value
            end, 6
        ) as value,
        case when expected.external_losses_binding = 'corroborated' then values_.numerator_corroborated
            else values_.numerator
        end as numerator,
        values_.denominator,
        round(values_.value, 6) as value_as_declared,
        round(values_.value_corroborated, 6) as value_corroborated,
        values_.computed_from,
        coalesce(
            values_.not_computable_reason,
            case when values_.kpi_code is null then 'no data for this KPI in the month' end
        )
            as not_computable_reason
    from expected
    left join values_
        on expected.operator = values_.operator
            and expected.kpi_code = values_.kpi_code
            and expected.month = values_.month
),

judged as (
    select
        *,
        case
            when value is null then 'not_computable'
            when direction = 'higher_better' and value >= target then 'met'
            when direction = 'higher_better' and value < minimum then 'missed'
            when direction = 'lower_better' and value <= target then 'met'
            when direction = 'lower_better' and value > minimum then 'missed'
            else 'tolerated'
        end as status,
        {{ kpi_amount_uncapped_eur('value') }} as amount_uncapped_eur,
        {{ kpi_amount_uncapped_eur('value_as_declared') }} as amount_as_declared_uncapped_eur,
        {{ kpi_amount_uncapped_eur('value_corroborated') }} as amount_corroborated_uncapped_eur
    from joined
),

final as (
    select
        judged.* exclude (amount_as_declared_uncapped_eur, amount_corroborated_uncapped_eur),
        {{ capped_eur('amount_uncapped_eur') }} as amount_eur,
        {{ capped_eur('amount_as_declared_uncapped_eur') }} as amount_as_declared_eur,
        {{ capped_eur('amount_corroborated_uncapped_eur') }} as amount_corroborated_eur,
        round(abs(amount_uncapped_eur), 2) > cap_eur as is_capped,
        lineage.source_deliveries,
        lineage.source_sha256s,
        '{{ var("publication_id") }}' as publication_id
    from judged
    left join lineage using (operator, month)
)

select * from final
