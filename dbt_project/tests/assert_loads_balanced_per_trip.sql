-- Protects every load figure downstream (profiles, load factors, contract reports): per trip,
-- estimated ons equal offs, the load never goes below zero and the bus is empty at its last stop.
with per_trip as (
    select
        service_date,
        trip_id,
        sum(boardings_estimated) as ons,
        sum(alightings_estimated) as offs,
        min(load_estimated) as min_load,
        arg_max(load_estimated, stop_position) as final_load
    from {{ ref('fct_stop_visit_loads') }}
    group by all
)

select * from per_trip
where abs(ons - offs) > 1e-6 * greatest(ons, 1) or min_load < -1e-6 or abs(final_load) > 1e-6
