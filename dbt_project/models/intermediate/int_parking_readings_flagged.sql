{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Every reading of a known car park with its anomaly, if any: invalid at ingestion (above
-- capacity, negative places, places that do not add up), or a stuck sensor (the same value,
-- neither empty nor full, for parking_stuck_readings daytime readings in a row of one service
-- day, with no entries or exits recorded). Out-of-scope rows (bike stations, unknown car parks)
-- are left out. One row per reading. A day's flags depend on that day's readings only (runs are
-- counted within the daytime of a service day: the readings of a car park closed at night, the
-- same value for hours, are no evidence of a stuck sensor), so a night rebuilds its dates alone.
with readings as (
    select
        *,
        hour({{ local_ts('observed_at') }}) as local_hour
    from {{ ref('stg_parking__occupancy') }}
    where facility_id is not null
        and not coalesce(invalid_reason like 'out of scope%', false)
        and {{ service_date_filter() }}
    -- one reading per car park and instant (a feed may repeat a car park under two names)
    qualify row_number() over (
            partition by operator, facility_id, observed_at order by is_valid desc, source_sha256 asc, source_row asc
        ) = 1
),

daytime_runs as (
    select
        operator,
        facility_id,
        observed_at,
        service_date,
        -- a new run starts whenever the value changes
        sum(case when occupied is distinct from prev_occupied then 1 else 0 end) over facility_day as run_id
    from (
        select
            *,
            lag(occupied) over (partition by operator, facility_id, service_date order by observed_at) as prev_occupied
        from readings
        where local_hour between 7 and 19
    ) as with_previous
    window facility_day as (partition by operator, facility_id, service_date order by observed_at)
),

run_lengths as (
    select
        operator,
        facility_id,
        observed_at,
        count(*) over (partition by operator, facility_id, service_date, run_id) as run_length
    from daytime_runs
),

sized as (
    select
        readings.*,
        run_lengths.run_length
    from readings
    left join run_lengths
        on readings.operator = run_lengths.operator
            and readings.facility_id = run_lengths.facility_id
            and readings.observed_at = run_lengths.observed_at
),

final as (
    select
        operator,
        service_date,
        facility_id,
        facility_name,
        observed_at,
        local_hour,
        capacity,
        occupied,
        free,
        entries,
        exits,
        case
            when not is_valid and invalid_reason like 'occupied % above capacity%' then 'over_capacity'
            when not is_valid and invalid_reason like 'negative%' then 'negative_places'
            when not is_valid and invalid_reason like '%!= capacity%' then 'places_do_not_add_up'
            when not is_valid then 'invalid'
            -- a full or empty car park legitimately reads the same value for hours
            when run_length >= {{ var('parking_stuck_readings') }} and local_hour between 7 and 19
                and occupied > 0 and occupied < capacity
                and coalesce(entries, 0) + coalesce(exits, 0) = 0 then 'stuck'
        end as anomaly,
        invalid_reason
    from sized
)

select
    *,
    anomaly is null as is_usable,
    occupied / nullif(capacity, 0) as occupancy_rate
from final
{{ in_period_order('service_date') }}
