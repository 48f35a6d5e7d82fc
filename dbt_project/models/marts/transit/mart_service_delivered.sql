{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Offer delivered vs scheduled per line and day (taux de réalisation de l'offre,
-- methods_and_kpis.md §2.2): trips and km scheduled by the GTFS version in force, trips run
-- (at least trip_min_served_share of their stops served in AVL), and trips lost by cause class
-- as the operator reports them (only internal causes count against it), with those it classes
-- external that the city's data does not corroborate (int_external_losses_checked).
-- One row per (service_date, route_short_name).
with per_trip as (
    select
        trips.*,
        checked.is_corroborated
    from {{ ref('int_trips_delivered') }} as trips
    left join {{ ref('int_external_losses_checked') }} as checked
        on trips.service_date = checked.service_date
            and trips.trip_id = checked.trip_id
            and {{ service_date_filter('checked.service_date') }}
    where {{ service_date_filter('trips.service_date') }}
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
        count(*) filter (where not is_run and cancel_cause_class = 'externe' and not is_corroborated)
            as trips_lost_external_uncorroborated,
        count(*) filter (where not is_run and cancel_cause_class is null) as trips_lost_unexplained,
        sum(scheduled_km) filter (where not is_run and coalesce(cancel_cause_class, 'interne') = 'interne')
            as km_lost_attributable,
        coalesce(
            sum(scheduled_km) filter (where not is_run and cancel_cause_class = 'externe' and not is_corroborated), 0
        ) as km_lost_external_uncorroborated,
        count(*) filter (where trip_status = 'DEVIEE') as trips_detoured,
        sum(scheduled_km) filter (where is_run) / nullif(sum(scheduled_km), 0) as offer_delivered_rate,
        coalesce(sum(scheduled_km) filter (where km_source = 'shape'), 0) / nullif(sum(scheduled_km), 0)
            as km_along_shape_share
    from per_trip
    group by all
)

select * from final
{{ in_period_order('service_date') }}
