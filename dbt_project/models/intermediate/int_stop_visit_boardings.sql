{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Method step 3 (methods_and_kpis.md §1.4): boardings at each stop visit. On APC-equipped
-- trips, the APC count (never fewer than the validations located there). Elsewhere,
-- validations / validation rate, the rate being measured on the same day's APC-equipped trips
-- of the same line, direction and time band (then line and day, then the network), clamped to
-- [min_validation_rate, max_validation_rate]: this corrects for fraud and riders who do not
-- validate, which validations alone cannot see.
with visits as (
    select * from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
),

validations as (
    select
        service_date,
        trip_id,
        board_position as stop_position,
        count(*) as validations
    from {{ ref('int_fare_transactions_located') }}
    where is_located and not is_duplicate and {{ service_date_filter() }}
    group by all
),

apc as (
    select * from {{ ref('stg_apc__passenger_counts') }}
    where {{ service_date_filter() }}
),

apc_trips as (
    select distinct
        service_date,
        trip_id
    from apc
),

vehicles as (
    select * from {{ ref('stg_fleet__vehicles') }}
),

joined as (
    select
        visits.service_date,
        visits.trip_id,
        visits.stop_position,
        visits.stop_sequence,
        visits.stop_id,
        visits.route_short_name,
        visits.direction_id,
        visits.time_band,
        visits.vehicle_id,
        visits.is_last_stop,
        coalesce(validations.validations, 0) as validations,
        apc_trips.trip_id is not null as has_apc,
        case when apc_trips.trip_id is not null then coalesce(apc.apc_boardings, 0) end as apc_boardings,
        case when apc_trips.trip_id is not null then coalesce(apc.apc_alightings, 0) end as apc_alightings
    from visits
    left join validations using (service_date, trip_id, stop_position)
    left join apc_trips using (service_date, trip_id)
    left join apc
        on visits.service_date = apc.service_date
            and visits.trip_id = apc.trip_id
            and visits.stop_sequence = apc.stop_sequence
),

-- validation rate = validations / APC boardings on equipped trips, by decreasing detail
rates as (
    select
        *,
        sum(validations) filter (where has_apc)
            over (partition by service_date, route_short_name, direction_id, time_band)
        / nullif(
            sum(apc_boardings) filter (where has_apc)
                over (partition by service_date, route_short_name, direction_id, time_band),
            0
        )
            as rate_band,
        sum(validations) filter (where has_apc) over (partition by service_date, route_short_name)
        / nullif(sum(apc_boardings) filter (where has_apc) over (partition by service_date, route_short_name), 0)
            as rate_line,
        sum(validations) filter (where has_apc) over (partition by service_date)
        / nullif(sum(apc_boardings) filter (where has_apc) over (partition by service_date), 0)
            as rate_network
    from joined
),

capacity as (
    select
        rates.*,
        least(
            greatest(coalesce(rate_band, rate_line, rate_network, 1.0), {{ var('min_validation_rate') }}),
            {{ var('max_validation_rate') }}
        ) as validation_rate,
        case
            when rate_band is not null then 'line_direction_band'
            when rate_line is not null then 'line'
            when rate_network is not null then 'network'
            else 'none'
        end as validation_rate_level,
        vehicles.capacity as vehicle_capacity
    from rates
    left join vehicles
        on rates.vehicle_id = vehicles.vehicle_id
    qualify row_number() over (
            partition by rates.service_date, rates.trip_id, rates.stop_position
            order by vehicles.as_of_date desc nulls last, vehicles.source_row desc nulls last
        ) = 1
),

final as (
    select
        *,
        case
            when is_last_stop then 0.0  -- nobody rides on from a terminus
            when has_apc then greatest(apc_boardings, validations)::double
            else validations / validation_rate
        end as boardings_estimated,
        case when has_apc then 'apc' else 'validations_expanded' end as boardings_method
    from capacity
)

select * from final
{{ in_period_order('service_date') }}
