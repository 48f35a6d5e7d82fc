{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Origin-destination of journeys (transfers linked), from chained cards, expanded to all
-- boardings: each inferred journey counts for (estimated boardings / inferred boardings) of its
-- first trip. Stop level and zone level (dim_stops.zone_id). One row per (service_date,
-- origin_stop_id, destination_stop_id).
with stages as (
    select * from {{ ref('int_journey_stages_chained') }}
    where {{ service_date_filter() }}
),

journeys as (
    select
        service_date,
        fare_media_id,
        journey_of_day,
        arg_min(board_stop_id, stage_of_day) as origin_stop_id,
        arg_max(alight_stop_id, stage_of_day) as destination_stop_id,
        arg_min(trip_id, stage_of_day) as first_trip_id,
        count(*) as stages,
        bool_and(is_inferred) as is_complete
    from stages
    group by all
),

trip_expansion as (
    select
        boardings.service_date,
        boardings.trip_id,
        sum(boardings.boardings_estimated) / nullif(count(distinct stages.source_row), 0) as weight
    from {{ ref('int_stop_visit_boardings') }} as boardings
    left join stages
        on boardings.service_date = stages.service_date
            and boardings.trip_id = stages.trip_id
            and stages.is_inferred
    where {{ service_date_filter('boardings.service_date') }}
    group by all
),

weighted as (
    select
        journeys.*,
        coalesce(trip_expansion.weight, 1.0) as weight
    from journeys
    left join trip_expansion
        on journeys.service_date = trip_expansion.service_date
            and journeys.first_trip_id = trip_expansion.trip_id
    where journeys.is_complete
),

stops as (
    select
        stop_id,
        any_value(zone_id) as zone_id
    from {{ ref('dim_stops') }}
    group by all
),

final as (
    select
        weighted.service_date,
        weighted.origin_stop_id,
        weighted.destination_stop_id,
        origin.zone_id as origin_zone_id,
        destination.zone_id as destination_zone_id,
        count(*) as journeys_inferred,
        sum(weighted.weight) as journeys_estimated,
        avg(weighted.stages) as mean_stages
    from weighted
    left join stops as origin on weighted.origin_stop_id = origin.stop_id
    left join stops as destination on weighted.destination_stop_id = destination.stop_id
    group by all
)

select * from final
{{ in_period_order('service_date') }}
