{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Fleet availability at the peak hour (PPIAF Urban Bus Toolkit, methods_and_kpis.md §2.4):
-- vehicles of the register not immobilised by a work order at peak_check_local, against the
-- vehicles the day's timetable needs at that moment (trips of the GTFS version in force running
-- then: a lower bound of the peak vehicle requirement). One row per service_date.
with days as (
    select
        service_date,
        feed_version
    from {{ ref('int_gtfs_version_by_date') }}
    where {{ service_date_filter() }}
),

peak as (
    select
        service_date,
        feed_version,
        timezone('{{ var("timezone") }}', (service_date::varchar || ' {{ var("peak_check_local") }}')::timestamp)
            as peak_at
    from days
),

fleet as (
    select
        peak.service_date,
        count(distinct vehicles.vehicle_id) as fleet_size
    from peak
    inner join {{ ref('stg_fleet__vehicles') }} as vehicles on peak.service_date >= vehicles.as_of_date
    group by all
),

immobilised as (
    select
        peak.service_date,
        count(distinct orders.vehicle_id) as immobilised_at_peak
    from peak
    inner join {{ ref('stg_maintenance__work_orders') }} as orders
        on orders.is_immobilising
            and peak.peak_at >= orders.opened_at
            and (orders.closed_at is null or peak.peak_at < orders.closed_at)
    group by all
),

trip_spans as (
    select
        feed_version,
        trip_id,
        min(departure_s) as start_s,
        max(arrival_s) as end_s
    from {{ ref('stg_gtfs__stop_times') }}
    group by all
),

required as (
    select
        peak.service_date,
        count(*) as vehicles_required_at_peak
    from peak
    inner join {{ ref('stg_gtfs__service_dates') }} as calendar
        on peak.feed_version = calendar.feed_version and peak.service_date = calendar.service_date
    inner join {{ ref('stg_gtfs__trips') }} as trips
        on peak.feed_version = trips.feed_version and calendar.service_id = trips.service_id
    inner join trip_spans
        on peak.feed_version = trip_spans.feed_version and trips.trip_id = trip_spans.trip_id
    where {{ var('peak_check_local')[:2] | int }} * 3600 + {{ var('peak_check_local')[3:5] | int }} * 60
        between trip_spans.start_s and trip_spans.end_s
    group by all
),

final as (
    select
        peak.service_date,
        coalesce(fleet.fleet_size, 0) as fleet_size,
        coalesce(immobilised.immobilised_at_peak, 0) as immobilised_at_peak,
        coalesce(fleet.fleet_size, 0) - coalesce(immobilised.immobilised_at_peak, 0) as available_at_peak,
        coalesce(required.vehicles_required_at_peak, 0) as vehicles_required_at_peak
    from peak
    left join fleet using (service_date)
    left join immobilised using (service_date)
    left join required using (service_date)
)

select
    *,
    available_at_peak / nullif(fleet_size, 0) as availability_rate,
    available_at_peak >= vehicles_required_at_peak as covers_peak_requirement
from final
{{ in_period_order('service_date') }}
