{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Kilometres each vehicle ran in service per day. From its AVL odometer (last minus first
-- reading at a stop) when the AVL carries one; otherwise (GTFS-RT TripUpdates and SIRI ET carry
-- none) the scheduled kilometres of the trips it ran, from the operator's trips feed, which leave
-- out the runs between trips. km_source says which. One row per (service_date, vehicle_id).
with odometer as (
    select
        service_date,
        vehicle_id,
        max(odometer_km) - min(odometer_km) as km,
        max(odometer_km) as odometer_end_km
    from {{ ref('stg_avl__stop_visits') }}
    where is_valid and {{ service_date_filter() }}
    group by all
),

trips_run as (
    select
        service_date,
        vehicle_id,
        sum(scheduled_km) as km
    from {{ ref('stg_avl__trips_performed') }}
    where
        is_valid
        and trip_status != 'NON_REALISEE'
        and vehicle_id is not null
        and {{ service_date_filter() }}
    group by all
)

select
    coalesce(odometer.service_date, trips_run.service_date) as service_date,
    coalesce(odometer.vehicle_id, trips_run.vehicle_id) as vehicle_id,
    coalesce(odometer.km, trips_run.km) as km,
    odometer.odometer_end_km,
    case when odometer.km is not null then 'odometer' else 'scheduled_km_of_trips_run' end as km_source
from odometer
full outer join trips_run
    on odometer.service_date = trips_run.service_date and odometer.vehicle_id = trips_run.vehicle_id
where odometer.km is not null or trips_run.km is not null
{{ in_period_order('service_date') }}
