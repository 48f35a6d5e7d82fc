{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Method step 3 (methods_and_kpis.md §1.4): boardings at each stop visit. On APC-equipped
-- trips, the corrected APC count (the trip's validations a floor for its total). Elsewhere,
-- validations / validation rate, the rate being measured on the same day's surveyed and
-- APC-equipped trips of the same line, direction and time band, else line and direction, else line, else network,
-- each only on enough counted trips with a narrow enough interval (see rates below), clamped to
-- [min_validation_rate, max_validation_rate]: this corrects for fraud and riders who do not
-- validate, which validations alone cannot see. APC counters miss passengers: their counts are
-- first corrected by the ratio manual / APC counts on the trips both surveyed and counted over
-- the apc_calibration_window_days before (enquêtes de comptage, int_apc_calibration_trips), per
-- line when it has apc_calibration_min_trips such trips and a 95 % interval within
-- apc_calibration_max_halfwidth, else over the network on the same terms, else by rate comparison
-- (the validation rate of the counted trips over that of the surveyed trips, int_counted_trips),
-- else not at all; each row says which (apc_correction_level) with its 95 % confidence interval.
with visits as (
    select * from {{ ref('int_stop_visits_enriched') }}
    where {{ service_date_filter() }}
),

validations as (
    -- depends_on: {{ ref('int_fare_transactions_located') }}
    {{ validations_per_stop_visit() }}
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
        {{ ratio_se('manual_boardings', 'apc_boardings') }} as se
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

-- Where too few trips were both surveyed and counted, the counters are calibrated by comparing
-- rates (issue #31): validations / APC boardings on the counted trips over validations / manual
-- boardings on the surveyed trips, both over the window. Validating is the riders' behaviour,
-- not the vehicle's, so the two rates differ by the counters' error alone: their quotient is the
-- factor manual / APC, with no trip needing both (on the NYC excerpt's 3 days: 0.985 against a
-- true 0.989; a survey campaign and the APC vehicles seldom meet). The two samples are disjoint
-- (a trip both surveyed and counted is a surveyed unit), so the quotient's relative variance is
-- the sum of theirs (delta method). Alightings, which no validation sees, take the same factor.
comparison_units as (
    select
        days.service_date,
        units.*
    from (select distinct service_date from visits) as days
    inner join {{ ref('int_counted_trips') }} as units
        on days.service_date >= units.service_date
            and units.service_date > days.service_date - to_days({{ var('apc_calibration_window_days') }})
),

comparison_counted as (
    select
        service_date,
        count(*) as trips,
        sum(counted_validations)::double / nullif(sum(apc_boardings), 0) as rate,
        {{ ratio_se('counted_validations', 'apc_boardings') }} as se
    from comparison_units
    where has_apc and not is_surveyed
    group by service_date
),

comparison_surveyed as (
    select
        service_date,
        count(*) as trips,
        sum(surveyed_validations)::double / nullif(sum(manual_boardings), 0) as rate,
        {{ ratio_se('surveyed_validations', 'manual_boardings') }} as se
    from comparison_units
    where is_surveyed
    group by service_date
),

calibration_comparison as (
    select
        service_date,
        counted.trips + surveyed.trips as trips,
        least(counted.trips, surveyed.trips) as trips_each,
        counted.rate / nullif(surveyed.rate, 0) as ratio,
        counted.rate / nullif(surveyed.rate, 0)
        * sqrt((counted.se / nullif(counted.rate, 0)) ^ 2 + (surveyed.se / nullif(surveyed.rate, 0)) ^ 2) as se
    from comparison_counted as counted
    inner join comparison_surveyed as surveyed using (service_date)
),

-- the most specific level with enough trips and a narrow enough interval: a few trips with few
-- passengers give a ratio of ghost counts, not a correction. The interval is held to the network
-- boardings' tolerance (+/- 0.02): a band's rate errs for its band, but the correction's error
-- passes whole into every count and, through the validation rate, into every boarding estimated.
-- At +/- 0.10 a factor of 0.935 from 20 trips carrying 174 passengers (true 0.989) took the NYC
-- excerpt's network boardings to -2.5 %.
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
            when
                comparison.trips_each >= {{ var('apc_calibration_min_trips') }}
                and 1.96 * comparison.se <= {{ var('apc_calibration_max_halfwidth') }}
                then 'rate_comparison'
            else 'none'
        end as apc_correction_level,
        case apc_correction_level
            when 'line' then line.trips
            when 'network' then network.trips
            when 'rate_comparison' then comparison.trips
        end as apc_calibration_trips,
        case apc_correction_level
            when 'line' then line.ratio
            when 'network' then network.ratio
            when 'rate_comparison' then comparison.ratio
            else 1.0
        end as apc_correction,
        case apc_correction_level
            when 'line' then coalesce(line.ratio_alightings, 1.0)
            when 'network' then coalesce(network.ratio_alightings, 1.0)
            when 'rate_comparison' then comparison.ratio
            else 1.0
        end as apc_correction_alightings,
        case apc_correction_level
            when 'line' then line.se
            when 'network' then network.se
            when 'rate_comparison' then comparison.se
        end as apc_correction_se
    from (
        select distinct
            service_date,
            route_short_name
        from visits
    ) as days
    left join calibration_line as line using (service_date, route_short_name)
    left join calibration_network as network using (service_date)
    left join calibration_comparison as comparison using (service_date)
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

-- validation rate = validations / counted boardings on the day's surveyed and equipped trips, at the
-- most detailed level that rests on enough of them (issue #31): line x direction x time band,
-- then line x direction, then line, each taken only with at least validation_rate_min_trips
-- counted trips and a 95 % interval no wider than +/- validation_rate_max_halfwidth -- the APC
-- calibration's terms -- else the network, on whatever the day counted (the last resort: no
-- wider sample that day; on a small network with a few counted trips, rate 1.0 instead measured
-- worse: -8.1 % boardings against -4.5 % on the Finistère ferries). A band of three counted trips
-- once gave 0.49 and doubled a trip's 182 validations while its line had plenty. The counted trips
-- are the sampled units of a ratio estimator (Cochran 1977, 6.9).
-- The surveyors' counts are units too, and the better ones (issue #31): a surveyed trip's
-- boardings are counted by hand at the stops surveyed (a surveyor misses about 1 %, a counter
-- several; §1.5), so a trip both surveyed and counted is a unit by its survey, and the rate no
-- longer rests on the counters' under-count alone where no calibration corrects it yet.
surveyed as (
    select
        service_date,
        trip_id,
        stop_sequence,
        sum(boardings)::double as manual_boardings
    from {{ ref('stg_survey__manual_counts') }}
    where is_valid and {{ service_date_filter() }}
    group by all
),

rate_units as (
    select
        joined.service_date,
        joined.route_short_name,
        joined.direction_id,
        joined.time_band,
        joined.trip_id,
        sum(joined.validations)::double as v,
        sum(surveyed.manual_boardings) as b
    from joined
    inner join surveyed
        on joined.service_date = surveyed.service_date
            and joined.trip_id = surveyed.trip_id
            and joined.stop_sequence = surveyed.stop_sequence
    group by all
    union all
    select
        service_date,
        route_short_name,
        direction_id,
        time_band,
        trip_id,
        sum(validations)::double as v,
        sum(apc_boardings_corrected)::double as b
    from joined
    where
        has_apc
        and not exists (
            select 1 from surveyed
            where surveyed.service_date = joined.service_date and surveyed.trip_id = joined.trip_id
        )
    group by all
),

rate_units_trip as (
    select
        service_date,
        route_short_name,
        direction_id,
        trip_id,
        sum(v) as v,
        sum(b) as b
    from rate_units
    group by all
),

{% set rate_columns %}
        count(distinct trip_id) as trips,
        sum(v) / nullif(sum(b), 0) as rate,
        1.96 * {{ ratio_se('v', 'b') }} as halfwidth
{%- endset %}
rate_band as (
    select
        service_date,
        route_short_name,
        direction_id,
        time_band,
        {{ rate_columns }}
    from rate_units
    group by service_date, route_short_name, direction_id, time_band
),

rate_direction as (
    select
        service_date,
        route_short_name,
        direction_id,
        {{ rate_columns }}
    from rate_units_trip
    group by service_date, route_short_name, direction_id
),

rate_line as (
    select
        service_date,
        route_short_name,
        {{ rate_columns }}
    from rate_units_trip
    group by service_date, route_short_name
),

rate_network as (
    select
        service_date,
        {{ rate_columns }}
    from rate_units_trip
    group by service_date
),

-- A day whose own counted trips are too few for the network's rate (a small network: the
-- Finistère ferries count 5 to 8 trips a day) takes the network's over the
-- validation_rate_window_days before, on days of the same day type (riders differ between a
-- weekday and a Sunday), each counted trip corrected by the factor of the date being built.
-- A trip-day is a unit (a trip id runs every day).
rate_window_units as (
    select
        days.service_date,
        case when units.is_surveyed then units.surveyed_validations else units.counted_validations end::double
            as v,
        case
            when units.is_surveyed then units.manual_boardings
            else units.apc_boardings * coalesce(calibration_ci.apc_correction, 1.0)
        end::double as b
    from (select distinct service_date from visits) as days
    inner join {{ ref('int_calendar_days') }} as day_calendar
        on days.service_date = day_calendar.service_date
    inner join {{ ref('int_counted_trips') }} as units
        on days.service_date >= units.service_date
            and units.service_date > days.service_date - to_days({{ var('validation_rate_window_days') }})
    inner join {{ ref('int_calendar_days') }} as unit_calendar
        on units.service_date = unit_calendar.service_date
            and day_calendar.day_type = unit_calendar.day_type
    left join calibration_ci
        on days.service_date = calibration_ci.service_date
            and units.route_short_name = calibration_ci.route_short_name
),

rate_network_window as (
    select
        service_date,
        count(*) as trips,
        sum(v) / nullif(sum(b), 0) as rate,
        1.96 * {{ ratio_se('v', 'b') }} as halfwidth
    from rate_window_units
    group by service_date
),

{% set enough = "trips >= " ~ var('validation_rate_min_trips')
    ~ " and {0}.halfwidth <= " ~ var('validation_rate_max_halfwidth') %}
rates as (
    select
        joined.*,
        case
            when band.{{ enough.format('band') }} then 'line_direction_band'
            when direction.{{ enough.format('direction') }} then 'line_direction'
            when line.{{ enough.format('line') }} then 'line'
            when network.{{ enough.format('network') }} then 'network'
            when network_window.{{ enough.format('network_window') }} then 'network_window'
            when network.trips > 0 then 'network'
            else 'none'
        end as validation_rate_level,
        case validation_rate_level
            when 'line_direction_band' then band.rate
            when 'line_direction' then direction.rate
            when 'line' then line.rate
            when 'network' then network.rate
            when 'network_window' then network_window.rate
        end as rate_measured,
        case validation_rate_level
            when 'line_direction_band' then band.trips
            when 'line_direction' then direction.trips
            when 'line' then line.trips
            when 'network' then network.trips
            when 'network_window' then network_window.trips
        end as validation_rate_trips
    from joined
    left join rate_band as band
        on joined.service_date = band.service_date
            and joined.route_short_name = band.route_short_name
            and joined.direction_id is not distinct from band.direction_id
            and joined.time_band = band.time_band
    left join rate_direction as direction
        on joined.service_date = direction.service_date
            and joined.route_short_name = direction.route_short_name
            and joined.direction_id is not distinct from direction.direction_id
    left join rate_line as line
        on joined.service_date = line.service_date
            and joined.route_short_name = line.route_short_name
    left join rate_network as network
        on joined.service_date = network.service_date
    left join rate_network_window as network_window
        on joined.service_date = network_window.service_date
),

capacity as (
    select
        rates.*,
        least(
            greatest(coalesce(rate_measured, 1.0), {{ var('min_validation_rate') }}),
            {{ var('max_validation_rate') }}
        ) as validation_rate,
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
        * exclude (stop_floor, trip_floored, trip_total, rate_measured),
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
