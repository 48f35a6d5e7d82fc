{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Method steps 3-4: where the estimated boardings of each stop visit get off. Inferred
-- alightings give the distribution, from the most specific cell that has any:
--   1. the same trip and boarding stop (trip chaining on that very bus),
--   2. the same line, direction, boarding stop and time band that day,
--   3. the same line, direction and boarding stop that day,
--   4. otherwise spread evenly over the downstream stops.
-- Riders whose card did not chain (mostly a single boarding of the day; issue #31) are not sent
-- where the chained riders go as is: the visit's boardings are split between its chained and
-- unchained cards (riders without a validation follow the same mix), and the unchained part
-- follows the same cell reweighted by ride length, p_single(ride) / p_chained(ride) in stops,
-- learnt that day per time band from the single boardings whose alighting the card's own history
-- gives (alighting_method card_history) against the chained ones. Each band's distribution is
-- shrunk towards the day's, and the day's towards the chained riders' (single_rider_length_prior
-- pseudo-rides), so a band or a day with few single riders falls back to the chained
-- distribution rather than to noise.
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

stages as (
    select * from {{ ref('int_journey_stages_chained') }}
    where {{ service_date_filter() }}
),

inferred as (
    select * from stages
    where is_inferred
),

-- the cards that boarded at each visit: chained (alighting inferred) or not
visit_mix as (
    select
        service_date,
        trip_id,
        board_position,
        count(*) filter (where not is_inferred) / count(*) as unchained_share
    from stages
    group by all
),

-- ride lengths (stops) of chained riders and of single riders known by their history, per band
ride_counts as (
    select
        service_date,
        time_band,
        alight_position - board_position as ride,
        count(*) filter (where alighting_method is distinct from 'card_history') as n_chained,
        count(*) filter (where alighting_method = 'card_history') as n_single
    from inferred
    group by all
),

ride_day as (
    select
        service_date,
        ride,
        sum(n_chained) as n_chained,
        sum(n_single) as n_single
    from ride_counts
    group by all
),

ride_day_p as (
    select
        service_date,
        ride,
        n_chained / sum(n_chained) over day as p_chained,
        (n_single + {{ var('single_rider_length_prior') }} * n_chained / sum(n_chained) over day)
        / (sum(n_single) over day + {{ var('single_rider_length_prior') }}) as p_single
    from ride_day
    window day as (partition by service_date)
),

bands as (
    select
        service_date,
        time_band,
        sum(n_chained) as band_chained,
        sum(n_single) as band_single
    from ride_counts
    group by all
),

ride_weights as (
    select
        bands.service_date,
        bands.time_band,
        ride_day_p.ride,
        (coalesce(ride_counts.n_single, 0) + {{ var('single_rider_length_prior') }} * ride_day_p.p_single)
        / (bands.band_single + {{ var('single_rider_length_prior') }})
        / nullif(
            (coalesce(ride_counts.n_chained, 0) + {{ var('single_rider_length_prior') }} * ride_day_p.p_chained)
            / nullif(bands.band_chained + {{ var('single_rider_length_prior') }}, 0),
            0
        ) as ride_weight
    from bands
    inner join ride_day_p on bands.service_date = ride_day_p.service_date
    left join ride_counts
        on bands.service_date = ride_counts.service_date
            and bands.time_band = ride_counts.time_band
            and ride_day_p.ride = ride_counts.ride
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
        1 as w_even,
        coalesce(visit_mix.unchained_share, 0) as unchained_share,
        coalesce(ride_weights.ride_weight, 1) as ride_weight
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
    left join visit_mix
        on boardings.service_date = visit_mix.service_date
            and boardings.trip_id = visit_mix.trip_id
            and boardings.stop_position = visit_mix.board_position
    left join ride_weights
        on boardings.service_date = ride_weights.service_date
            and boardings.time_band = ride_weights.time_band
            and downstream.stop_position - boardings.stop_position = ride_weights.ride
),

totals as (
    select
        *,
        sum(w_trip) over cell as s_trip,
        sum(w_band) over cell as s_band,
        sum(w_day) over cell as s_day,
        sum(w_even) over cell as s_even,
        sum(w_trip * ride_weight) over cell as r_trip,
        sum(w_band * ride_weight) over cell as r_band,
        sum(w_day * ride_weight) over cell as r_day,
        sum(w_even * ride_weight) over cell as r_even
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
        boardings_estimated * (
            (1 - unchained_share) * case
                when s_trip > 0 then w_trip / s_trip
                when s_band > 0 then w_band / s_band
                when s_day > 0 then w_day / s_day
                else w_even / s_even
            end
            + unchained_share * case
                when r_trip > 0 then w_trip * ride_weight / r_trip
                when s_trip > 0 then w_trip / s_trip
                when r_band > 0 then w_band * ride_weight / r_band
                when s_band > 0 then w_band / s_band
                when r_day > 0 then w_day * ride_weight / r_day
                when s_day > 0 then w_day / s_day
                when r_even > 0 then w_even * ride_weight / r_even
                else w_even / s_even
            end
        ) as passengers
    from totals
)

select * from final
where passengers > 0
{{ in_period_order('service_date') }}
