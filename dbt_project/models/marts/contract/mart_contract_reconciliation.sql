-- What each operator declared in its monthly report against what the city recomputes from the
-- operator's own deliveries, figure by figure (seed contract_declared_figures: which figures,
-- which tolerance, which contract KPI): declared, recomputed, the difference, within tolerance
-- or not, and the euro effect -- the bonus/penalty the contract grid gives on the declared
-- figure minus the one on the recomputed figure (positive: the declaration would pay the
-- operator more). The report itself is judged against its due date (seed
-- contract_declaration_terms): on time, late, not declared (a breach the report lists), or not
-- due yet. Each figure names the delivery and row it was read from and counts its evidence
-- (fct_reconciliation_evidence). One row per (operator, month, scope, figure_code); scope is
-- 'network' (route_short_name null) or 'line <route_short_name>'.
with terms as (
    select * from {{ ref('contract_declared_figures') }}
),

declared as (
    select * from {{ ref('stg_declared__figures') }}
    where is_valid
),

recomputed as (
    select * from {{ ref('fct_contract_figures_recomputed_monthly') }}
),

months as (
    -- the months an operator has data for, and those it declared
    select distinct
        operator,
        month
    from {{ ref('fct_contract_kpi_values_monthly') }}
    union
    select distinct
        operator,
        month
    from declared
),

in_force as (
    select
        terms.*,
        months.month
    from terms
    inner join months
        on terms.operator = months.operator
            and months.month
            between date_trunc('month', cast(terms.valid_from as date)) and cast(terms.valid_to as date)
),

lines as (
    select distinct
        operator,
        month,
        figure_code,
        route_short_name
    from recomputed
    where route_short_name is not null
    union
    select distinct
        operator,
        month,
        figure_code,
        route_short_name
    from declared
    where route_short_name is not null
),

expected as (
    select
        in_force.*,
        cast(null as varchar) as route_short_name
    from in_force
    union all by name
    select
        in_force.*,
        lines.route_short_name
    from in_force
    inner join lines
        on in_force.operator = lines.operator
            and in_force.month = lines.month
            and in_force.figure_code = lines.figure_code
    where in_force.per_line
),

deliveries as (
    select
        operator,
        cast(date_trunc('month', declared_date) as date) as month,
        min(judged_at) as first_delivered_at,
        max(judged_at) as last_delivered_at,
        count(*) as report_deliveries,
        string_agg(sha256, ',' order by judged_at) as report_sha256s
    from {{ ref('stg_manifest__deliveries') }}
    where feed = 'declared' and duplicate_of is null and declared_date is not null
    group by all
),

lake_clock as (
    -- "now" as far as the lake knows: its newest delivery (a rebuild of the same deliveries
    -- judges the same way)
    select max(judged_at) as as_of from {{ ref('stg_manifest__deliveries') }}
),

report_terms as (
    select
        report_terms.operator,
        months.month,
        timezone(
            '{{ var("timezone") }}',
            cast(
                cast(
                    cast(months.month + interval 1 month + to_days(report_terms.due_day_of_next_month - 1) as date)
                    as varchar
                )
                || ' ' || report_terms.due_time_local as timestamp
            )
        ) as report_due_at
    from {{ ref('contract_declaration_terms') }} as report_terms
    inner join months
        on report_terms.operator = months.operator
            and months.month between date_trunc('month', cast(report_terms.valid_from as date))
            and cast(report_terms.valid_to as date)
),

report as (
    select
        report_terms.operator,
        report_terms.month,
        report_terms.report_due_at,
        deliveries.first_delivered_at,
        deliveries.report_deliveries,
        deliveries.report_sha256s,
        case
            when deliveries.first_delivered_at is null and lake_clock.as_of > report_terms.report_due_at
                then 'not_declared'
            when deliveries.first_delivered_at is null then 'not_due_yet'
            when deliveries.first_delivered_at > report_terms.report_due_at then 'late'
            else 'on_time'
        end as report_status
    from report_terms
    cross join lake_clock
    left join deliveries using (operator, month)
),

