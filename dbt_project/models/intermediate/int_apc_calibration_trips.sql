{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- The trips both surveyed (manual counts) and counted by an APC-equipped vehicle: the pairs the
-- APC correction is estimated from (int_stop_visit_boardings). Only the stops both counted are
-- compared. One row per (service_date, trip_id).
with surveyed as (
    select
        service_date,
        trip_id,
        stop_sequence,
        sum(boardings)::bigint as manual_boardings,
        sum(alightings)::bigint as manual_alightings
    from {{ ref('stg_survey__manual_counts') }}
    where is_valid and {{ service_date_filter() }}
    group by all
),

counted as (
    select * from {{ ref('stg_apc__passenger_counts') }}
    where {{ service_date_filter() }}
),

vehicles as (
    select
        vehicle_id,
        arg_max(model, { 'as_of': as_of_date, 'row': source_row }) as vehicle_model
    from {{ ref('stg_fleet__vehicles') }}
    group by vehicle_id
),

lines as (
    select distinct
        service_date,
        trip_id,
        route_short_name
    from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
),

paired as (
    select
        surveyed.service_date,
        surveyed.trip_id,
        any_value(counted.vehicle_id) as vehicle_id,
        count(*) as stops_compared,
        sum(surveyed.manual_boardings)::bigint as manual_boardings,
        sum(coalesce(counted.apc_boardings, 0))::bigint as apc_boardings,
        sum(surveyed.manual_alightings)::bigint as manual_alightings,
        sum(coalesce(counted.apc_alightings, 0))::bigint as apc_alightings
    from surveyed
    inner join counted
        on surveyed.service_date = counted.service_date
            and surveyed.trip_id = counted.trip_id
            and surveyed.stop_sequence = counted.stop_sequence
    group by surveyed.service_date, surveyed.trip_id
)

select
    paired.service_date,
    paired.trip_id,
    lines.route_short_name,
    paired.vehicle_id,
    vehicles.vehicle_model,
    paired.stops_compared,
    paired.manual_boardings,
    paired.apc_boardings,
    paired.manual_alightings,
    paired.apc_alightings
from paired
left join lines using (service_date, trip_id)
left join vehicles using (vehicle_id)
{{ in_period_order('service_date') }}
