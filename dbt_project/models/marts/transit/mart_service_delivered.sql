{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Offer delivered vs scheduled per line and day (taux de réalisation de l'offre,
-- methods_and_kpis.md §2.2): trips and km scheduled by the GTFS version in force, trips run
-- (at least trip_min_served_share of their stops served in AVL), and trips lost by cause class
-- as the operator reports them (only internal causes count against it).
-- One row per (service_date, route_short_name).
with per_trip as (
    select * from {{ ref('int_trips_delivered') }}
    where {{ service_date_filter() }}
),

final as (
    select
        service_date,
        route_short_name,
        count(*) as trips_scheduled,
        count(*) filter (where is_run) as trips_run,
        sum(scheduled_km) as km_scheduled,
        sum(scheduled_km) filter (where is_run) as km_run,
        count(*) filter (where not is_run and cancel_cause_class = 'interne') as trips_lost_internal,
        count(*) filter (where not is_run and cancel_cause_class = 'externe') as trips_lost_external,
        count(*) filter (where not is_run and cancel_cause_class is null) as trips_lost_unexplained,
        sum(scheduled_km) filter (where not is_run and coalesce(cancel_cause_class, 'interne') = 'interne')
            as km_lost_attributable,
        count(*) filter (where trip_status = 'DEVIEE') as trips_detoured,
        sum(scheduled_km) filter (where is_run) / nullif(sum(scheduled_km), 0) as offer_delivered_rate
    from per_trip
    group by all
)

select * from final
{{ in_period_order('service_date') }}
