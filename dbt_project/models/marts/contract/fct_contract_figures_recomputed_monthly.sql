-- Every figure an operator declares (seed contract_declared_figures), recomputed by the city
-- from its own marts, per operator, month, and line where the figure is declared per line (null:
-- the network). Km and trips from mart_service_delivered (a trip is run when AVL shows it; its
-- loss is internal unless the operator classed it external and the city's data corroborates it,
-- int_external_losses_checked; an unexplained loss counts as internal); the rates as the
-- contract KPIs publish them (mart_contract_kpis, in the reading the contract binds);
-- validations and fare revenue from mart_line_ridership_daily (every validation recorded, as
-- operators count them, and the amounts they debited); car-park entries from mart_parking_occupancy_daily.
-- A building block of mart_contract_reconciliation (not published).
-- One row per (operator, month, route_short_name, figure_code).
with holders as (
    select distinct
        operator,
        figure_code,
        per_line
    from {{ ref('contract_declared_figures') }}
),

offer_by_line as (
    select
        date_trunc('month', service_date)::date as month,
        route_short_name,
        sum(km_scheduled) as km_programmes,
        coalesce(sum(km_run), 0) as km_realises,
        coalesce(sum(km_lost_attributable), 0) + sum(km_lost_external_uncorroborated) as km_perdus_internes,
        sum(km_scheduled) - coalesce(sum(km_run), 0) - coalesce(sum(km_lost_attributable), 0)
        - sum(km_lost_external_uncorroborated) as km_perdus_externes,
        sum(trips_scheduled) as courses_programmees,
        sum(trips_lost_internal + trips_lost_unexplained + trips_lost_external_uncorroborated)
            as courses_perdues_internes,
        sum(trips_lost_external - trips_lost_external_uncorroborated) as courses_perdues_externes
    from {{ ref('mart_service_delivered') }}
    group by all
),

offer_long as (
    unpivot offer_by_line
    on km_programmes, km_realises, km_perdus_internes, km_perdus_externes, courses_programmees,
    courses_perdues_internes, courses_perdues_externes
    into name figure_code value value
),

offer as (
    -- each line, and the network (null line) as their sum
    select
        month,
        route_short_name,
        figure_code,
        round(value, 3)::double as value
    from offer_long
    union all
    select
        month,
        null as route_short_name,
        figure_code,
        round(sum(value), 3)::double as value
    from offer_long
    group by all
),

kpi_figures as (
    select
        operator,
        month,
        case kpi_code
            when 'OFFER_DELIVERED' then 'taux_realisation_offre'
            when 'PUNCTUALITY' then 'ponctualite'
            when 'FLEET_AVAILABILITY' then 'disponibilite_parc'
            when 'OCCUPANCY_INFO_PUBLISHED' then 'taux_information_occupation'
        end as figure_code,
        value,
        'mart_contract_kpis' as computed_from
    from {{ ref('mart_contract_kpis') }}
),

ridership_by_month as (
    -- one read of the ridership mart for both of its figures
    select
        date_trunc('month', service_date)::date as month,
        sum(validations_recorded)::double as validations,
        round(sum(revenue_eur), 2)::double as recettes
    from {{ ref('mart_line_ridership_daily') }}
    group by all
),

counts as (
    select
        month,
        figure_code,
        value,
        'mart_line_ridership_daily' as computed_from,
        null as operator
    from (
        unpivot ridership_by_month
        on validations, recettes
        into name figure_code value value
    )
    union all
    select
        date_trunc('month', service_date)::date as month,
        'entrees' as figure_code,
        sum(entries)::double as value,
        'mart_parking_occupancy_daily' as computed_from,
        operator
    from {{ ref('mart_parking_occupancy_daily') }}
    group by all
),

figures as (
    select
        holders.operator,
        offer.month,
        offer.route_short_name,
        offer.figure_code,
        offer.value,
        'mart_service_delivered' as computed_from
    from offer
    inner join holders
        on offer.figure_code = holders.figure_code
            and (offer.route_short_name is null or holders.per_line)
    union all
    select
        kpi_figures.operator,
        kpi_figures.month,
        null as route_short_name,
        kpi_figures.figure_code,
        kpi_figures.value,
        kpi_figures.computed_from
    from kpi_figures
    inner join holders
        on kpi_figures.operator = holders.operator and kpi_figures.figure_code = holders.figure_code
    union all
    select
        holders.operator,
        counts.month,
        null as route_short_name,
        counts.figure_code,
        counts.value,
        counts.computed_from
    from counts
    inner join holders
        on counts.figure_code = holders.figure_code
            and (counts.operator is null or counts.operator = holders.operator)
)

select * from figures
