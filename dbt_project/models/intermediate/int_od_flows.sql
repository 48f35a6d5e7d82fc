{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Method steps 3-4: where the estimated boardings of each stop visit get off. Inferred
-- alightings give the distribution, from the most specific cell that has any:
--   1. the same trip and boarding stop (trip chaining on that very bus),
--   2. the same line, direction, boarding stop and time band that day,
--   3. the same line, direction and boarding stop that day,
--   4. otherwise spread evenly over the downstream stops.
-- Flows only go downstream, so loads are conserved (ons = offs), never negative, and zero at
-- the terminus by construction. One row per (trip, boarding position, alighting position).
with boardings as (
    select * from {{ ref('int_stop_visit_boardings') }}
    where boardings_estimated > 0 and {{ service_date_filter() }}
),

visits as (
    select
        service_date,
        trip_id,
        stop_position,
        stop_id
    from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
),

inferred as (
    select * from {{ ref('int_journey_stages_chained') }}
    where is_inferred and {{ service_date_filter() }}
),

level_trip as (
    select
        service_date,
        trip_id,
        board_position,
        alight_position,
        count(*) as n
    from inferred
    group by all
),

level_band as (
    select
        service_date,
        route_short_name,
        direction_id,
        time_band,
        board_stop_id,
        alight_stop_id,
        count(*) as n
    from inferred
    group by all
),

level_day as (
    select
        service_date,
        route_short_name,
        direction_id,
        board_stop_id,
        alight_stop_id,
        count(*) as n
    from inferred
    group by all
),

candidates as (
    select
        boardings.service_date,
        boardings.trip_id,
        boardings.stop_position as board_position,
        boardings.boardings_estimated,
        downstream.stop_position as alight_position,
        coalesce(level_trip.n, 0) as w_trip,
        coalesce(level_band.n, 0) as w_band,
        coalesce(level_day.n, 0) as w_day,
        1 as w_even
    from boardings
    inner join visits as downstream
        on boardings.service_date = downstream.service_date
            and boardings.trip_id = downstream.trip_id
            and boardings.stop_position < downstream.stop_position
    left join level_trip
        on boardings.service_date = level_trip.service_date
            and boardings.trip_id = level_trip.trip_id
            and boardings.stop_position = level_trip.board_position
            and downstream.stop_position = level_trip.alight_position
    left join level_band
        on boardings.service_date = level_band.service_date
            and boardings.route_short_name = level_band.route_short_name
            and boardings.direction_id = level_band.direction_id
            and boardings.time_band = level_band.time_band
            and boardings.stop_id = level_band.board_stop_id
            and downstream.stop_id = level_band.alight_stop_id
    left join level_day
        on boardings.service_date = level_day.service_date
            and boardings.route_short_name = level_day.route_short_name
            and boardings.direction_id = level_day.direction_id
            and boardings.stop_id = level_day.board_stop_id
            and downstream.stop_id = level_day.alight_stop_id
),

totals as (
    select
        *,
        sum(w_trip) over cell as s_trip,
        sum(w_band) over cell as s_band,
        sum(w_day) over cell as s_day,
        sum(w_even) over cell as s_even
    from candidates
    window cell as (partition by service_date, trip_id, board_position)
),

final as (
    select
        service_date,
        trip_id,
        board_position,
        alight_position,
        case
            when s_trip > 0 then 'trip'
            when s_band > 0 then 'line_band'
            when s_day > 0 then 'line_day'
            else 'even'
        end as distribution_level,
        boardings_estimated * case
            when s_trip > 0 then w_trip / s_trip
            when s_band > 0 then w_band / s_band
            when s_day > 0 then w_day / s_day
            else w_even / s_even
        end as passengers
    from totals
)

select * from final
where passengers > 0
{{ in_period_order('service_date') }}