grid as (
    -- the contract grid, typed as the bonus/penalty macros read it (macros/contract.sql)
    select
        operator,
        kpi_code,
        valid_from,
        valid_to,
        direction,
        cast(minimum as double) as minimum,
        cast(target as double) as target,
        cast(bonus_per_point_eur as double) as bonus_per_point_eur,
        cast(penalty_per_point_eur as double) as penalty_per_point_eur,
        cast(cap_eur as double) as cap_eur
    from {{ ref('contract_kpis') }}
),

evidence as (
    select
        operator,
        month,
        figure_code,
        route_short_name,
        count(*) as evidence_rows
    from {{ ref('fct_reconciliation_evidence') }}
    group by all
    union all
    select
        operator,
        month,
        figure_code,
        null as route_short_name,
        count(*) as evidence_rows
    from {{ ref('fct_reconciliation_evidence') }}
    where route_short_name is not null
    group by all
),

joined as (
    select
        expected.operator,
        expected.contract_version,
        expected.month,
        expected.route_short_name,
        expected.figure_code,
        expected.kpi_code,
        declared.value as declared_value,
        declared.unit,
        recomputed.value as recomputed_value,
        recomputed.computed_from,
        greatest(
            coalesce(cast(expected.tolerance_abs as double), 0),
            coalesce(cast(expected.tolerance_rel as double), 0) * abs(recomputed.value)
        ) as tolerance,
        report.report_status,
        report.report_due_at,
        report.first_delivered_at as report_delivered_at,
        report.report_deliveries,
        declared.source_sha256 as declared_sha256,
        declared.source_row as declared_row,
        coalesce(evidence.evidence_rows, 0) as evidence_rows
    from expected
    left join declared
        on expected.operator = declared.operator
            and expected.month = declared.month
            and expected.figure_code = declared.figure_code
            and expected.route_short_name is not distinct from declared.route_short_name
    left join recomputed
        on expected.operator = recomputed.operator
            and expected.month = recomputed.month
            and expected.figure_code = recomputed.figure_code
            and expected.route_short_name is not distinct from recomputed.route_short_name
    left join report
        on expected.operator = report.operator and expected.month = report.month
    left join evidence
        on expected.operator = evidence.operator
            and expected.month = evidence.month
            and expected.figure_code = evidence.figure_code
            and expected.route_short_name is not distinct from evidence.route_short_name
),

judged as (
    select
        *,
        -- rounded: a figure summed in another order differs in its last bits, never in these
        round(declared_value - recomputed_value, 9) as difference,
        round((declared_value - recomputed_value) / nullif(abs(recomputed_value), 0), 9) as relative_difference,
        case
            when declared_value is null and report_status = 'not_due_yet' then 'not_due_yet'
            when declared_value is null and report_status = 'not_declared' then 'not_declared'
            when declared_value is null then 'figure_missing'
            when recomputed_value is null then 'not_recomputable'
            when abs(declared_value - recomputed_value) <= tolerance + 1e-9 then 'within_tolerance'
            else 'outside_tolerance'
        end as status
    from joined
),

priced as (
    select
        judged.*,
        case when grid.kpi_code is not null and declared_value is not null
                then {{ capped_eur(kpi_amount_uncapped_eur('round(declared_value, 6)')) }}
        end as amount_declared_eur,
        case when grid.kpi_code is not null and recomputed_value is not null
                then {{ capped_eur(kpi_amount_uncapped_eur('round(recomputed_value, 6)')) }}
        end as amount_recomputed_eur
    from judged
    left join grid
        on judged.operator = grid.operator
            and judged.kpi_code = grid.kpi_code
            and judged.month between date_trunc('month', cast(grid.valid_from as date)) and cast(grid.valid_to as date)
)

select
    operator,
    contract_version,
    month,
    route_short_name,
    -- the key's own column for the row's scope, never null: 'network' or 'line <route_short_name>'
    coalesce('line ' || route_short_name, 'network') as scope,
    figure_code,
    kpi_code,
    unit,
    declared_value,
    recomputed_value,
    difference,
    relative_difference,
    tolerance,
    status,
    amount_declared_eur,
    amount_recomputed_eur,
    round(amount_declared_eur - amount_recomputed_eur, 2) as euro_effect_eur,
    report_status,
    report_due_at,
    report_delivered_at,
    report_deliveries,
    declared_sha256,
    declared_row,
    computed_from,
    evidence_rows,
    '{{ var("publication_id") }}' as publication_id
from priced
