-- Stops of every network version, with a ~1 km grid zone for zone-level origin-destination.
-- One row per (feed_version, stop_id).
select
    feed_version,
    stop_id,
    stop_name,
    stop_lat,
    stop_lon,
    coalesce(zone_id, 'Z' || cast(floor(stop_lat / 0.009) as bigint) || '_' || cast(floor(stop_lon / 0.012) as bigint))
        as zone_id,
    parent_station,
    {{ wkb_point('stop_lon', 'stop_lat') }} as geometry
from {{ ref('stg_gtfs__stops') }}
