{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='month') }}

-- Where buses get slow: running speed on each segment between consecutive served stops, per line,
-- direction, month, day type and time band (median, 20th percentile, and the observations they
-- rest on), with the segment's path (dim_network_segments), as Cal-ITP's speedmaps draw them.
-- Lengths are along the GTFS shape where one fits (length_source). Speeds outside 0-120 km/h
-- (AVL timestamps) are left out, and counted. One row per (month, feed_version,
-- route_short_name, direction_id, day_type, time_band, from_stop_id, to_stop_id).
with speeds as (
    select * from {{ ref('mart_commercial_speed') }}
    where {{ month_filter() }}
),

calendar as (
    select
        service_date,
        day_type
    from {{ ref('dim_calendar') }}
),

per_segment as (
    select
        date_trunc('month', speeds.service_date)::date as month,
        speeds.feed_version,
        speeds.route_short_name,
        speeds.direction_id,
        calendar.day_type,
        speeds.time_band,
        speeds.from_stop_id,
        speeds.to_stop_id,
        count(*) filter (where speeds.segment_speed_kmh between 0 and 120) as observations,
        count(*) filter (where not coalesce(speeds.segment_speed_kmh between 0 and 120, false))
            as observations_implausible,
        median(speeds.segment_speed_kmh) filter (where speeds.segment_speed_kmh between 0 and 120) as median_speed_kmh,
        quantile_cont(speeds.segment_speed_kmh, 0.2) filter (where speeds.segment_speed_kmh between 0 and 120)
            as p20_speed_kmh,
        median(speeds.running_s) as median_running_s
    from speeds
    inner join calendar using (service_date)
    group by all
),

final as (
    select
        per_segment.*,
        segments.from_stop_name,
        segments.to_stop_name,
        segments.length_m,
        segments.length_source,
        segments.geometry
    from per_segment
    left join {{ ref('dim_network_segments') }} as segments
        using (feed_version, route_short_name, direction_id, from_stop_id, to_stop_id)
)

select * from final
{{ in_period_order('month') }}
