{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Method step 3 (methods_and_kpis.md §1.4): boardings at each stop visit. On APC-equipped
-- trips, the corrected APC count (the trip's validations a floor for its total). Elsewhere,
-- validations / validation rate, the rate being measured on the same day's APC-equipped trips
-- of the same line, direction and time band (then line and day, then the network), clamped to
-- [min_validation_rate, max_validation_rate]: this corrects for fraud and riders who do not
-- validate, which validations alone cannot see. APC counters miss passengers: their counts are
-- first corrected by the ratio manual / APC counts on the trips both surveyed and counted over
-- the apc_calibration_window_days before (enquêtes de comptage, int_apc_calibration_trips), per
-- line when it has apc_calibration_min_trips such trips and a 95 % interval within
-- apc_calibration_max_halfwidth, else over the network on the same terms, else not at all;
-- each row says which (apc_correction_level) with the ratio's 95 % confidence interval.
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

-- the surveyed trips of the window before each date being built
calibration_pairs as (
    select
        days.service_date,
        pairs.route_short_name,
        pairs.manual_boardings,
        pairs.apc_boardings,
        pairs.manual_alightings,
        pairs.apc_alightings
    from (select distinct service_date from visits) as days
    inner join {{ ref('int_apc_calibration_trips') }} as pairs
        on days.service_date >= pairs.service_date
            and pairs.service_date > days.service_date - to_days({{ var('apc_calibration_window_days') }})
),

-- ratio estimators (manual / APC, summed over trips) with their standard error, the trips being
-- the sampled units: se(R) = sqrt(sum (y - R x)^2 / (n (n - 1))) / mean(x) (Cochran 1977, 6.9)
{%- set ratio_columns %}
        count(*) as trips,
        sum(manual_boardings)::double / nullif(sum(apc_boardings), 0) as ratio,
        sum(manual_alightings)::double / nullif(sum(apc_alightings), 0) as ratio_alightings,
        sqrt(
            list_sum(list_transform(
                list({ 'x': apc_boardings, 'y': manual_boardings }),
                u -> (u.y - sum(manual_boardings)::double / nullif(sum(apc_boardings), 0) * u.x) ^ 2
            ))
            / nullif(count(*) * (count(*) - 1), 0)
        ) / nullif(avg(apc_boardings), 0) as se
{%- endset %}
calibration_line as (
    select
        service_date,
        route_short_name,
        {{ ratio_columns }}
    from calibration_pairs
    group by service_date, route_short_name
),

calibration_network as (
    select
        service_date,
        {{ ratio_columns }}
    from calibration_pairs
    group by service_date
),

-- the most specific level with enough trips and a narrow enough interval: a few trips with few
-- passengers give a ratio of ghost counts, not a correction
calibration_ci as (
    select
        days.service_date,
        days.route_short_name,
        case
            when
                line.trips >= {{ var('apc_calibration_min_trips') }}
                and 1.96 * line.se <= {{ var('apc_calibration_max_halfwidth') }}
                then 'line'
            when
                network.trips >= {{ var('apc_calibration_min_trips') }}
                and 1.96 * network.se <= {{ var('apc_calibration_max_halfwidth') }}
                then 'network'
            else 'none'
        end as apc_correction_level,
        case apc_correction_level when 'line' then line.trips when 'network' then network.trips end
            as apc_calibration_trips,
        case apc_correction_level when 'line' then line.ratio when 'network' then network.ratio else 1.0 end
            as apc_correction,
        case apc_correction_level
            when 'line' then coalesce(line.ratio_alightings, 1.0)
            when 'network' then coalesce(network.ratio_alightings, 1.0)
            else 1.0
        end as apc_correction_alightings,
        case apc_correction_level when 'line' then line.se when 'network' then network.se end as apc_correction_se
    from (
        select distinct
            service_date,
            route_short_name
        from visits
    ) as days
    left join calibration_line as line using (service_date, route_short_name)
    left join calibration_network as network using (service_date)
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
        case when apc_trips.trip_id is not null then coalesce(apc.apc_alightings, 0) end as apc_alightings,
        calibration_ci.apc_correction,
        calibration_ci.apc_correction - 1.96 * calibration_ci.apc_correction_se as apc_correction_low,
        calibration_ci.apc_correction + 1.96 * calibration_ci.apc_correction_se as apc_correction_high,
        calibration_ci.apc_correction_level,
        calibration_ci.apc_calibration_trips,
        case
            when apc_trips.trip_id is not null
                then coalesce(apc.apc_boardings, 0) * calibration_ci.apc_correction
        end as apc_boardings_corrected,
        case
            when apc_trips.trip_id is not null
                then coalesce(apc.apc_alightings, 0) * calibration_ci.apc_correction_alightings
        end as apc_alightings_corrected
    from visits
    left join validations using (service_date, trip_id, stop_position)
    left join apc_trips using (service_date, trip_id)
    left join apc
        on visits.service_date = apc.service_date
            and visits.trip_id = apc.trip_id
            and visits.stop_sequence = apc.stop_sequence
    left join calibration_ci
        on visits.service_date = calibration_ci.service_date
            and visits.route_short_name = calibration_ci.route_short_name
),

-- validation rate = validations / APC boardings on equipped trips, by decreasing detail
rates as (
    select
        *,
        sum(validations) filter (where has_apc)
            over (partition by service_date, route_short_name, direction_id, time_band)
        / nullif(
            sum(apc_boardings_corrected) filter (where has_apc)
                over (partition by service_date, route_short_name, direction_id, time_band),
            0
        )
            as rate_band,
        sum(validations) filter (where has_apc) over (partition by service_date, route_short_name)
        / nullif(
            sum(apc_boardings_corrected) filter (where has_apc) over (partition by service_date, route_short_name), 0
        )
            as rate_line,
        sum(validations) filter (where has_apc) over (partition by service_date)
        / nullif(sum(apc_boardings_corrected) filter (where has_apc) over (partition by service_date), 0)
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

-- On an APC trip each stop takes the larger of its corrected count and its validations (both
-- are evidence of who boarded there), then the trip is scaled back to the larger of its counted
-- and validated totals: flooring stop by stop alone added every count's noise and every
-- validation's placement error upwards (measured: +3.3 % on the APC trips of 5 simulated days)
trip_floor as (
    select
        *,
        case when not is_last_stop then greatest(apc_boardings_corrected, validations) end as stop_floor,
        sum(case when not is_last_stop then greatest(apc_boardings_corrected, validations) end) over trip
            as trip_floored,
        greatest(
            sum(case when not is_last_stop then apc_boardings_corrected end) over trip,
            sum(case when not is_last_stop then validations end) over trip
        ) as trip_total
    from capacity
    window trip as (partition by service_date, trip_id)
),

final as (
    select
        * exclude (stop_floor, trip_floored, trip_total),
        case
            when is_last_stop then 0.0  -- nobody rides on from a terminus
            when has_apc and trip_floored > 0 then stop_floor * trip_total / trip_floored
            when has_apc then 0.0
            else validations / validation_rate
        end as boardings_estimated,
        case when has_apc then 'apc' else 'validations_expanded' end as boardings_method
    from trip_floor
)

select * from final
{{ in_period_order('service_date') }}
