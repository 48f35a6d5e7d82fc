-- Every reading of a known car park with its anomaly, if any: invalid at ingestion (above
-- capacity, negative places, places that do not add up), or a stuck sensor (the same value,
-- neither empty nor full, for parking_stuck_readings readings in a row, in daytime, with no
-- entries or exits recorded). Out-of-scope rows
-- (bike stations, unknown car parks) are left out. One row per reading.
with readings as (
    select * from {{ ref('stg_parking__occupancy') }}
    where facility_id is not null
        and not coalesce(invalid_reason like 'out of scope%', false)
    -- one reading per car park and instant (a feed may repeat a car park under two names)
    qualify row_number() over (partition by operator, facility_id, observed_at order by is_valid desc, source_row asc)
        = 1
),

runs as (
    select
        *,
        -- a new run starts whenever the value changes
        sum(case when occupied is distinct from prev_occupied then 1 else 0 end) over facility_order as run_id
    from (
        select
            *,
            lag(occupied) over (partition by operator, facility_id order by observed_at) as prev_occupied
        from readings
    ) as with_previous
    window facility_order as (partition by operator, facility_id order by observed_at)
),

sized as (
    select
        *,
        count(*) over (partition by operator, facility_id, run_id) as run_length,
        hour({{ local_ts('observed_at') }}) as local_hour
    from runs
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
