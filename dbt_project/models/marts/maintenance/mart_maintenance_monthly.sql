-- Maintenance per vehicle and month (methods_and_kpis.md §2.4): preventive jobs and their
-- compliance with the plan (done within preventive_tolerance of the due odometer), failures,
-- mean km between failures, mean time to repair, immobilisation, regulatory inspections done
-- late, costs and cost per km. One row per (vehicle_id, month).
with orders as (
    select
        *,
        date_trunc('month', {{ local_ts('opened_at') }})::date as month
    from {{ ref('stg_maintenance__work_orders') }}
),

km as (
    select
        vehicle_id,
        date_trunc('month', service_date)::date as month,
        sum(km) as km
    from {{ ref('int_vehicle_km_daily') }}
    group by all
),

vehicles as (
    select
        vehicle_id,
        model
    from {{ ref('dim_vehicles') }}
),

per_vehicle as (
    select
        vehicle_id,
        month,
        count(*) filter (where work_order_type = 'Préventif') as preventive_jobs,
        count(*) filter (
            where work_order_type = 'Préventif'
            and abs(odometer_km - due_km) <= {{ var('preventive_tolerance') }} * {{ var('preventive_interval_km') }}
        ) as preventive_within_tolerance,
        count(*) filter (where work_order_type = 'Correctif') as failures,
        avg(epoch(closed_at) - epoch(opened_at)) filter (where work_order_type = 'Correctif' and closed_at is not null)
        / 3600
            as mean_time_to_repair_h,
        sum(epoch(closed_at) - epoch(opened_at)) filter (where is_immobilising and closed_at is not null) / 86400
            as immobilisation_days,
        count(*) filter (where work_order_type = 'Contrôle réglementaire') as inspections,
        count(*) filter (
            where work_order_type = 'Contrôle réglementaire' and {{ local_ts('opened_at') }}::date > due_date
        ) as inspections_late,
        sum(parts_cost_eur) as parts_cost_eur,
        sum(labour_hours) as labour_hours
    from orders
    group by all
),

final as (
    select
        coalesce(per_vehicle.vehicle_id, km.vehicle_id) as vehicle_id,
        coalesce(per_vehicle.month, km.month) as month,
        vehicles.model,
        coalesce(km.km, 0) as km,
        coalesce(preventive_jobs, 0) as preventive_jobs,
        coalesce(preventive_within_tolerance, 0) as preventive_within_tolerance,
        preventive_within_tolerance / nullif(preventive_jobs, 0) as preventive_compliance,
        coalesce(failures, 0) as failures,
        coalesce(km.km, 0) / nullif(failures, 0) as km_between_failures,
        mean_time_to_repair_h,
        coalesce(immobilisation_days, 0) as immobilisation_days,
        coalesce(inspections, 0) as inspections,
        coalesce(inspections_late, 0) as inspections_late,
        coalesce(parts_cost_eur, 0) as parts_cost_eur,
        coalesce(labour_hours, 0) as labour_hours,
        (coalesce(parts_cost_eur, 0) + coalesce(labour_hours, 0) * {{ var('labour_rate_eur_per_hour') }})
        / nullif(km.km, 0) as cost_per_km_eur
    from per_vehicle
    full outer join km using (vehicle_id, month)
    left join vehicles on vehicles.vehicle_id = coalesce(per_vehicle.vehicle_id, km.vehicle_id)
)

select * from final
