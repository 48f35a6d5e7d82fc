{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Method step 2 (methods_and_kpis.md §1.1, Barry et al. 2002; ODX rules): a card's day of
-- located boardings, in order. Each boarding's alighting is the downstream stop of the boarded
-- trip nearest its *target*: the card's next boarding, or for the day's last one its first
-- boarding. Rejected (no alighting inferred) when: the card validated once that day; the target
-- is the origin (within chaining_min_origin_target_m); no downstream stop is within
-- chaining_max_walk_m of the target; or the rider would move away from it (the best downstream
-- stop is no nearer the target than the origin). A next boarding within transfer_window_min of
-- the inferred alighting, within walking distance, on another line (or counted a transfer by
-- the validator) continues the same journey. Method step 5: a card's single boarding of the day
-- takes its usual alighting from its own history (alighting_method card_history).
with boardings as (
    select * from {{ ref('int_fare_transactions_located') }}
    where is_located and not is_duplicate and {{ service_date_filter() }}
),

visits as (
    select
        service_date,
        trip_id,
        stop_position,
        stop_id,
        stop_sequence,
        actual_arrival_at,
        stop_lat,
        stop_lon
    from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
),

ordered as (
    select
        *,
        row_number() over card_day as stage_of_day,
        count(*) over card_day_all as boardings_of_day,
        lead(board_stop_id) over card_day as next_stop_id,
        lead(board_lat) over card_day as next_lat,
        lead(board_lon) over card_day as next_lon,
        lead(validated_at) over card_day as next_validated_at,
        lead(route_short_name) over card_day as next_route_short_name,
        lead(fare_action) over card_day as next_fare_action,
        first_value(board_stop_id) over card_day_all as first_stop_id,
        first_value(board_lat) over card_day_all as first_lat,
        first_value(board_lon) over card_day_all as first_lon
    from boardings
    window
        card_day as (partition by service_date, fare_media_id order by validated_at, source_sha256, source_row),
        card_day_all as (
            partition by service_date, fare_media_id order by validated_at, source_sha256, source_row
            rows between unbounded preceding and unbounded following
        )
),

targets as (
    select
        *,
        next_stop_id is null as is_last_of_day,
        coalesce(next_stop_id, first_stop_id) as target_stop_id,
        coalesce(next_lat, first_lat) as target_lat,
        coalesce(next_lon, first_lon) as target_lon,
        {{ haversine_m('board_lat', 'board_lon', 'coalesce(next_lat, first_lat)', 'coalesce(next_lon, first_lon)') }}
            as origin_to_target_m
    from ordered
),

candidates as (
    select
        targets.service_date,
        targets.source_sha256,
        targets.source_row,
        visits.stop_position as alight_position,
        visits.stop_id as alight_stop_id,
        visits.stop_sequence as alight_stop_sequence,
        visits.actual_arrival_at as alighted_at,
        visits.stop_lat as alight_lat,
        visits.stop_lon as alight_lon,
        {{ haversine_m('visits.stop_lat', 'visits.stop_lon', 'targets.target_lat', 'targets.target_lon') }}
            as alight_to_target_m
    from targets
    inner join visits
        on targets.service_date = visits.service_date
            and targets.trip_id = visits.trip_id
            and targets.board_position < visits.stop_position
    where targets.boardings_of_day > 1
        -- one gets off before boarding again
        and (targets.is_last_of_day or visits.actual_arrival_at <= targets.next_validated_at)
),

-- the downstream stop nearest the target (ties: the earlier stop), by one hash aggregate rather
-- than a window sort over every candidate (profiled: the slowest step of a metro night)
nearest as (
    select
        service_date,
        source_sha256,
        source_row,
        arg_min(
            {
                'alight_position': alight_position, 'alight_stop_id': alight_stop_id,
                'alight_stop_sequence': alight_stop_sequence, 'alighted_at': alighted_at,
                'alight_lat': alight_lat, 'alight_lon': alight_lon, 'alight_to_target_m': alight_to_target_m
            },
            { 'd': alight_to_target_m, 'p': alight_position }
        ) as best
    from candidates
    group by service_date, source_sha256, source_row
),

judged as (
    select
        targets.*,
        nearest.best.alight_position,
        nearest.best.alight_stop_id,
        nearest.best.alight_stop_sequence,
        nearest.best.alighted_at,
        nearest.best.alight_lat,
        nearest.best.alight_lon,
        nearest.best.alight_to_target_m,
        case
            when targets.fare_media_type = 'Ticket papier' then 'paper_ticket'
            when targets.boardings_of_day = 1 then 'single_boarding'
            when targets.origin_to_target_m < {{ var('chaining_min_origin_target_m') }} then 'target_is_origin'
            when nearest.best.alight_position is null then 'no_stop_before_next_boarding'
            when nearest.best.alight_to_target_m > {{ var('chaining_max_walk_m') }} then 'too_far_from_target'
            when nearest.best.alight_to_target_m >= targets.origin_to_target_m then 'moving_away'
        end as not_inferred_reason
    from targets
    left join nearest using (service_date, source_sha256, source_row)
),

-- Method step 5 (methods_and_kpis.md §1.1; He & Trépanier 2015): the card's own history. Its
-- alightings inferred by chaining after boarding at the same stop, on the history_lookback_days
-- days before (within its pseudonym period: a pseudonym changes at each rotation). Only chained
-- alightings make a history, so a history never feeds on itself, and an incremental night (the
-- earlier days read back from this model) equals a full build (the earlier days of the batch).
history as (
    {%- if is_incremental() and var('service_dates', []) | length > 0 %}
        {%- set first = var('service_dates') | sort | first %}
        select
            service_date,
            fare_media_id,
            board_stop_id,
            alight_stop_id
        from {{ this }}
        where
            is_inferred
            and alight_to_target_m is not null
            and service_date < date '{{ first }}'
            -- date - integer is a date: a bound on the column itself, so DuckDB skips the row groups
            -- of older dates (date - to_days(n) is a timestamp: the column was cast, the year scanned)
            and service_date >= date '{{ first }}' - {{ var('history_lookback_days') }}
        union all
    {%- endif %}
    select
        service_date,
        fare_media_id,
        board_stop_id,
        alight_stop_id
    from judged
    where not_inferred_reason is null
),

-- for each single boarding of a day, the stops its card alighted at after boarding at this stop
-- on earlier days, how often, and when last; then those of them downstream on today's trip and
-- reached before the card's next boarding. In two steps, the card's history first (issue #32):
-- written as one three-way join, the planner joined the history to the day's visits on the stop
-- alone before the card, every alighting of the history against every visit of its stop, which
-- grows as the square of the dates built at once (three quarter-metro days: 8 GB of memory, then
-- out of a 4 GB temp budget; the same rows in 7 s and 2.9 GB this way, identical on two days).
recalled_stops as (
    select
        judged.service_date,
        judged.source_sha256,
        judged.source_row,
        judged.trip_id,
        judged.board_position,
        judged.is_last_of_day,
        judged.next_validated_at,
        history.alight_stop_id,
        count(*) as times,
        max(history.service_date) as last_date
    from judged
    inner join history
        on judged.fare_media_id = history.fare_media_id
            and judged.board_stop_id = history.board_stop_id
            and judged.service_date > history.service_date
            and history.service_date >= judged.service_date - to_days({{ var('history_lookback_days') }})
    where
        -- a day's single boarding only: when the chain was tried and rejected (too far, moving
        -- away), the day's own evidence says the card went elsewhere (measured: 0-10 % right)
        judged.not_inferred_reason = 'single_boarding'
    group by all
    having count(*) >= {{ var('history_min_times') }}
),

recalled as (
    select
        recalled_stops.service_date,
        recalled_stops.source_sha256,
        recalled_stops.source_row,
        visits.stop_position,
        visits.stop_id,
        visits.stop_sequence,
        visits.actual_arrival_at,
        visits.stop_lat,
        visits.stop_lon,
        recalled_stops.times,
        recalled_stops.last_date
    from recalled_stops
    inner join visits
        on recalled_stops.service_date = visits.service_date
            and recalled_stops.trip_id = visits.trip_id
            and recalled_stops.alight_stop_id = visits.stop_id
            and recalled_stops.board_position < visits.stop_position
    where recalled_stops.is_last_of_day or visits.actual_arrival_at <= recalled_stops.next_validated_at
),

-- the usual one: the most frequent, then the most recent, then the earlier stop of the trip
usual as (
    select
        service_date,
        source_sha256,
        source_row,
        arg_min(
            {
                'alight_position': stop_position, 'alight_stop_id': stop_id, 'alight_stop_sequence': stop_sequence,
                'alighted_at': actual_arrival_at, 'alight_lat': stop_lat, 'alight_lon': stop_lon
            },
            { 'n': -times, 'last': -epoch(last_date), 'p': stop_position }
        ) as best
    from recalled
    group by service_date, source_sha256, source_row
),

completed as (
    select
        judged.* exclude (
            alight_position, alight_stop_id, alight_stop_sequence, alighted_at, alight_lat, alight_lon,
            alight_to_target_m, not_inferred_reason
        ),
        coalesce(judged.alight_position, usual.best.alight_position) as alight_position,
        coalesce(judged.alight_stop_id, usual.best.alight_stop_id) as alight_stop_id,
        coalesce(judged.alight_stop_sequence, usual.best.alight_stop_sequence) as alight_stop_sequence,
        coalesce(judged.alighted_at, usual.best.alighted_at) as alighted_at,
        coalesce(judged.alight_lat, usual.best.alight_lat) as alight_lat,
        coalesce(judged.alight_lon, usual.best.alight_lon) as alight_lon,
        -- the distance to a chaining target; a recalled alighting has no target
        case when usual.best is null then judged.alight_to_target_m end as alight_to_target_m,
        case when usual.best is null then judged.not_inferred_reason end as not_inferred_reason,
        case
            when judged.not_inferred_reason is null then 'trip_chaining'
            when usual.best is not null then 'card_history'
        end as alighting_method
    from judged
    left join usual using (service_date, source_sha256, source_row)
),

linked as (
    select
        *,
        not_inferred_reason is null as is_inferred,
        not_inferred_reason is null
        and not is_last_of_day
        and (
            next_fare_action = 'transfer'
            or (
                next_validated_at - alighted_at <= to_minutes({{ var('transfer_window_min') }})
                and {{ haversine_m('alight_lat', 'alight_lon', 'next_lat', 'next_lon') }}
                <= {{ var('chaining_max_walk_m') }}
                and next_route_short_name != route_short_name
            )
        ) as next_is_transfer
    from completed
),

continued as (
    select
        *,
        coalesce(lag(next_is_transfer) over card_day, false) as continues_journey
    from linked
    window card_day as (partition by service_date, fare_media_id order by validated_at, source_sha256, source_row)
),

journeys as (
    select
        *,
        sum(case when continues_journey then 0 else 1 end) over card_day as journey_of_day
    from continued
    window card_day as (partition by service_date, fare_media_id order by validated_at, source_sha256, source_row)
),

final as (
    select
        service_date,
        source_sha256,
        source_row,
        fare_media_id,
        fare_media_type,
        fare_product_id,
        stage_of_day,
        boardings_of_day,
        journey_of_day,
        next_is_transfer,
        trip_id,
        route_short_name,
        direction_id,
        time_band,
        board_position,
        board_stop_id,
        board_stop_sequence,
        boarded_at,
        validated_at,
        is_last_of_day,
        target_stop_id,
        origin_to_target_m,
        is_inferred,
        not_inferred_reason,
        alighting_method,
        case when is_inferred then alight_position end as alight_position,
        case when is_inferred then alight_stop_id end as alight_stop_id,
        case when is_inferred then alight_stop_sequence end as alight_stop_sequence,
        case when is_inferred then alighted_at end as alighted_at,
        case when is_inferred then alight_to_target_m end as alight_to_target_m
    from journeys
)

select * from final
{{ in_period_order('service_date') }}
