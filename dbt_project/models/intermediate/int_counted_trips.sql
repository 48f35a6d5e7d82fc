{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Every trip surveyed (manual counts) or counted by an APC-equipped vehicle, with its validations
-- where it was counted: the units of the APC correction by rate comparison
-- (int_stop_visit_boardings), which needs no trip to be both surveyed and counted. A surveyed
-- trip's validations and manual boardings are summed over the stops surveyed; a counted trip's
-- validations and raw APC boardings over its stops but the last (nobody boards at a terminus; a
-- counter's ghost count there is not a boarding). One row per (service_date, trip_id).
with visits as (
    select
        service_date,
        trip_id,
        stop_position,
        stop_sequence,
        route_short_name,
        is_last_stop
    from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
),

validations as (
    -- depends_on: {{ ref('int_fare_transactions_located') }}
    {{ validations_per_stop_visit() }}
),

surveyed as (
    select
        service_date,
        trip_id,
        stop_sequence,
        sum(boardings)::bigint as manual_boardings
    from {{ ref('stg_survey__manual_counts') }}
    where is_valid and {{ service_date_filter() }}
    group by all
),

counted as (
    select
        service_date,
        trip_id,
        stop_sequence,
        sum(apc_boardings)::bigint as apc_boardings
    from {{ ref('stg_apc__passenger_counts') }}
    where {{ service_date_filter() }}
    group by all
),

trips as (
    select
        service_date,
        trip_id,
        bool_or(source = 'survey') as is_surveyed,
        bool_or(source = 'apc') as has_apc
    from (
        select distinct
            service_date,
            trip_id,
            'survey' as source
        from surveyed
        union all
        select distinct
            service_date,
            trip_id,
            'apc' as source
        from counted
    ) as sources
    group by all
),

per_visit as (
    select
        visits.service_date,
        visits.trip_id,
        visits.route_short_name,
        visits.is_last_stop,
        trips.is_surveyed,
        trips.has_apc,
        surveyed.manual_boardings,
        coalesce(validations.validations, 0) as validations,
        coalesce(counted.apc_boardings, 0) as apc_boardings
    from visits
    inner join trips using (service_date, trip_id)
    left join validations using (service_date, trip_id, stop_position)
    left join surveyed using (service_date, trip_id, stop_sequence)
    left join counted using (service_date, trip_id, stop_sequence)
)

select
    service_date,
    trip_id,
    any_value(route_short_name) as route_short_name,
    bool_or(is_surveyed) as is_surveyed,
    bool_or(has_apc) as has_apc,
    coalesce(sum(validations) filter (where manual_boardings is not null), 0)::bigint
        as surveyed_validations,
    case when bool_or(is_surveyed) then coalesce(sum(manual_boardings), 0) end::bigint as manual_boardings,
    coalesce(sum(validations) filter (where not is_last_stop), 0)::bigint as counted_validations,
    case
        when bool_or(has_apc) then coalesce(sum(apc_boardings) filter (where not is_last_stop), 0)
    end::bigint as apc_boardings
from per_visit
group by service_date, trip_id
{{ in_period_order('service_date') }}
